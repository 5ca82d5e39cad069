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

# The margin losses compare each sample's target classes with its other
# classes: the "class-pairs" layout of derive/layouts.py sees self as each
# sample's pairs (y, c) of classes, target_score the element of class y and
# score that of class c (Note [index notation] in derive/indexed.py).
_HINGE = "(margin - target_score[i] + score[i])"
# multi_margin_loss: Σ over the classes c other than the target y of
# weight[y]·max(0, margin - x[y] + x[c])**p, / C
_MULTI_MARGIN = (f"Sum(Piecewise((weight[i]*{_HINGE}**p,"
                 f" Eq(cls_y[i], target[i]) & Ne(cls_c[i], target[i]) & ({_HINGE} > 0)), (0, True)), i)")
# multilabel_margin_loss: each target class y of a sample (listed[y] times in
# its class list, up to the first -1) against each class c that is no target
# (is_target[c] = 0): Σ listed[y]·max(0, 1 - x[y] + x[c]), / C
_MULTILABEL_MARGIN = (f"Sum(listed[i]*(1 - is_target[i])*Piecewise(({_HINGE}, {_HINGE} > 0), (0, True)), i)"
                      .replace("margin", "1"))


def _by_reduction(total: str) -> str:
    """The loss of all samples (mean: over n samples of C classes; N is
    n·C·C, the pairs), or of each sample for 'none'."""
    return f"Piecewise(({total}*C/N, Eq(reduction, 1)), ({total}/C, True))"


ROWS += (
    IndexFormula("MultiMarginLossBackward0", "multi-class margin loss", _by_reduction(_MULTI_MARGIN),
                 ("self",), ("target", "p", "margin", "weight", "reduction"), (("weight", 1),),
                 layout="class-pairs", branches_on=("p", "reduction")),
    IndexFormula("MultilabelMarginLossBackward0", "multi-label margin loss", _by_reduction(_MULTILABEL_MARGIN),
                 ("self",), ("target", "is_target", "reduction"), layout="class-pairs", branches_on=("reduction",)),
)
