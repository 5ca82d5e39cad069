"""Elementwise ops: one output element from the same element of each operand.

Kinks follow torch's convention, stated in the forward formula itself so
sympy derives it: relu is ``Piecewise((self, self > 0), (0, True))``, whose
derivative at 0 is 0 as in torch; abs is ``Abs(self)``, whose derivative
``sign(self)`` is 0 at 0 as in torch. See docs/rules.md.

Besides sympy's names, formulas may call C's ``log1p``, ``expm1``, ``exp2``,
``log2``, ``log10``, ``hypot``, the piecewise-constant ``floor``,
``ceiling``, ``trunc``, ``round`` and ``sign`` (derivative 0 between jumps,
and 0 at them as in torch), and ``isnan``/``isfinite`` in conditions
(graphexplain/derive/functions.py).

Ties and bounds, as torch takes them:

- maximum/minimum split the gradient half and half at a tie: sympy's
  d Max(self, other)/d self is Heaviside(self - other), which is 1/2 at 0;
- fmax/fmin give a tie wholly to self, and skip a nan other;
- clamp passes the gradient at the bounds (min <= self <= max); hardtanh
  (rules/activations.py) does not.
"""

from math import inf

from .kinds import Pointwise

ROWS = (
    Pointwise("AccumulateGrad", "store into .grad", "self"),
    Pointwise("AddBackward0", "add", "self + alpha*other", ("self", "other"), ("alpha",)),
    Pointwise("AddBackward1", "add a number", "self + alpha*other", ("self",), ("other", "alpha")),
    Pointwise("SubBackward0", "subtract", "self - alpha*other", ("self", "other"), ("alpha",)),
    Pointwise("SubBackward1", "subtract a number", "self - alpha*other", ("self",), ("other", "alpha")),
    Pointwise("RsubBackward0", "subtract from", "other - alpha*self", ("self", "other"), ("alpha",)),
    Pointwise("RsubBackward1", "subtract from a number", "other - alpha*self", ("self",), ("other", "alpha")),
    Pointwise("MulBackward0", "multiply", "self*other", ("self", "other")),
    Pointwise("MulBackward1", "multiply by a number", "self*other", ("self",), ("other",)),
    Pointwise("DivBackward0", "divide", "self/other", ("self", "other")),
    Pointwise("DivBackward1", "divide by a number", "self/other", ("self",), ("other",)),
    Pointwise("NegBackward0", "negate", "-self"),
    Pointwise("ReciprocalBackward0", "reciprocal", "1/self"),
    Pointwise("PowBackward0", "power", "self**exponent", ("self",), ("exponent",)),
    Pointwise("PowBackward1", "power", "self**exponent", ("self", "exponent")),
    Pointwise("PowBackward2", "number to a power", "self**exponent", ("exponent",), ("self",)),
    Pointwise("ExpBackward0", "exponential", "exp(self)"),
    Pointwise("LogBackward0", "natural log", "log(self)"),
    Pointwise("SqrtBackward0", "square root", "sqrt(self)"),
    Pointwise("RsqrtBackward0", "reciprocal square root", "1/sqrt(self)"),
    Pointwise("SinBackward0", "sine", "sin(self)"),
    Pointwise("CosBackward0", "cosine", "cos(self)"),
    Pointwise("TanhBackward0", "tanh", "tanh(self)"),
    Pointwise("SigmoidBackward0", "sigmoid", "1/(1 + exp(-self))"),
    Pointwise("ReluBackward0", "relu", "Piecewise((self, self > 0), (0, True))"),
    Pointwise("AbsBackward0", "absolute value", "Abs(self)"),
    # --- logs, exponentials, trigonometry ---
    Pointwise("Log2Backward0", "log base 2", "log2(self)"),
    Pointwise("Log10Backward0", "log base 10", "log10(self)"),
    Pointwise("Log1PBackward0", "log(1 + x)", "log1p(self)"),
    Pointwise("Expm1Backward0", "exp(x) - 1", "expm1(self)"),
    Pointwise("Exp2Backward0", "2 to the power", "exp2(self)"),
    Pointwise("TanBackward0", "tangent", "tan(self)"),
    Pointwise("AsinBackward0", "arcsine", "asin(self)"),
    Pointwise("AcosBackward0", "arccosine", "acos(self)"),
    Pointwise("AtanBackward0", "arctangent", "atan(self)"),
    Pointwise("SinhBackward0", "hyperbolic sine", "sinh(self)"),
    Pointwise("CoshBackward0", "hyperbolic cosine", "cosh(self)"),
    Pointwise("AsinhBackward0", "inverse hyperbolic sine", "asinh(self)"),
    Pointwise("AcoshBackward0", "inverse hyperbolic cosine", "acosh(self)"),
    Pointwise("AtanhBackward0", "inverse hyperbolic tangent", "atanh(self)"),
    Pointwise("Deg2RadBackward0", "degrees to radians", "self*pi/180"),
    Pointwise("Rad2DegBackward0", "radians to degrees", "self*180/pi"),
    Pointwise("Atan2Backward0", "arctangent of self/other", "atan2(self, other)", ("self", "other")),
    Pointwise("HypotBackward0", "hypotenuse", "hypot(self, other)", ("self", "other")),
    Pointwise("LogaddexpBackward0", "log of summed exps", "log(exp(self) + exp(other))", ("self", "other")),
    Pointwise("Logaddexp2Backward0", "log2 of summed powers of 2", "log2(exp2(self) + exp2(other))",
              ("self", "other")),
    Pointwise("LdexpBackward0", "self times 2 to the other", "self*2**other", ("self", "other")),
    # --- rounding: piecewise constant, so the gradient is 0 (torch's too) ---
    Pointwise("FloorBackward0", "floor", "floor(self)"),
    Pointwise("CeilBackward0", "ceiling", "ceiling(self)"),
    Pointwise("RoundBackward0", "round", "round(self)"),
    Pointwise("RoundBackward1", "round to decimals", "round(self*10**decimals)/10**decimals",
              params=("decimals",)),
    Pointwise("TruncBackward0", "truncate", "trunc(self)"),
    Pointwise("FracBackward0", "fractional part", "self - trunc(self)"),
    Pointwise("SignBackward0", "sign", "sign(self)"),
    Pointwise("SgnBackward0", "sign", "sign(self)"),
    # torch's angle of a real number: pi below 0, else 0 (nan stays nan).
    Pointwise("AngleBackward0", "angle", "Piecewise((pi, self < 0), (0*self, True))"),
    Pointwise("RemainderBackward0", "remainder by a number", "self - other*floor(self/other)",
              ("self",), ("other",)),
    Pointwise("RemainderBackward1", "remainder", "self - other*floor(self/other)", ("self", "other")),
    Pointwise("FmodBackward0", "C remainder by a number", "self - other*trunc(self/other)",
              ("self",), ("other",)),
    Pointwise("FmodBackward1", "C remainder", "self - other*trunc(self/other)", ("self", "other")),
    # rounding_mode: 0 true division, 1 "trunc", 2 "floor" (Note [string
    # arguments read as numbers] in derive/arguments.py).
    Pointwise(
        "DivBackward2", "divide, rounded",
        "Piecewise((trunc(self/other), Eq(rounding_mode, 1)), (floor(self/other), Eq(rounding_mode, 2)),"
        " (self/other, True))",
        ("self", "other"), ("rounding_mode",),
    ),
    Pointwise(
        "DivBackward3", "divide by a number, rounded",
        "Piecewise((trunc(self/other), Eq(rounding_mode, 1)), (floor(self/other), Eq(rounding_mode, 2)),"
        " (self/other, True))",
        ("self",), ("other", "rounding_mode"),
    ),
    # copysign: |self| with other's sign (a -0.0 other reads as +). The
    # number form (CopysignBackward1) saves neither the number nor a trace
    # of it, so it has no row.
    Pointwise("CopysignBackward0", "copy the sign", "Abs(self)*Piecewise((-1, other < 0), (1, True))",
              ("self", "other")),
    # nextafter moves self by one float step toward other: as a function of
    # reals that is self. (torch gives self no gradient where self == other.)
    Pointwise("NextafterBackward0", "next float toward other", "self", ("self", "other")),
    # --- the larger, the smaller, bounds ---
    Pointwise("MaximumBackward0", "elementwise maximum", "Max(self, other)", ("self", "other")),
    Pointwise("MinimumBackward0", "elementwise minimum", "Min(self, other)", ("self", "other")),
    Pointwise("FmaxBackward0", "elementwise maximum, nan skipped",
              "Piecewise((self, (self >= other) | Eq(isnan(other), 1)), (other, True))", ("self", "other")),
    Pointwise("FminBackward0", "elementwise minimum, nan skipped",
              "Piecewise((self, (self <= other) | Eq(isnan(other), 1)), (other, True))", ("self", "other")),
    Pointwise(
        "ClampBackward0", "clamp between tensors",
        "Piecewise((self, (self >= min) & (self <= max)), (max, (self > max) | (min > max)), (min, True))",
        ("self", "min", "max"), defaults=(("min", -inf), ("max", inf)),
    ),
    Pointwise(
        "ClampBackward1", "clamp between numbers",
        "Piecewise((self, (self >= min) & (self <= max)), (max, (self > max) | (min > max)), (min, True))",
        ("self",), ("min", "max"), (("min", -inf), ("max", inf)),
    ),
    Pointwise("ClampMinBackward0", "clamp below by a number", "Piecewise((self, self >= min), (min, True))",
              ("self",), ("min",)),
    Pointwise("ClampMinBackward1", "clamp below", "Piecewise((self, self >= min), (min, True))", ("self", "min")),
    Pointwise("ClampMaxBackward0", "clamp above by a number", "Piecewise((self, self <= max), (max, True))",
              ("self",), ("max",)),
    Pointwise("ClampMaxBackward1", "clamp above", "Piecewise((self, self <= max), (max, True))", ("self", "max")),
    # --- choosing, mixing ---
    # condition and mask are torch's saved bool tensors, read as 1 and 0.
    Pointwise("WhereBackward0", "choose by condition", "Piecewise((self, Eq(condition, 1)), (other, True))",
              ("self", "other"), ("condition",)),
    Pointwise("MaskedFillBackward0", "fill where masked", "Piecewise((value, Eq(mask, 1)), (self, True))",
              ("self",), ("mask", "value")),
    Pointwise("MaskedFillBackward1", "fill where masked", "Piecewise((value, Eq(mask, 1)), (self, True))",
              ("self", "value"), ("mask",)),
    Pointwise("NanToNumBackward0", "replace nan and infinities",
              "Piecewise((self, Eq(isfinite(self), 1)), (posinf, self > 0), (neginf, self < 0), (nan, True))",
              ("self",), ("nan", "posinf", "neginf"),
              (("nan", 0.0), ("posinf", 1.7976931348623157e308), ("neginf", -1.7976931348623157e308))),
    Pointwise("LerpBackward0", "interpolate by a number", "self + weight*(end - self)", ("self", "end"), ("weight",)),
    Pointwise("LerpBackward1", "interpolate", "self + weight*(end - self)", ("self", "end", "weight")),
    Pointwise("AddcmulBackward0", "add a scaled product", "self + value*tensor1*tensor2",
              ("self", "tensor1", "tensor2"), ("value",)),
    Pointwise("AddcdivBackward0", "add a scaled quotient", "self + value*tensor1/tensor2",
              ("self", "tensor1", "tensor2"), ("value",)),
    # Copies and dtype/device conversions: the value passes through unchanged.
    Pointwise("ToCopyBackward0", "convert (copy)", "self"),
    Pointwise("CloneBackward0", "clone", "self"),
    Pointwise("AliasBackward0", "alias", "self"),
    Pointwise("LiftFreshBackward0", "lift", "self"),
)
