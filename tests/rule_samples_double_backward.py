"""Samples for the backward kernels torch records under create_graph=True
(rules/double_backward.py): each kernel called directly, with both its
operands leaves, and as a script meets it, inside a gradient taken with
create_graph=True."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rule_sampling import BASIC, nonzero, real, sample

aten = torch.ops.aten


def first_gradient(activation):
    """x ↦ ∂Σactivation(x)/∂x, with its graph: the node under test is its grad_fn."""
    def build(x):
        return torch.autograd.grad(activation(x).sum(), x, create_graph=True)[0]
    return build


SAMPLES = {
    "TanhBackwardBackward0": {
        BASIC: sample(lambda g, x: aten.tanh_backward(g, torch.tanh(x)), g=real(4), x=real(4)),
        "create-graph": sample(first_gradient(torch.tanh), x=real(2, 3)),
    },
    "SigmoidBackwardBackward0": {
        BASIC: sample(lambda g, x: aten.sigmoid_backward(g, torch.sigmoid(x)), g=real(4), x=real(4)),
        "create-graph": sample(first_gradient(torch.sigmoid), x=real(2, 3)),
    },
    "ThresholdBackwardBackward0": {
        BASIC: sample(lambda g, x: aten.threshold_backward(g, x, 0.0), g=real(4), x=nonzero(4)),
        "create-graph": sample(first_gradient(lambda x: torch.relu(x) * x), x=nonzero(2, 3)),
    },
    "LeakyReluBackwardBackward0": {
        BASIC: sample(lambda g, x: aten.leaky_relu_backward(g, x, 0.2, False), g=real(4), x=nonzero(4)),
        "create-graph": sample(first_gradient(lambda x: F.leaky_relu(x, 0.2) * x), x=nonzero(2, 3)),
    },
}
