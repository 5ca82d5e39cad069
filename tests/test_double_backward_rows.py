"""The backward-kernel rows (rules/double_backward.py) state what a fused
kernel computes, tanh_backward(g, y) = g·(1 − y²): in effect the first-order
derivative of an activation, written as a forward formula. So that no such
row is a hand-written answer, each is checked here against sympy's own
derivative of the activation's first-order row, at points on both sides of
every kink."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from graphexplain.derive import formula
from graphexplain.rules import TABLE

POINTS = np.array([-2.5, -0.7, -1e-3, 1e-3, 0.4, 1.9])

# kernel row → (first-order row, how the kernel's operands follow from x, params)
KERNELS = {
    "TanhBackwardBackward0": ("TanhBackward0", lambda x: {"output": np.tanh(x)}, {}),
    "SigmoidBackwardBackward0": ("SigmoidBackward0", lambda x: {"output": 1 / (1 + np.exp(-x))}, {}),
    "ThresholdBackwardBackward0": ("ReluBackward0", lambda x: {"self": np.maximum(x, 0)}, {"threshold": 0.0}),
    "LeakyReluBackwardBackward0": ("LeakyReluBackward0", lambda x: {"self": x}, {"negative_slope": 0.2}),
}


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernel_row_is_sympys_derivative_of_the_first_order_row(kernel):
    first, operands, params = KERNELS[kernel]
    derivative = formula.local_gradient(TABLE[first], "self")
    expected = formula.evaluate(derivative, {"self": POINTS, **params})
    stated = formula.evaluate(formula.forward(TABLE[kernel]), {"grad_output": np.ones_like(POINTS),
                                                                **operands(POINTS), **params})
    np.testing.assert_allclose(stated, np.broadcast_to(expected, POINTS.shape), rtol=1e-12, atol=1e-15)


def test_every_kernel_row_is_checked():
    from graphexplain.rules import double_backward

    assert {row.op for row in double_backward.ROWS} == set(KERNELS)
    assert all(isinstance(formula.forward(TABLE[k]), sp.Basic) for k in KERNELS)
