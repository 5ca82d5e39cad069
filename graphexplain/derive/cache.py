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

What sympy derives is also kept on disk between runs (derive/disk_cache.py):
`derived` keeps an expression, `derived_text` a string made from one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, Optional, Union

import sympy as sp

from . import disk_cache
from .naming import rename, show

_SIZE = 4096  # distinct formulas × names; a model has a few hundred


@lru_cache(maxsize=_SIZE)
def printed(expr: sp.Basic) -> str:
    """``str(expr)``, once per formula."""
    return str(expr)


def named_formula(expr: sp.Basic, names: Dict[str, Union[str, sp.Expr, None]]) -> str:
    """``show(rename(expr, names))``, once per formula and set of the names it uses.

    Only the names of the formula's own symbols make the key: a node's
    result name (its own label) is in every node's names, and keyed by all
    of them no two nodes of a 32000-node LSTM loop shared a printing, a
    third of explaining it."""
    used = _symbol_names(expr)
    try:
        key = tuple(sorted(((k, v) for k, v in names.items() if k in used), key=lambda item: item[0]))
        hash(key)
    except TypeError:  # a name that is not hashable: nothing to reuse
        return show(rename(expr, names))
    return _named(expr, key)


@lru_cache(maxsize=_SIZE)
def _symbol_names(expr: sp.Basic) -> frozenset:
    return frozenset(atom.name for atom in expr.atoms(sp.Symbol, sp.MatrixSymbol))


@lru_cache(maxsize=_SIZE)
def _named(expr: sp.Basic, names) -> str:
    return show(rename(expr, dict(names)))


# --- between runs (Note [the derivation cache on disk] in derive/disk_cache.py)


def row_key(rule, *more) -> Optional[str]:
    """The row's whole declaration and the rest of a derivation's arguments,
    as text; None where the text would differ between runs (an object shown
    by its address), which is then not kept."""
    key = repr((rule,) + more)
    return None if " at 0x" in key else key


@lru_cache(maxsize=1)
def _namespace() -> Dict[str, object]:
    from .functions import NAMES

    names = {name: getattr(sp, name) for name in dir(sp) if not name.startswith("_")}
    names.update(NAMES)  # our floor, ndtr, ...: srepr writes them by their names
    names["__builtins__"] = {}
    return names


def _rebuilt(text: str):
    return eval(text, dict(_namespace()))  # noqa: S307 (sympy's srepr of our own derivation)


def derived(kind: str, key: Optional[str], derive: Callable[[], Optional[sp.Basic]]) -> Optional[sp.Basic]:
    """`derive()`, or what it gave in an earlier run: the expression is kept
    as sympy's srepr, and only where it reads back as the same expression."""
    if key is not None:
        found = disk_cache.load(kind, key)
        if found is not None:
            try:
                return None if found == "None" else _rebuilt(found)
            except Exception:  # noqa: BLE001 - a damaged entry is derived again, never an error
                pass
    expr = derive()
    if key is not None:
        text = "None" if expr is None else sp.srepr(expr)
        try:
            same = expr is None or _rebuilt(text) == expr
        except Exception:  # noqa: BLE001 - does not read back: not kept
            same = False
        if same:
            disk_cache.store(kind, key, text)
    return expr


def derived_text(kind: str, expr: sp.Basic, make: Callable[[], str]) -> str:
    """`make()`, a string sympy makes from `expr` (simplified and printed),
    or what it made from the same expression in an earlier run."""
    return disk_cache.remember(kind, sp.srepr(expr), make)
