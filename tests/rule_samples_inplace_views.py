"""Samples for writes into views, in place: torch's CopySlices node.

torch keeps no record of where the view lies in its base, so each sample
builds its graph under `graphexplain.recording()`, as ``graphexplain trace``
does (Note [a write into a view] in capture/view_writes.py); test_rules then
explains it outside, as for every row. The base is a non-leaf (``x * 1``):
torch refuses to write into a leaf that requires grad.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

import graphexplain
from rule_sampling import BASIC, positive, real, sample

MASK = torch.tensor([True, False, True, True])
INDEX = torch.tensor([2, 0])


def recorded(build):
    """`build`, run under the recorder (torch's CopySlices says nothing of its view)."""
    @functools.wraps(build)
    def run(*leaves):
        with graphexplain.recording():
            return build(*leaves)
    return run


# --- x[key] = value: torch picks the view and the op (copy_, fill_, index_put_) ---

def set_column(x, v):
    y = x * 1
    y[:, 0] = v
    return y


def set_row(x, v):
    y = x * 1
    y[1] = v
    return y


def set_number(x):
    y = x * 1
    y[:, 1:3] = 2.5
    return y


def set_masked_in_a_row(x, v):
    y = x * 1
    y[1, MASK] = v
    return y


def set_indexed_in_a_row(x, v):
    y = x * 1
    y[0, INDEX] = v
    return y


def set_ellipsis(x, v):
    y = x * 1
    y[..., 2] = v
    return y


def set_broadcast(x, v):
    y = x * 1
    y[1:, :] = v  # v broadcast over the rows written
    return y


def set_constant(x):
    y = x * 1
    y[0] = torch.arange(4.0, dtype=torch.float64)
    return y


def set_into_a_constant(v):
    h = torch.zeros(3, 4, dtype=torch.float64)
    h[1] = v  # the base needs no grad; the value does
    return h


# --- fn_ on a view: fn's own row on the region ---

def mul_slice(x, w):
    y = x * 1
    y[:, 1:].mul_(w)
    return y


def mul_number(x):
    y = x * 1
    y[1:].mul_(3.0)
    return y


def add_slice(x, v):
    y = x * 1
    y[:, 1:3].add_(v, alpha=2.0)
    return y


def clamp_slice(x):
    y = x * 1
    y[:, 1:3].clamp_(-0.5, 0.5)
    return y


def diagonal_add(x, v):
    y = x * 1
    y.diagonal().add_(v)
    return y


def diagonal_mul(x):
    y = x * 1
    y.diagonal().mul_(2)
    return y


def view_of_a_view(x):
    y = x * 1
    rows = y[1:]
    rows[:, 2].mul_(-3.0)
    return y


def sliced_then_written(x):
    y = x * 1
    v = y[1:]
    v.add_(1)
    return y


def in_place_operator(x, v):
    y = x * 1
    y[0] += v
    return y


def exp_in_place(x):
    y = x * 1
    y[:, 0].exp_()
    return y


def rnn_loop(x, w, u):
    steps, hidden = x.shape[0], w.shape[0]
    h = torch.zeros(steps, hidden, dtype=torch.float64)
    for t in range(steps):
        # (a clone: torch's mm keeps h[t - 1] for u's gradient, and h is written again)
        h[t] = torch.tanh(w @ x[t] + u @ h[t - 1].clone())
    return h


SAMPLES = {
    "CopySlices": {
        BASIC: sample(recorded(set_column), x=real(3, 4), v=real(3)),
        "int": sample(recorded(set_row), x=real(3, 4), v=real(4)),
        "number": sample(recorded(set_number), x=real(3, 4)),
        "mask": sample(recorded(set_masked_in_a_row), x=real(3, 4), v=real(3)),
        "index-tensor": sample(recorded(set_indexed_in_a_row), x=real(3, 4), v=real(2)),
        "ellipsis": sample(recorded(set_ellipsis), x=real(2, 3, 4), v=real(2, 3)),
        "broadcast": sample(recorded(set_broadcast), x=real(3, 4), v=real(4)),
        "constant-value": sample(recorded(set_constant), x=real(3, 4)),
        "constant-base": sample(recorded(set_into_a_constant), v=real(4)),
        "mul-slice": sample(recorded(mul_slice), x=real(3, 4), w=real(3, 3)),
        "mul-number": sample(recorded(mul_number), x=real(3, 4)),
        "add-slice": sample(recorded(add_slice), x=real(3, 4), v=real(3, 2)),
        "clamp-slice": sample(recorded(clamp_slice), x=real(3, 4)),
        "diagonal-add": sample(recorded(diagonal_add), x=real(3, 4), v=real(3)),
        "diagonal-mul": sample(recorded(diagonal_mul), x=real(4, 4)),
        "view-of-a-view": sample(recorded(view_of_a_view), x=real(3, 4)),
        "sliced-then-written": sample(recorded(sliced_then_written), x=real(3, 4)),
        "in-place-operator": sample(recorded(in_place_operator), x=real(3, 4), v=real(4)),
        "exp-in-place": sample(recorded(exp_in_place), x=real(3, 4)),
        "rnn-loop": sample(recorded(rnn_loop), x=real(4, 3), w=real(2, 3), u=real(2, 2)),
        "circular-1d": sample(recorded(lambda x: F.pad(x, (1, 2), mode="circular")), x=real(2, 3, 4)),
        "circular-2d": sample(recorded(lambda x: F.pad(x, (1, 2, 2, 1), mode="circular")), x=real(1, 2, 3, 4)),
        "circular-3d": sample(recorded(lambda x: F.pad(x, (1, 1, 2, 0, 1, 2), mode="circular")),
                              x=real(1, 2, 3, 3, 4)),
        "circular-module": sample(recorded(lambda x: torch.nn.CircularPad2d((1, 0, 2, 1))(x)), x=real(1, 2, 3, 3)),
        "positive": sample(recorded(lambda x: set_column(x.log(), x[:, 0].sqrt())), x=positive(3, 4)),
    },
}
