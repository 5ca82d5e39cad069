"""Samples for the in-place forms of the elementwise ops.

An in-place op is applied to a non-leaf (``x * 1``), as torch requires. Most
record the node their out-of-place twin records (``F.relu_`` a ReluBackward0,
``x.mul_`` a MulBackward0, ``F.hardtanh_`` a HardtanhBackward0 with a copy of
the input); those get an "in-place" case here. The others record a node of
their own (``*Backward1``), which keeps the result rather than the input it
overwrote (threshold_ and polygamma_ keep a copy of the input).

A `placed` input has numbers no node keeps, so the node after it must tell
its input from its result (Note [a piece told by the result] in
derive/formula.py); its numbers lie on both sides of the kink and on it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rule_sampling import BASIC, Domain, nonzero, positive, real, sample

aten = torch.ops.aten

SIDES = torch.tensor([-1.5, -0.3, -0.0, 0.0, 0.4, 2.0], dtype=torch.float64)  # a kink at 0: both sides, and on it
WIDE = Domain(-5.0, 5.0)  # hardsigmoid and hardswish have pieces at ±3
WIDE32 = Domain(-5.0, 5.0, dtype=torch.float32)
BOUNDS = torch.tensor([-2.0, -1.0, -0.5, 0.0, 1.0, 1.5], dtype=torch.float64)  # hardtanh's -1 and 1


def placed(x: torch.Tensor, at: torch.Tensor = SIDES) -> torch.Tensor:
    """An input with exactly the numbers `at`, made from x by subtracting a
    detached copy and adding a constant, neither of which torch keeps."""
    return x - x.detach() + at


def sides():
    return real(len(SIDES))


SAMPLES = {
    # --- nodes of their own: the input is overwritten, the result kept ---
    "LeakyReluBackward1": {
        BASIC: sample(lambda x: F.leaky_relu_(x * 1, 0.1), x=real(6)),
        "inplace-argument": sample(lambda x: F.leaky_relu(x * 1, 0.2, inplace=True), x=real(6)),
        "module": sample(lambda x: nn.LeakyReLU(0.2, inplace=True)(x * 1), x=real(6)),
        "input-not-kept": sample(lambda x: F.leaky_relu_(placed(x), 0.1), x=sides()),
    },
    "EluBackward1": {
        BASIC: sample(lambda x: F.elu_(x * 1, alpha=0.7), x=real(6)),
        "module": sample(lambda x: nn.ELU(inplace=True)(x * 1), x=real(6)),
        "selu": sample(lambda x: F.selu_(x * 1), x=real(6)),
        "selu-module": sample(lambda x: nn.SELU(inplace=True)(x * 1), x=real(6)),
        "input-not-kept": sample(lambda x: F.elu_(placed(x), alpha=0.7), x=sides()),
        "input-not-kept-selu": sample(lambda x: F.selu(placed(x), inplace=True), x=sides()),
        # far left the result is -alpha exactly and the input cannot be told; the gradient can
        "input-not-kept-saturated": sample(lambda x: F.elu_(placed(x, SIDES * 40)), x=sides()),
    },
    # alpha 0.5: torch computes 1/alpha in float32 (see CeluBackward0).
    "CeluBackward1": {
        BASIC: sample(lambda x: F.celu_(x * 1, alpha=0.5), x=real(6)),
        "inplace-argument": sample(lambda x: F.celu(x * 1, 0.5, inplace=True), x=real(6)),
        "module": sample(lambda x: nn.CELU(inplace=True)(x * 1), x=real(6)),
        "input-not-kept": sample(lambda x: F.celu_(placed(x), alpha=0.5), x=sides()),
    },
    "RreluWithNoiseBackward1": {
        BASIC: sample(lambda x: F.rrelu_(x * 1, training=False), x=real(6)),
        "training": sample(lambda x: F.rrelu_(x * 1, training=True), x=real(6)),
        "module": sample(lambda x: nn.RReLU(inplace=True).eval()(x * 1), x=real(6)),
        "input-not-kept": sample(lambda x: F.rrelu_(placed(x), training=False), x=sides()),
        "input-not-kept-training": sample(lambda x: F.rrelu(placed(x), training=True, inplace=True), x=sides()),
        # in training the slope is the drawn noise on either side, so torch allows a negative one
        "input-not-kept-negative-training": sample(lambda x: F.rrelu_(placed(x), -0.3, -0.1, training=True), x=sides()),
    },
    # threshold_ keeps a copy of its input, so a result equal to `value` is no puzzle.
    "ThresholdBackward1": {
        BASIC: sample(lambda x: F.threshold_(x * 1, 0.5, -1.0), x=real(6)),
        "value-above-threshold": sample(lambda x: F.threshold(x * 1, 0.5, 2.0, inplace=True), x=real(6)),
        "module": sample(lambda x: nn.Threshold(0.1, 20.0, inplace=True)(x * 1), x=real(6)),
        "at-threshold": sample(lambda x: F.threshold_(placed(x), 0.0, -1.0), x=sides()),
    },
    "PolygammaBackward1": {
        BASIC: sample(lambda x: (x * 1).polygamma_(1), x=positive(3)),
        "order-2": sample(lambda x: (x * 1).polygamma_(2), x=positive(3)),
    },
    # --- the out-of-place node, recorded in place ---
    "ReluBackward0": {
        "in-place": sample(lambda x: F.relu_(x * 1), x=nonzero(6)),
        "module": sample(lambda x: nn.ReLU(inplace=True)(x * 1), x=nonzero(6)),
        "input-not-kept": sample(lambda x: F.relu_(placed(x)), x=sides()),
    },
    "HardtanhBackward0": {
        "in-place": sample(lambda x: F.hardtanh_(x * 1), x=real(6)),
        "relu6-module": sample(lambda x: nn.ReLU6(inplace=True)(x * 4), x=real(6)),
        "in-place-at-bounds": sample(lambda x: F.hardtanh(placed(x, BOUNDS), inplace=True), x=real(len(BOUNDS))),
    },
    "SigmoidBackward0": {"in-place": sample(lambda x: torch.sigmoid_(x * 1), x=real(6)),
                         "input-not-kept-in-place": sample(lambda x: placed(x).sigmoid_(), x=sides())},
    "TanhBackward0": {"in-place": sample(lambda x: torch.tanh_(x * 1), x=real(6)),
                      "input-not-kept": sample(lambda x: placed(x).tanh_(), x=sides())},
    "ExpBackward0": {"input-not-kept": sample(lambda x: placed(x).exp_(), x=sides())},
    # float32: torch's hardsigmoid slope is float32's 1/6 (see HardsigmoidBackward0)
    "HardsigmoidBackward0": {"in-place": sample(lambda x: F.hardsigmoid(x * 1, inplace=True), x=(WIDE32, (8,)))},
    "HardswishBackward0": {"in-place": sample(lambda x: F.hardswish(x * 1, inplace=True), x=(WIDE, (8,)))},
    "SiluBackward0": {"in-place": sample(lambda x: F.silu(x * 1, inplace=True), x=real(6))},
    "MishBackward0": {"in-place": sample(lambda x: F.mish(x * 1, inplace=True), x=real(6))},
    "ClampBackward1": {"in-place": sample(lambda x: (x * 1).clamp_(-0.5, 1.0), x=real(6))},
    "ClampMinBackward0": {"in-place": sample(lambda x: (x * 1).clamp_min_(0.3), x=real(6))},
    "ClampMaxBackward0": {"in-place": sample(lambda x: (x * 1).clamp_max_(0.3), x=real(6))},
    "MulBackward0": {"in-place": sample(lambda x, y: (x * 1).mul_(y), x=real(3), y=real(3))},
    "MulBackward1": {"in-place": sample(lambda x: aten.mul_.Scalar(x * 1, 2.5), x=real(3))},
    "AddBackward0": {"in-place": sample(lambda x, y: (x * 1).add_(y, alpha=2.0), x=real(3), y=real(3))},
    "SubBackward0": {"in-place": sample(lambda x, y: (x * 1).sub_(y), x=real(3), y=real(3))},
    "DivBackward0": {"in-place": sample(lambda x, y: (x * 1).div_(y), x=real(3), y=nonzero(3))},
    "PowBackward0": {"in-place": sample(lambda x: (x * 1).pow_(3), x=real(3))},
    "PowBackward1": {"in-place": sample(lambda x, y: (x * 1).pow_(y), x=positive(3), y=real(3))},
}
