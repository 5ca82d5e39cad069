"""Samples for the fused kernels written out (rules/composite.py).

torch picks these kernels itself: the oneDNN LSTM layer only for float32
inputs on the CPU, flash attention for 4-d queries whose keys and values
share a head size. So the leaves are float32, and each case says which
choice it makes torch take (a reversed direction, no biases, a causal or
given mask, several layers whose second reads the first's output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rule_sampling import BASIC, FLOAT32, sample


def lstm(x, w_ih, w_hh, b_ih=None, b_hh=None, layers=1, bidirectional=False, h0=None, c0=None):
    weights = [w for w in (w_ih, w_hh, b_ih, b_hh) if w is not None]
    weights = weights * (layers * (2 if bidirectional else 1))
    hidden = w_hh.shape[1]
    shape = (layers * (2 if bidirectional else 1), x.shape[1], hidden)
    h0 = torch.zeros(shape) if h0 is None else h0.expand(shape)
    c0 = torch.zeros(shape) if c0 is None else c0.expand(shape)
    output, h, c = torch.lstm(x, (h0, c0), weights, b_ih is not None, layers, 0.0, True, bidirectional, False)
    return torch.cat([output.flatten(), h.flatten(), c.flatten()])


def f32(*shape: int):
    return FLOAT32, shape


SAMPLES = {
    "MkldnnRnnLayerBackward0": {
        BASIC: sample(lambda x, w_ih, w_hh, b_ih, b_hh: lstm(x, w_ih, w_hh, b_ih, b_hh),
                      x=f32(4, 2, 3), w_ih=f32(8, 3), w_hh=f32(8, 2), b_ih=f32(8), b_hh=f32(8)),
        "no-bias": sample(lambda x, w_ih, w_hh: lstm(x, w_ih, w_hh), x=f32(2, 2, 3), w_ih=f32(8, 3), w_hh=f32(8, 2)),
        "initial-state": sample(lambda x, w_ih, w_hh, h0, c0: lstm(x, w_ih, w_hh, h0=h0, c0=c0),
                                x=f32(3, 2, 2), w_ih=f32(8, 2), w_hh=f32(8, 2), h0=f32(1, 2, 2), c0=f32(1, 2, 2)),
        "bidirectional": sample(lambda x, w_ih, w_hh: lstm(x, w_ih, w_hh, bidirectional=True),
                                x=f32(3, 1, 2), w_ih=f32(8, 2), w_hh=f32(8, 2)),
        "two-layers": sample(lambda x, w_ih, w_hh: lstm(x, w_ih, w_hh, layers=2),
                             x=f32(3, 2, 2), w_ih=f32(8, 2), w_hh=f32(8, 2)),
    },
    "ScaledDotProductFlashAttentionForCpuBackward0": {
        BASIC: sample(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), q=f32(2, 2, 3, 4), k=f32(2, 2, 5, 4),
                      v=f32(2, 2, 5, 4)),
        "causal": sample(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                         q=f32(1, 2, 4, 2), k=f32(1, 2, 4, 2), v=f32(1, 2, 4, 2)),
        "scale": sample(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.3),
                        q=f32(1, 1, 3, 2), k=f32(1, 1, 3, 2), v=f32(1, 1, 3, 2)),
        "float-mask": sample(lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, attn_mask=torch.linspace(-1.0, 1.0, 12).reshape(3, 4)),
            q=f32(1, 2, 3, 2), k=f32(1, 2, 4, 2), v=f32(1, 2, 4, 2)),
        "bool-mask": sample(lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, attn_mask=torch.tensor([[True, False, True], [True, True, False]])),
            q=f32(1, 1, 2, 2), k=f32(1, 1, 3, 2), v=f32(1, 1, 3, 2)),
        "self-attention": sample(lambda x: F.scaled_dot_product_attention(x, x, x), x=f32(1, 2, 3, 4)),
    },
}
