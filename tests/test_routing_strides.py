"""Routing maps read as strides and kept per shape (Note [routes read as
strides], Note [routes kept per shape] in derive/routing.py): the strided
gradient is, element for element, the bincount's along the same map; maps
that are not affine, or that take one input element twice outside a
broadcast, keep the bincount; a kept map cannot be written into."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphexplain
from graphexplain.derive import routing

# (forward, operand shape, arguments): views, broadcasts and selections
AFFINE = {
    "reshape": ("reshape(self, result_shape)", (2, 3, 4), {"result_shape": (6, 4)}),
    "transpose": ("transpose(self)", (3, 5), {}),
    "swapaxes": ("swapaxes(self, dim0, dim1)", (2, 3, 4), {"dim0": 0, "dim1": 2}),
    "permute": ("permute(self, dims)", (2, 3, 4, 5), {"dims": (2, 0, 3, 1)}),
    "broadcast_to": ("broadcast_to(self, result_shape)", (3, 1, 4), {"result_shape": (2, 3, 5, 4)}),
    "select": ("select(self, dim, index)", (3, 4, 5), {"dim": 1, "index": 2}),
    "slice": ("slice(self, dim, start, end, step)", (7, 4), {"dim": 0, "start": 1, "end": 6, "step": 2}),
    "narrow": ("narrow(self, dim, start, length)", (4, 6), {"dim": 1, "start": 2, "length": 3}),
    "expand_dims": ("expand_dims(self, dim)", (3, 4), {"dim": 1}),
}
# maps that are not one strided copy
NOT_AFFINE = {
    "cat": ("cat(tensors, dim)", [("a", (2, 3)), ("b", (1, 3))], {"dim": 0}),
    "overlapping": ("as_strided(self, size, stride, storage_offset, self_geometry)", [("self", (6,))],
                    {"size": (3, 2), "stride": (1, 1), "storage_offset": 0, "self_geometry": (0, (1,))}),
    "split": ("split(self, split_size, dim)", [("self", (5, 2))], {"split_size": 2, "dim": 0}),
}


def _by_bincount(found: routing.Routes, upstream, sizes):
    """The gradient the general path gives: a bincount over every edge."""
    plain = routing.Routes(np.array(found.outputs), np.array(found.inputs), found.weights, found.output_shapes)
    return routing.gradients(plain, upstream, sizes)


@pytest.mark.parametrize("name", sorted(AFFINE))
def test_a_strided_map_sends_back_what_the_bincount_does(name):
    forward, shape, arguments = AFFINE[name]
    size = int(np.prod(shape))
    found = routing.routes(forward, [("self", shape)], arguments)
    assert found.strided is not None, name
    upstream = np.random.default_rng(0).standard_normal(int(np.prod(found.output_shapes[0])))
    (strided,) = routing.gradients(found, upstream, [size])
    (counted,) = _by_bincount(found, upstream, [size])
    np.testing.assert_allclose(strided, counted, rtol=1e-15, atol=1e-15)
    collected = int(np.bincount(found.inputs, minlength=size).max())
    assert routing.most_collected(found, [size]) == max(collected, 1)


@pytest.mark.parametrize("name", sorted(NOT_AFFINE))
def test_other_maps_keep_the_bincount(name):
    forward, shapes, arguments = NOT_AFFINE[name]
    found = routing.read_as_strides(routing.routes(forward, shapes, arguments), [int(np.prod(s)) for _, s in shapes])
    assert found.strided is None


def test_a_map_that_is_nearly_affine_is_not_read_as_one():
    """One edge moved: the check is element by element, not from a few strides."""
    found = routing.routes("transpose(self)", [("self", (3, 4))], {})
    inputs = np.array(found.inputs)
    inputs[[5, 6]] = inputs[[6, 5]]
    moved = routing.Routes(np.array(found.outputs), inputs, None, found.output_shapes)
    assert routing.read_as_strides(moved, [12]).strided is None


def test_a_kept_map_is_shared_and_read_only():
    first = routing.routes("swapaxes(self, dim0, dim1)", [("self", (2, 7))], {"dim0": 0, "dim1": 1})
    again = routing.routes("swapaxes(self, dim0, dim1)", [("self", (2, 7))], {"dim0": 0, "dim1": 1})
    assert again is first
    with pytest.raises(ValueError):
        first.inputs[0] = 3
    other = routing.routes("swapaxes(self, dim0, dim1)", [("self", (7, 2))], {"dim0": 0, "dim1": 1})
    assert other is not first and other.output_shapes == ((2, 7),)


def test_views_of_an_attention_block_verify_and_a_wrong_one_is_caught():
    """The views a multi-head attention makes, through the strided path, and
    a transpose's gradient made wrong in torch's backward: a mismatch."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    heads = x.view(2, 5, 2, 4).transpose(1, 2).reshape(4, 5, 4)
    loss = (heads.expand(3, 4, 5, 4) * torch.arange(60.0, dtype=torch.float64).reshape(3, 1, 5, 4)).sum()
    assert graphexplain.explain(loss).status == "verified"

    class WrongTranspose(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a.transpose(1, 2).clone()

        @staticmethod
        def backward(ctx, grad):
            return grad.transpose(1, 2) * 1.001

    y = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    with graphexplain.recording():  # a Function's forward is re-run from what the recorder kept
        bad = WrongTranspose.apply(y.view(2, 5, 2, 4)).reshape(4, 5, 4).pow(2).sum()
    explanation = graphexplain.explain(bad)
    assert explanation.status == "mismatch"
    first = next(step for step in explanation.steps if step.status != "verified")
    assert first.op == "WrongTransposeBackward" and first.status == "mismatch"
