"""Per-call work that depends only on the formula and the names: cached,
so a training loop explained at every step (``--call all``) pays sympy's
printer once per distinct formula, not once per node per call.

The derivations themselves are cached where they are made (derive/formula.py,
derive/indexed.py, derive/complex.py, derive/budget.py: each an lru_cache on
a pure function of the row, the shapes and the constants); what is here is
what a node's record needs on top: sympy's string of the formula, and the
formula in the user's names.

    >>> import sympy as sp
    >>> named_formula(sp.Symbol("other") * 2, {"other": "y"})
    '2*y'
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Union

import sympy as sp

from .naming import rename, show

_SIZE = 4096  # distinct formulas × names; a model has a few hundred


@lru_cache(maxsize=_SIZE)
def printed(expr: sp.Basic) -> str:
    """``str(expr)``, once per formula."""
    return str(expr)


def named_formula(expr: sp.Basic, names: Dict[str, Union[str, sp.Expr, None]]) -> str:
    """``show(rename(expr, names))``, once per formula and set of names."""
    try:
        key = tuple(sorted(names.items(), key=lambda item: item[0]))
        hash(key)
    except TypeError:  # a name that is not hashable: nothing to reuse
        return show(rename(expr, names))
    return _named(expr, key)


@lru_cache(maxsize=_SIZE)
def _named(expr: sp.Basic, names) -> str:
    return show(rename(expr, dict(names)))
