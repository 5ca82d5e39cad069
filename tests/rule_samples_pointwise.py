"""Samples for the elementwise families added after the first table:
math functions (rules/pointwise.py), special functions (rules/special.py),
activations (rules/activations.py) and elementwise losses (rules/losses.py).

Each op is drawn on a domain where it is smooth; named cases put elements
exactly on a kink, a bound or a tie, to check torch's convention there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rule_sampling import BASIC, TARGET, WEIGHT, Domain, constant, nonzero, positive, probability, real, sample

aten = torch.ops.aten

INSIDE_ONE = Domain(-0.9, 0.9)  # asin, acos, atanh, erfinv
ABOVE_ONE = Domain(1.1, 3.0)  # acosh; mvlgamma of dimension 3 needs more than 1
GRID = Domain(-3.0, 3.0)  # rounding, remainders: several integers apart
WIDE = Domain(-5.0, 5.0)  # activations with pieces at ±3 (hardswish, hardsigmoid)
SIGNS = torch.where(constant(2, 3) > 0, 1.0, -1.0).to(torch.float64)  # soft_margin targets are ±1

FINITE = torch.tensor([True, False, False, False])
SPECIALS = torch.tensor([0.0, float("inf"), float("nan"), -float("inf")], dtype=torch.float64)


def inside_one(*shape: int):
    return INSIDE_ONE, shape


def above_one(*shape: int):
    return ABOVE_ONE, shape


def grid(*shape: int):
    return GRID, shape


def wide(*shape: int):
    return WIDE, shape


def at_zero(x: torch.Tensor) -> torch.Tensor:
    """x with its first element moved exactly to 0 (x - x[0])."""
    return x - x.detach().reshape(-1)[0]


NAN = torch.tensor(float("nan"), dtype=torch.float64)


def unrecorded(x: torch.Tensor) -> torch.Tensor:
    """A positive input torch keeps nowhere: the mean's output plus a number
    that was not saved either (rms_norm's x.pow(2).mean() + eps)."""
    return x.pow(2).mean(-1, keepdim=True) + 0.5


SAMPLES = {
    # --- the first table's rows, where torch kept only the result ---
    "RsqrtBackward0": {"input-not-kept": sample(lambda x: torch.rsqrt(unrecorded(x)), x=real(2, 3))},
    "SqrtBackward0": {"input-not-kept": sample(lambda x: torch.sqrt(unrecorded(x)), x=real(2, 3))},
    "SigmoidBackward0": {"input-not-kept": sample(lambda x: torch.sigmoid(unrecorded(x)), x=real(2, 3))},
    # --- logs, exponentials, trigonometry ---
    "Log2Backward0": {BASIC: sample(torch.log2, x=positive(3))},
    "Log10Backward0": {BASIC: sample(torch.log10, x=positive(3))},
    "Log1PBackward0": {BASIC: sample(torch.log1p, x=positive(3))},
    "Expm1Backward0": {BASIC: sample(torch.expm1, x=real(3))},
    "Exp2Backward0": {BASIC: sample(torch.exp2, x=real(3))},
    "TanBackward0": {BASIC: sample(torch.tan, x=inside_one(3))},
    "AsinBackward0": {BASIC: sample(torch.asin, x=inside_one(3))},
    "AcosBackward0": {BASIC: sample(torch.acos, x=inside_one(3))},
    "AtanBackward0": {BASIC: sample(torch.atan, x=real(3))},
    "SinhBackward0": {BASIC: sample(torch.sinh, x=real(3))},
    "CoshBackward0": {BASIC: sample(torch.cosh, x=real(3))},
    "AsinhBackward0": {BASIC: sample(torch.asinh, x=real(3))},
    "AcoshBackward0": {BASIC: sample(torch.acosh, x=above_one(3))},
    "AtanhBackward0": {BASIC: sample(torch.atanh, x=inside_one(3))},
    "Deg2RadBackward0": {BASIC: sample(torch.deg2rad, x=real(3))},
    "Rad2DegBackward0": {BASIC: sample(torch.rad2deg, x=real(3))},
    "Atan2Backward0": {
        BASIC: sample(torch.atan2, y=real(3), x=nonzero(3)),
        "broadcast": sample(torch.atan2, y=real(3, 1), x=nonzero(2)),
    },
    "HypotBackward0": {BASIC: sample(torch.hypot, x=nonzero(3), y=real(3))},
    "LogaddexpBackward0": {
        BASIC: sample(torch.logaddexp, x=real(3), y=real(3)),
        "large": sample(lambda x, y: torch.logaddexp(x * 400, y * 400), x=real(3), y=real(3)),
    },
    "Logaddexp2Backward0": {BASIC: sample(torch.logaddexp2, x=real(3), y=real(3))},
    "LdexpBackward0": {
        BASIC: sample(lambda x: torch.ldexp(x, torch.tensor([1, 0, 3])), x=real(3)),
        "float-exponent": sample(torch.ldexp, x=real(3), e=real(3)),
    },
    # --- rounding ---
    "FloorBackward0": {BASIC: sample(torch.floor, x=grid(6))},
    "CeilBackward0": {BASIC: sample(torch.ceil, x=grid(6))},
    "RoundBackward0": {BASIC: sample(torch.round, x=grid(6))},
    "RoundBackward1": {BASIC: sample(lambda x: torch.round(x, decimals=1), x=grid(6))},
    "TruncBackward0": {BASIC: sample(torch.trunc, x=grid(6))},
    "FracBackward0": {BASIC: sample(torch.frac, x=grid(6))},
    "SignBackward0": {
        BASIC: sample(torch.sign, x=real(6)),
        "at-zero": sample(lambda x: torch.sign(at_zero(x)), x=real(4)),
        # a nan upstream: torch sends zeros back, not 0·nan (Note [a local gradient of 0])
        "nan-upstream": sample(lambda x: torch.sign(x) * NAN, x=real(3)),
    },
    # torch's gradient of sgn is a storage-free zero tensor; adding x makes x's
    # own gradient an ordinary tensor the test can read.
    "SgnBackward0": {BASIC: sample(lambda x: torch.sgn(x) + x, x=real(6))},
    "AngleBackward0": {BASIC: sample(torch.angle, x=nonzero(6))},
    "RemainderBackward0": {BASIC: sample(lambda x: torch.remainder(x, 0.7), x=grid(6))},
    "RemainderBackward1": {BASIC: sample(torch.remainder, x=grid(6), y=nonzero(6))},
    "FmodBackward0": {BASIC: sample(lambda x: torch.fmod(x, 0.7), x=grid(6))},
    "FmodBackward1": {BASIC: sample(torch.fmod, x=grid(6), y=nonzero(6))},
    "DivBackward2": {
        BASIC: sample(lambda x, y: torch.div(x, y, rounding_mode="trunc"), x=grid(6), y=nonzero(6)),
        "floor": sample(lambda x, y: torch.div(x, y, rounding_mode="floor"), x=grid(6), y=nonzero(6)),
        "true": sample(lambda x, y: aten.div.Tensor_mode(x, y, rounding_mode=None), x=real(3), y=nonzero(3)),
        "number": sample(lambda x: torch.div(x, 0.7, rounding_mode="floor"), x=grid(6)),
    },
    "DivBackward3": {BASIC: sample(lambda x: aten.div.Scalar_mode(x, 0.7, rounding_mode="floor"), x=grid(6))},
    "CopysignBackward0": {BASIC: sample(torch.copysign, x=nonzero(6), y=nonzero(6))},
    "NextafterBackward0": {BASIC: sample(torch.nextafter, x=real(3), y=real(3))},
    # --- the larger, the smaller, bounds ---
    "MaximumBackward0": {
        BASIC: sample(torch.maximum, x=real(6), y=real(6)),
        "tie": sample(lambda x: torch.maximum(x, x.detach()), x=real(3)),
        "tie-both": sample(lambda x, y: torch.maximum(x, torch.where(x > 0, x, y)), x=real(6), y=real(6)),
        "broadcast": sample(torch.maximum, x=real(3, 1), y=real(4)),
    },
    "MinimumBackward0": {
        BASIC: sample(torch.minimum, x=real(6), y=real(6)),
        "tie": sample(lambda x: torch.minimum(x, x.detach()), x=real(3)),
    },
    "FmaxBackward0": {
        BASIC: sample(torch.fmax, x=real(6), y=real(6)),
        "tie": sample(lambda x: torch.fmax(x, x.detach()), x=real(3)),
        "nan": sample(lambda x: torch.fmax(x, torch.tensor([float("nan"), 0.0, 1.0], dtype=torch.float64)),
                      x=real(3)),
    },
    "FminBackward0": {
        BASIC: sample(torch.fmin, x=real(6), y=real(6)),
        "tie": sample(lambda x: torch.fmin(x, x.detach()), x=real(3)),
        "nan": sample(lambda x: torch.fmin(x, torch.tensor([float("nan"), 0.0, 1.0], dtype=torch.float64)),
                      x=real(3)),
    },
    "ClampBackward0": {
        BASIC: sample(lambda x, lo, hi: torch.clamp(x, lo, lo + hi.abs() + 0.5), x=real(6), lo=real(6), hi=real(6)),
        "min-only": sample(lambda x, lo: torch.clamp(x, min=lo), x=real(6), lo=real(6)),
        "max-only": sample(lambda x, hi: torch.clamp(x, max=hi), x=real(6), hi=real(6)),
        "at-bounds": sample(lambda x: torch.clamp(x, min=x.detach(), max=x.detach() + 1), x=real(3)),
    },
    "ClampBackward1": {
        BASIC: sample(lambda x: torch.clamp(x, -0.5, 1.0), x=real(6)),
        "min-only": sample(lambda x: torch.clamp(x, min=-0.5), x=real(6)),
        "at-bounds": sample(lambda x: torch.clamp(x, float(x.detach().min()), float(x.detach().max())), x=real(6)),
    },
    "ClampMinBackward0": {
        BASIC: sample(lambda x: torch.clamp_min(x, 0.3), x=real(6)),
        "at-bound": sample(lambda x: torch.clamp_min(x, float(x.detach()[0])), x=real(6)),
    },
    "ClampMinBackward1": {BASIC: sample(torch.clamp_min, x=real(6), lo=real(6))},
    "ClampMaxBackward0": {
        BASIC: sample(lambda x: torch.clamp_max(x, 0.3), x=real(6)),
        "at-bound": sample(lambda x: torch.clamp_max(x, float(x.detach()[0])), x=real(6)),
    },
    "ClampMaxBackward1": {BASIC: sample(torch.clamp_max, x=real(6), hi=real(6))},
    # --- choosing, mixing ---
    "WhereBackward0": {
        BASIC: sample(lambda x, y: torch.where(x > 0, x, y), x=real(6), y=real(6)),
        "number": sample(lambda x: torch.where(x > 0, x, 0.0), x=real(6)),
        "broadcast": sample(lambda x, y: torch.where(x > 0, x, y), x=real(3, 2), y=real(2)),
    },
    "MaskedFillBackward0": {BASIC: sample(lambda x: x.masked_fill(x > 0, 2.0), x=real(6))},
    "MaskedFillBackward1": {BASIC: sample(lambda x, v: x.masked_fill(x > 0, v), x=real(6), v=real())},
    "NanToNumBackward0": {
        BASIC: sample(torch.nan_to_num, x=real(3)),
        "infinities": sample(lambda x: torch.nan_to_num(torch.where(FINITE, x, SPECIALS), posinf=9.0), x=real(4)),
    },
    "LerpBackward0": {BASIC: sample(lambda x, y: torch.lerp(x, y, 0.3), x=real(3), y=real(3))},
    "LerpBackward1": {
        BASIC: sample(torch.lerp, x=real(3), y=real(3), w=probability(3)),
        "large-weight": sample(lambda x, y, w: torch.lerp(x, y, w + 0.5), x=real(3), y=real(3), w=probability(3)),
    },
    "AddcmulBackward0": {
        BASIC: sample(lambda x, a, b: torch.addcmul(x, a, b, value=0.5), x=real(3), a=real(3), b=real(3)),
    },
    "AddcdivBackward0": {
        BASIC: sample(lambda x, a, b: torch.addcdiv(x, a, b, value=0.5), x=real(3), a=real(3), b=nonzero(3)),
    },
    # --- special functions ---
    "ErfBackward0": {BASIC: sample(torch.erf, x=real(3))},
    "ErfcBackward0": {BASIC: sample(torch.erfc, x=real(3))},
    "ErfinvBackward0": {BASIC: sample(torch.erfinv, x=inside_one(3))},
    "SpecialErfcxBackward0": {BASIC: sample(torch.special.erfcx, x=real(3)),
                              "large": sample(lambda x: torch.special.erfcx(x * 20), x=positive(3))},
    "SpecialNdtriBackward0": {BASIC: sample(torch.special.ndtri, x=probability(3))},
    "SpecialLogNdtrBackward0": {BASIC: sample(torch.special.log_ndtr, x=real(3)),
                                "far-left": sample(lambda x: torch.special.log_ndtr(-x * 30), x=positive(3))},
    "LgammaBackward0": {BASIC: sample(torch.lgamma, x=positive(3))},
    # torch's trigamma is good to about 5e-10 relative below 5, too coarse for these tests.
    "DigammaBackward0": {BASIC: sample(torch.digamma, x=(Domain(5.0, 10.0), (3,)))},
    "PolygammaBackward0": {
        BASIC: sample(lambda x: torch.polygamma(1, x), x=positive(3)),
        "order-3": sample(lambda x: torch.polygamma(3, x), x=positive(3)),
    },
    "MvlgammaBackward0": {BASIC: sample(lambda x: torch.mvlgamma(x, 3), x=above_one(3)),
                          "p-1": sample(lambda x: torch.mvlgamma(x, 1), x=positive(3))},
    "I0Backward0": {BASIC: sample(torch.i0, x=real(3))},
    "SpecialI0EBackward0": {BASIC: sample(torch.special.i0e, x=real(3))},
    "SpecialI1Backward0": {BASIC: sample(torch.special.i1, x=real(3))},
    "SpecialI1EBackward0": {BASIC: sample(torch.special.i1e, x=real(3))},
    "SpecialEntrBackward0": {BASIC: sample(torch.special.entr, x=positive(3))},
    "SincBackward0": {
        BASIC: sample(torch.sinc, x=nonzero(3)),
        "at-zero": sample(lambda x: torch.sinc(at_zero(x)), x=real(3)),
    },
    "XlogyBackward0": {
        BASIC: sample(torch.xlogy, x=real(3), y=positive(3)),
        "zero-x": sample(lambda x, y: torch.xlogy(at_zero(x), y), x=real(3), y=positive(3)),
    },
    "XlogyBackward1": {BASIC: sample(lambda y: torch.xlogy(2.0, y), y=positive(3))},
    "XlogyBackward2": {BASIC: sample(lambda x: torch.xlogy(x, 2.0), x=real(3))},
    "SpecialXlog1PyBackward0": {BASIC: sample(torch.special.xlog1py, x=real(3), y=positive(3))},
    "SpecialXlog1PyBackward1": {BASIC: sample(lambda y: torch.special.xlog1py(2.0, y), y=positive(3))},
    "SpecialXlog1PyBackward2": {BASIC: sample(lambda x: torch.special.xlog1py(x, 2.0), x=real(3))},
    "LogitBackward0": {
        BASIC: sample(torch.logit, x=probability(3)),
        "eps": sample(lambda x: torch.logit(x, eps=0.3), x=probability(6)),
    },
    # --- activations ---
    "EluBackward0": {
        BASIC: sample(F.elu, x=real(6)),
        "alpha": sample(lambda x: F.elu(x, alpha=0.5), x=real(6)),
        "selu": sample(F.selu, x=real(6)),
        "at-zero": sample(lambda x: F.elu(at_zero(x)), x=real(4)),
    },
    # EluBackward1 and the other in-place forms: tests/rule_samples_inplace.py
    # alpha 0.5: torch computes 1/alpha in float32, so 0.7 would be off by 1e-8.
    "CeluBackward0": {BASIC: sample(lambda x: F.celu(x, alpha=0.5), x=real(6))},
    "LeakyReluBackward0": {BASIC: sample(lambda x: F.leaky_relu(x, 0.1), x=real(6)),
                           "at-zero": sample(lambda x: F.leaky_relu(at_zero(x), 0.1), x=real(4))},
    "RreluWithNoiseBackward0": {
        BASIC: sample(lambda x: F.rrelu(x, training=False), x=real(6)),
        "training": sample(lambda x: F.rrelu(x, training=True), x=real(6)),
    },
    "PreluKernelBackward0": {
        BASIC: sample(F.prelu, x=real(2, 3, 4), w=probability(3)),
        "one-weight": sample(F.prelu, x=real(2, 3), w=probability(1)),
    },
    "ThresholdBackward0": {BASIC: sample(lambda x: F.threshold(x, 0.5, -1.0), x=real(6))},
    "HardtanhBackward0": {
        BASIC: sample(F.hardtanh, x=real(6)),
        "relu6": sample(lambda x: F.relu6(x * 4), x=real(6)),
        "at-bounds": sample(lambda x: F.hardtanh(x, float(x.detach().min()), float(x.detach().max())), x=real(6)),
    },
    "HardshrinkBackward0": {BASIC: sample(lambda x: F.hardshrink(x, 0.8), x=real(6))},
    "SoftshrinkBackward0": {BASIC: sample(lambda x: F.softshrink(x, 0.8), x=real(6))},
    "GeluBackward0": {
        BASIC: sample(F.gelu, x=real(6)),
        "tanh": sample(lambda x: F.gelu(x, approximate="tanh"), x=real(6)),
    },
    "SiluBackward0": {BASIC: sample(F.silu, x=real(6))},
    "MishBackward0": {BASIC: sample(F.mish, x=real(6))},
    "SoftplusBackward0": {
        BASIC: sample(F.softplus, x=real(6)),
        "threshold": sample(lambda x: F.softplus(x, beta=2.0, threshold=1.0), x=real(6)),
    },
    "LogSigmoidBackward0": {BASIC: sample(F.logsigmoid, x=real(6)),
                            "large": sample(lambda x: F.logsigmoid(x * 500), x=real(6))},
    # float32: torch's hardsigmoid slope is float32's 1/6, even for float64 inputs.
    "HardsigmoidBackward0": {BASIC: sample(F.hardsigmoid, x=(Domain(-5.0, 5.0, dtype=torch.float32), (8,)))},
    "HardswishBackward0": {
        BASIC: sample(F.hardswish, x=wide(8)),
        "at-bounds": sample(lambda x: F.hardswish(x - x.detach() + torch.tensor([-3.0, 3.0, 0.5])), x=real(3)),
    },
    # --- losses ---
    "SmoothL1LossBackward0": {
        BASIC: sample(lambda p, t: F.smooth_l1_loss(p, t, beta=0.5), p=real(2, 3), t=real(2, 3)),
        "sum": sample(lambda p: F.smooth_l1_loss(p, TARGET, reduction="sum", beta=0.5), p=real(2, 3)),
        "none": sample(lambda p: F.smooth_l1_loss(p, TARGET, reduction="none", beta=0.5), p=real(2, 3)),
    },
    "HuberLossBackward0": {
        BASIC: sample(lambda p, t: F.huber_loss(p, t, delta=0.5), p=real(2, 3), t=real(2, 3)),
        "sum": sample(lambda p: F.huber_loss(p, TARGET, reduction="sum", delta=0.5), p=real(2, 3)),
        "none": sample(lambda p: F.huber_loss(p, TARGET, reduction="none", delta=0.5), p=real(2, 3)),
    },
    "SoftMarginLossBackward0": {
        BASIC: sample(lambda p: F.soft_margin_loss(p, SIGNS), p=real(2, 3)),
        "sum": sample(lambda p: F.soft_margin_loss(p, SIGNS, reduction="sum"), p=real(2, 3)),
    },
    "BinaryCrossEntropyWithLogitsBackward0": {
        BASIC: sample(lambda p: F.binary_cross_entropy_with_logits(p, TARGET), p=real(2, 3)),
        "target-grad": sample(F.binary_cross_entropy_with_logits, p=real(2, 3), t=probability(2, 3)),
        "weights": sample(lambda p: F.binary_cross_entropy_with_logits(
            p, TARGET, weight=WEIGHT, pos_weight=WEIGHT[0], reduction="sum"), p=real(2, 3)),
        "none": sample(lambda p: F.binary_cross_entropy_with_logits(p, TARGET, reduction="none"), p=real(2, 3)),
    },
}
