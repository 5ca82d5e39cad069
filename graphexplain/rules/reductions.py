"""Reductions: result = Σ forward / (N or 1). The elementwise losses built on
them are in rules/losses.py.

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
)
