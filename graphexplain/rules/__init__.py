"""The rule table: one row per grad_fn type, keyed by its name.

Each family of ops keeps its rows in a module of its own; adding an op is
adding one row there. See `kinds` for the vocabulary every row uses.

    >>> TABLE["MulBackward0"].forward
    'self*other'
    >>> lookup("SomeOpNobodyWroteARuleFor") is None
    True
"""

from __future__ import annotations

from typing import Dict, Optional

from . import linalg, pointwise, reductions, shape
from . import activations, losses, special
from . import accumulate, normalization, softmax
from . import indexing
from . import double_backward
from . import composite
from . import convolution
from . import fft
from . import views
from . import sampling
from .kinds import Matrix, NotDifferentiable, Pointwise, Reduction, Routing, Rule

FAMILIES = (pointwise, reductions, shape, linalg)
FAMILIES += (special, activations, losses)
FAMILIES += (softmax, normalization, accumulate)
FAMILIES += (indexing,)
FAMILIES += (double_backward,)
FAMILIES += (composite,)
FAMILIES += (convolution,)
FAMILIES += (fft,)
FAMILIES += (views,)
FAMILIES += (sampling,)


def _build_table() -> Dict[str, Rule]:
    table: Dict[str, Rule] = {}
    for family in FAMILIES:
        for row in family.ROWS:
            if row.op in table:
                raise ValueError(f"two rows for {row.op}")
            table[row.op] = row
    return table


TABLE: Dict[str, Rule] = _build_table()


def lookup(op: str) -> Optional[Rule]:
    """The row for a grad_fn type name, or None when there is none."""
    return TABLE.get(op)


__all__ = [
    "TABLE", "lookup", "Rule", "Pointwise", "Reduction", "Routing", "Matrix",
    "NotDifferentiable",
]
