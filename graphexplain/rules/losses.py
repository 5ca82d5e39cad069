"""Elementwise losses: result = Σ term / (N or 1), as torch's `reduction`
says ("none", "mean" or "sum"; see the Reduction kind).

Each term is the loss of one element. Where torch switches formulas at a
threshold (smooth_l1's beta, huber's delta) the Piecewise says on which
side the threshold itself falls; there both sides have the same slope.
"""

from .kinds import IndexFormula, Reduction

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

# The margin losses compare each sample's target class with its other
# classes, so an element's term needs its sample's target element: that is
# a Sum over the elements of the same sample (the "samples" layout of
# derive/layouts.py), 1 term where the class is the target.
_SAME_SAMPLE = "KroneckerDelta(sample[l], sample[i])*KroneckerDelta(cls[l], target[l])"
_TARGETS = f"Sum({_SAME_SAMPLE}*self[l], l)"  # x[y], the target class's element
_TARGET_WEIGHT = f"Sum({_SAME_SAMPLE}*weight[l], l)"  # weight[y]
_MARGIN = f"(margin - {_TARGETS} + self[i])"
# multi_margin_loss: Σ over the other classes of weight[y]·max(0, margin - x[y] + x[i])**p / C
_MULTI_MARGIN = (f"Piecewise(({_TARGET_WEIGHT}*{_MARGIN}**p, Ne(cls[i], target[i]) & ({_MARGIN} > 0)),"
                 " (0, True))")
# multilabel_margin_loss: each listed target class y (target[l], up to its
# first -1) against each class i that is no target (is_target[i] = 0):
# Σ max(0, 1 - x[y] + x[i]) / C
_LISTED = "Sum(KroneckerDelta(sample[m], sample[l])*KroneckerDelta(cls[m], target[l])*self[m], m)"
_MULTILABEL_MARGIN = (f"Sum(Sum(listed[l]*KroneckerDelta(sample[i], sample[l])*(1 - is_target[i])"
                      f"*Piecewise((1 - {_LISTED} + self[i], 1 - {_LISTED} + self[i] > 0), (0, True)), i), l)")


def _by_reduction(total: str) -> str:
    """The loss of all samples (mean: over n samples of C classes, N in all),
    or of each sample for 'none' (N is then C)."""
    return f"Piecewise(({total}/N, Eq(reduction, 1)), ({total}/C, True))"


ROWS += (
    IndexFormula("MultiMarginLossBackward0", "multi-class margin loss", _by_reduction(f"Sum({_MULTI_MARGIN}, i)"),
                 ("self",), ("target", "p", "margin", "weight", "reduction"), (("weight", 1),),
                 layout="samples", branches_on=("p", "reduction")),
    IndexFormula("MultilabelMarginLossBackward0", "multi-label margin loss", _by_reduction(_MULTILABEL_MARGIN),
                 ("self",), ("target", "is_target", "reduction"), layout="samples", branches_on=("reduction",)),
)
