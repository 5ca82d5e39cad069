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

from bisect import bisect_left
from functools import lru_cache
from typing import Callable, Dict, Optional, Tuple, Union

import sympy as sp
from sympy.core.symbol import Str

from . import disk_cache
from .naming import formula_text, rename, show, tidied

_SIZE = 4096  # distinct formulas × names; a model has a few hundred


@lru_cache(maxsize=_SIZE)
def printed(expr: sp.Basic) -> str:
    """``formula_text(expr)``, once per formula."""
    return formula_text(expr)


def named_formula(expr: sp.Basic, names: Dict[str, Union[str, sp.Expr, None]]) -> str:
    """``show(rename(expr, names))``, printed by sympy once per formula and
    pattern of names (Note [a formula printed once for every layer]).

    Only the names of the formula's own symbols make the key: a node's
    result name (its own label) is in every node's names, and keyed by all
    of them no two nodes of a 32000-node LSTM loop shared a printing, a
    third of explaining it."""
    atoms = _named_atoms(expr)
    try:
        chosen = {name: names[name] for name, _ in atoms if names.get(name) is not None}
        hash(tuple(chosen.values()))
    except TypeError:  # a name that is not hashable: nothing to reuse
        return show(rename(expr, names))
    words = {name: word for name, word in chosen.items() if isinstance(word, str)}
    # what rename leaves as it is: a symbol with no name given, and a matrix given a number
    fixed = {name for name, matrix in atoms if name not in chosen or (matrix and name not in words)}
    stand_ins = None if _indices(expr) & set(words) else _stand_ins(fixed, set(words.values()))
    if stand_ins is None:
        return tidied(_printed_with(expr, tuple(sorted(chosen.items(), key=lambda item: item[0]))))
    given = dict(chosen, **{name: stand_ins[word] for name, word in words.items()})
    text = _printed_with(expr, tuple(sorted(given.items(), key=lambda item: item[0])))
    for word, stand_in in stand_ins.items():
        if stand_in != word:
            text = text.replace(stand_in, word)
    return tidied(text)


# Note [a formula printed once for every layer]
# Printing a formula in the user's names is sympy's slowest work on a warm
# run, and every layer of a ResNet or a transformer has its own names for
# the same few formulas. So a formula is printed once with stand-ins for
# the names, and each node's names are put into that text.
#
# sympy orders what it prints by comparing names: a symbol's name, and an
# indexed tensor's whole text (x[k]), so there a name's next character
# counts too. Where no name in the formula begins another (x and x1), such
# comparisons are decided inside the names, and a stand-in that compares
# with every other name as its word does, and begins none of them, gives
# the same order: the word's first t characters (t: enough to differ from
# the formula's names on either side of it), a mark and the word's rank.
# A word that is one of the formula's own names is left as it is, so that
# sympy merges the two symbols as it would (self*other with both named y
# is y**2). Anything else (names that begin one another, a name given to
# an index, control characters, which the marks could meet) is printed
# directly.
_MARK, _END = "\x01", "\x02"


def _stand_ins(fixed, words) -> Optional[Dict[str, str]]:
    """Each word's stand-in (Note [a formula printed once for every
    layer]), or None where the names do not allow them."""
    ordered = sorted(set(fixed) | set(words))
    if any(character < " " for name in ordered for character in name) or \
            any(later.startswith(name) for name, later in zip(ordered, ordered[1:])):
        return None
    sorted_fixed = sorted(fixed)
    new = sorted(set(words) - set(fixed))
    length = 0
    for word in new:  # the first position where the word differs from its neighbours among the fixed names
        below = bisect_left(sorted_fixed, word)
        for neighbour in sorted_fixed[below - 1:below + 1] if below else sorted_fixed[:1]:
            length = max(length, next(at for at, (a, b) in enumerate(zip(word, neighbour)) if a != b) + 1)
    found = {word: word for word in words if word in fixed}
    found.update({word: f"{word[:length]}{_MARK}{rank:06d}{_END}" for rank, word in enumerate(new)})
    return found


@lru_cache(maxsize=_SIZE)
def _named_atoms(expr: sp.Basic) -> Tuple[Tuple[str, bool], ...]:
    """(name, is a matrix) of every symbol `rename` may replace, sorted."""
    return tuple(sorted({(atom.name, isinstance(atom, sp.MatrixSymbol))
                         for atom in expr.atoms(sp.Symbol, sp.MatrixSymbol)}))


@lru_cache(maxsize=_SIZE)
def _indices(expr: sp.Basic) -> frozenset:
    """The names of the symbols a formula uses as indices."""
    return frozenset(symbol.name for indexed in expr.atoms(sp.Indexed) for index in indexed.indices
                     for symbol in index.free_symbols)


@lru_cache(maxsize=_SIZE)
def _printed_with(expr: sp.Basic, names) -> str:
    return formula_text(rename(expr, dict(names)))


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
    names["Str"] = Str  # a MatrixSymbol's name, which sympy does not export
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
