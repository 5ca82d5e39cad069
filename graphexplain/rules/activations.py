"""nn activations, elementwise.

Each kink is placed where torch places it, in the Piecewise's conditions:
a branch's derivative holds on its condition, so a strict ``>`` or an
inclusive ``<=`` decides which side's slope torch uses at the kink.

- elu, celu, selu and leaky_relu take the negative side's slope at 0;
- the in-place twins (``*Backward1``: leaky_relu_, elu_/selu_, celu_,
  rrelu_) save their result, not the input they overwrote; the derivation
  reads the input back from the result piece by piece (Note [a piece told
  by the result] in derive/formula.py). torch decides the side from the
  result: ``result > 0`` is the positive side, so a result of 0 takes the
  negative side's slope, as the out-of-place row does at 0. torch refuses
  these backwards for a negative slope or alpha (a positive result could
  then come from either side), and so does the derivation. (relu_,
  hardtanh_, and hardsigmoid, hardswish, silu, mish with inplace=True record
  the out-of-place node: docs/rules.md, In-place ops);
- hardtanh and hardsigmoid pass no gradient at their bounds; hardswish
  passes none at -3 and all of it at 3;
- softplus is the identity once beta*self exceeds its threshold, as torch
  computes it;
- gelu is the erf form, or the tanh form when ``approximate='tanh'``
  (approximate reads 0 or 1: Note [string arguments read as numbers] in
  derive/arguments.py).
"""

from .kinds import IndexFormula, Pointwise

GELU_ERF = "self/2*(1 + erf(self/sqrt(2)))"
GELU_TANH = "self/2*(1 + tanh(sqrt(2/pi)*(self + 0.044715*self**3)))"

# elu(x) = scale*x above 0, scale*alpha*(exp(input_scale*x) - 1) at or below;
# selu is elu with torch's fixed alpha and scale. Each formula here with a
# twin is stated once: the *Backward1 rows are the in-place forms.
ELU = "Piecewise((scale*self, self > 0), (scale*alpha*(exp(input_scale*self) - 1), True))"
CELU = "Piecewise((self, self > 0), (alpha*(exp(self/alpha) - 1), True))"
LEAKY_RELU = "Piecewise((self, self > 0), (negative_slope*self, True))"
# In training, torch drew each negative element's slope into `noise` (and
# 1 for the others); in eval the slope is the mean of lower and upper, and
# `noise`, which torch then leaves unwritten, is in no piece in force.
RRELU = ("Piecewise((noise*self, Eq(training, 1) & (upper - lower > 1e-6)), (self, self > 0),"
         " ((lower + upper)/2*self, True))")
THRESHOLD = "Piecewise((self, self > threshold), (value, True))"

ROWS = (
    Pointwise("EluBackward0", "elu", ELU, params=("alpha", "scale", "input_scale")),
    # elu_, selu_, elu(inplace=True), nn.ELU/nn.SELU(inplace=True)
    Pointwise("EluBackward1", "elu in place", ELU, params=("alpha", "scale", "input_scale")),
    Pointwise("CeluBackward0", "celu", CELU, params=("alpha",)),
    # celu_, celu(inplace=True), nn.CELU(inplace=True)
    Pointwise("CeluBackward1", "celu in place", CELU, params=("alpha",)),
    Pointwise("LeakyReluBackward0", "leaky relu", LEAKY_RELU, params=("negative_slope",)),
    # leaky_relu_, leaky_relu(inplace=True), nn.LeakyReLU(inplace=True)
    Pointwise("LeakyReluBackward1", "leaky relu in place", LEAKY_RELU, params=("negative_slope",)),
    Pointwise("RreluWithNoiseBackward0", "randomized leaky relu", RRELU,
              params=("noise", "lower", "upper", "training")),
    # rrelu_, rrelu(inplace=True), nn.RReLU(inplace=True); in training the
    # slope is the saved noise, whatever the side.
    Pointwise("RreluWithNoiseBackward1", "randomized leaky relu in place", RRELU,
              params=("noise", "lower", "upper", "training")),
    Pointwise("PreluKernelBackward0", "parametric relu", "Piecewise((self, self > 0), (weight*self, True))",
              ("self", "weight")),
    Pointwise("ThresholdBackward0", "threshold", THRESHOLD, params=("threshold", "value")),
    # threshold_, threshold(inplace=True), nn.Threshold(inplace=True): torch
    # keeps a copy of the input (the result alone cannot tell a result equal
    # to `value` from an input above the threshold).
    Pointwise("ThresholdBackward1", "threshold in place", THRESHOLD, params=("threshold", "value")),
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

# glu: the first half of self along `dim`, gated by the sigmoid of the
# second; each (first, second) pair at one place is a row of two elements.
ROWS += (
    IndexFormula("GluBackward0", "gated linear unit", "first/(1 + exp(-second))", params=("dim",),
                 layout="halves", where=(("first", "Sum(self[i], (i, 0, 0))"), ("second", "Sum(self[i], (i, 1, 1))"))),
)
