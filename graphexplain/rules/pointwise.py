"""Elementwise ops: one output element from the same element of each operand.

Kinks follow torch's convention, stated in the forward formula itself so
sympy derives it: relu is ``Piecewise((self, self > 0), (0, True))``, whose
derivative at 0 is 0 as in torch; abs is ``Abs(self)``, whose derivative
``sign(self)`` is 0 at 0 as in torch. See docs/rules.md.
"""

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
    # Copies and dtype/device conversions: the value passes through unchanged.
    Pointwise("ToCopyBackward0", "convert (copy)", "self"),
    Pointwise("CloneBackward0", "clone", "self"),
    Pointwise("AliasBackward0", "alias", "self"),
    Pointwise("LiftFreshBackward0", "lift", "self"),
)
