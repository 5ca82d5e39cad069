"""nn activations, elementwise.

Each kink is placed where torch places it, in the Piecewise's conditions:
a branch's derivative holds on its condition, so a strict ``>`` or an
inclusive ``<=`` decides which side's slope torch uses at the kink.

- elu, celu, selu and leaky_relu take the negative side's slope at 0;
- hardtanh and hardsigmoid pass no gradient at their bounds; hardswish
  passes none at -3 and all of it at 3;
- softplus is the identity once beta*self exceeds its threshold, as torch
  computes it;
- gelu is the erf form, or the tanh form when ``approximate='tanh'``
  (approximate reads 0 or 1: Note [string arguments read as numbers] in
  derive/arguments.py).
"""

from .kinds import Pointwise

GELU_ERF = "self/2*(1 + erf(self/sqrt(2)))"
GELU_TANH = "self/2*(1 + tanh(sqrt(2/pi)*(self + 0.044715*self**3)))"

# elu(x) = scale*x above 0, scale*alpha*(exp(input_scale*x) - 1) at or below;
# selu is elu with torch's fixed alpha and scale. EluBackward1 is the in-place
# elu_, which saves its result instead of its input.
ELU = "Piecewise((scale*self, self > 0), (scale*alpha*(exp(input_scale*self) - 1), True))"

ROWS = (
    Pointwise("EluBackward0", "elu", ELU, params=("alpha", "scale", "input_scale")),
    Pointwise("EluBackward1", "elu in place", ELU, params=("alpha", "scale", "input_scale")),
    Pointwise("CeluBackward0", "celu", "Piecewise((self, self > 0), (alpha*(exp(self/alpha) - 1), True))",
              params=("alpha",)),
    Pointwise("LeakyReluBackward0", "leaky relu", "Piecewise((self, self > 0), (negative_slope*self, True))",
              params=("negative_slope",)),
    # In training, torch drew each negative element's slope into `noise` (and
    # 1 for the others); in eval the slope is the mean of lower and upper.
    Pointwise(
        "RreluWithNoiseBackward0", "randomized leaky relu",
        "Piecewise((noise*self, Eq(training, 1) & (upper - lower > 1e-6)), (self, self > 0),"
        " ((lower + upper)/2*self, True))",
        params=("noise", "lower", "upper", "training"),
    ),
    Pointwise("PreluKernelBackward0", "parametric relu", "Piecewise((self, self > 0), (weight*self, True))",
              ("self", "weight")),
    Pointwise("ThresholdBackward0", "threshold", "Piecewise((self, self > threshold), (value, True))",
              params=("threshold", "value")),
    Pointwise(
        "HardtanhBackward0", "hardtanh",
        "Piecewise((self, (self > min_val) & (self < max_val)), (min_val, self <= min_val), (max_val, True))",
        params=("min_val", "max_val"),
    ),
    Pointwise("HardshrinkBackward0", "hard shrink",
              "Piecewise((self, (self > lambd) | (self < -lambd)), (0, True))", params=("lambd",)),
    Pointwise("SoftshrinkBackward0", "soft shrink",
              "Piecewise((self - lambd, self > lambd), (self + lambd, self < -lambd), (0, True))",
              params=("lambd",)),
    Pointwise("GeluBackward0", "gelu", f"Piecewise(({GELU_TANH}, Eq(approximate, 1)), ({GELU_ERF}, True))",
              params=("approximate",)),
    Pointwise("SiluBackward0", "silu", "self/(1 + exp(-self))"),
    Pointwise("MishBackward0", "mish", "self*tanh(log1p(exp(self)))"),
    Pointwise("SoftplusBackward0", "softplus",
              "Piecewise((self, beta*self > threshold), (log1p(exp(beta*self))/beta, True))",
              params=("beta", "threshold")),
    Pointwise("LogSigmoidBackward0", "log of the sigmoid", "-log1p(exp(-self))"),
    Pointwise("HardsigmoidBackward0", "hard sigmoid",
              "Piecewise((0, self <= -3), (1, self >= 3), (self/6 + 1/2, True))", constants_in="float32"),
    Pointwise("HardswishBackward0", "hard swish",
              "Piecewise((0, self <= -3), (self*(self + 3)/6, self < 3), (self, True))", constants_in="float32"),
)
