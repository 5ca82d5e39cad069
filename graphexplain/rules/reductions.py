"""Reductions and the losses built on them: result = Σ forward / (N or 1).

The gradient of a reduction sends the upstream of each output element back
to every element it combined; that "spread back" is one central step of
`graphexplain.derive.broadcast`, not repeated here.
"""

from .kinds import Reduction

ROWS = (
    Reduction("SumBackward0", "sum of all elements", "self", reduce="sum"),
    Reduction("SumBackward1", "sum over dims", "self", params=("dim", "keepdim"), reduce="sum", over="dim"),
    Reduction("MeanBackward0", "mean of all elements", "self", reduce="mean"),
    Reduction("MeanBackward1", "mean over dims", "self", params=("dim", "keepdim"), reduce="mean", over="dim"),
    Reduction(
        "MseLossBackward0", "mean squared error", "(self - target)**2",
        ("self", "target"), ("reduction",), reduce="reduction",
    ),
    Reduction(
        "BinaryCrossEntropyBackward0", "binary cross-entropy",
        "-weight*(target*log(self) + (1 - target)*log(1 - self))",
        ("self", "target"), ("weight", "reduction"), (("weight", 1),), reduce="reduction",
    ),
)
