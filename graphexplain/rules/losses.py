"""Elementwise losses: result = Σ term / (N or 1), as torch's `reduction`
says ("none", "mean" or "sum"; see the Reduction kind).

Each term is the loss of one element. Where torch switches formulas at a
threshold (smooth_l1's beta, huber's delta) the Piecewise says on which
side the threshold itself falls; there both sides have the same slope.
"""

from .kinds import Reduction

ROWS = (
    Reduction(
        "MseLossBackward0", "mean squared error", "(self - target)**2",
        ("self", "target"), ("reduction",), reduce="reduction",
    ),
    Reduction(
        "BinaryCrossEntropyBackward0", "binary cross-entropy",
        "-weight*(target*log(self) + (1 - target)*log(1 - self))",
        ("self", "target"), ("weight", "reduction"), (("weight", 1),), reduce="reduction",
    ),
    Reduction(
        "SmoothL1LossBackward0", "smooth L1 loss",
        "Piecewise(((self - target)**2/(2*beta), Abs(self - target) < beta), (Abs(self - target) - beta/2, True))",
        ("self", "target"), ("beta", "reduction"), reduce="reduction",
    ),
    Reduction(
        "HuberLossBackward0", "Huber loss",
        "Piecewise(((self - target)**2/2, Abs(self - target) < delta), (delta*(Abs(self - target) - delta/2), True))",
        ("self", "target"), ("delta", "reduction"), reduce="reduction",
    ),
    Reduction(
        "SoftMarginLossBackward0", "soft margin loss", "log1p(exp(-target*self))",
        ("self",), ("target", "reduction"), reduce="reduction",
    ),
    # -weight*(pos_weight*target*log(sigmoid(self)) + (1 - target)*log(1 - sigmoid(self))),
    # written as torch computes it.
    Reduction(
        "BinaryCrossEntropyWithLogitsBackward0", "binary cross-entropy on logits",
        "weight*((1 - target)*self + (1 + (pos_weight - 1)*target)*log1p(exp(-self)))",
        ("self", "target"), ("weight", "pos_weight", "reduction"), (("weight", 1), ("pos_weight", 1)),
        reduce="reduction",
    ),
)
