"""The forwards of the `Composite` rows (rules/composite.py) as torch code.

Each function computes what a fused kernel computes, from the tensors and
arguments torch saved on its node, in ops every one of which has a row of
its own; capture/recapture.py runs it on float64 copies and keeps the graph.
They are checked against the kernels' own outputs at capture (`expected`):
where a re-run disagrees with what the script got, the node is left
underived rather than explained by another computation.

    >>> import torch
    >>> q = torch.eye(2).reshape(1, 2, 2)
    >>> attention(q, q, q, scale=0.0)[0].tolist()
    [[[0.5, 0.5], [0.5, 0.5]]]
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

LSTM = 2  # the saved `mode` of an LSTM layer (cuDNN's and oneDNN's numbering: RNN_RELU, RNN_TANH, LSTM, GRU)


class NotComposable(Exception):
    """The node's forward cannot be written out; the message says why, in one sentence."""


def lstm_layer(input, weight0, weight1, weight2, weight3, hx_, cx_, *, reverse=False, has_biases=True,
               mode=LSTM):
    """One LSTM layer over a seq-first sequence; gates i, f, g, o as in nn.LSTM:
    c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c')."""
    if mode != LSTM:
        raise NotComposable(f"the fused recurrent layer runs mode {mode}, and only the LSTM (mode 2) is written out")
    steps = range(input.shape[0] - 1, -1, -1) if reverse else range(input.shape[0])
    h, c = hx_, cx_
    outputs = [None] * input.shape[0]
    for t in steps:
        gates = input[t] @ weight0.t() + h @ weight1.t()
        if has_biases:
            gates = gates + weight2 + weight3
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs[t] = h
    return torch.stack(outputs), h, c


def attention(query, key, value, *, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(q·kᵀ·scale + mask)·v over the last two dims, and the rows'
    logsumexp (the kernel's second output). A causal mask keeps the lower
    triangle, aligned at the top left, as the kernel does."""
    if dropout_p:
        raise NotComposable("its dropout draws a mask the node does not keep, so its forward cannot be run again")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale
    if is_causal:
        kept = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        scores = scores.masked_fill(~kept, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.to(scores.dtype)
    return torch.softmax(scores, -1) @ value, torch.logsumexp(scores, -1)


FORWARDS = {"lstm_layer": lstm_layer, "attention": attention}


def _saved(node, name: str):
    try:
        return getattr(node, f"_saved_{name}", None)
    except RuntimeError:  # freed by an earlier backward
        return None


def composite_inner(node, rule, recorder=None, depth: int = 0):
    """The InnerForward of a node whose row is `Composite`: its forward,
    written out, run again on the tensors torch saved on it."""
    from ..model import InnerForward
    from .recapture import rerun

    forward = FORWARDS[rule.forward]
    tensors = [_saved(node, name) for name in rule.inputs]
    missing = next((name for name, t in zip(rule.inputs, tensors) if not isinstance(t, torch.Tensor)), None)
    if missing is not None:
        return InnerForward(rule.title, None, owner=rule.forward, written_out=True,
                            reason=f"torch did not keep its input {missing}, so its forward cannot be run again")
    edges = node.next_functions
    requires_grad = [k < len(edges) and edges[k][0] is not None for k in range(len(tensors))]
    params = {name: _saved(node, name) for name in rule.params}
    expected = [_saved(node, name) for name in rule.outputs]
    dtype = str(tensors[0].dtype).replace("torch.", "")

    def written_out(*copies):
        try:
            return forward(*copies, **params)
        except NotComposable as problem:
            from .recapture import CannotRerun
            raise CannotRerun(str(problem)) from None

    inner = rerun(written_out, tensors, title=rule.title, requires_grad=requires_grad, input_names=rule.inputs,
                  dtype=dtype, expected=[t if isinstance(t, torch.Tensor) else None for t in expected],
                  recorder=recorder, depth=depth, owner=rule.forward)
    return replace(inner, written_out=True)
