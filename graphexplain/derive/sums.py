"""Numbers for formulas in index notation: numpy's reading of a Sum.

The vocabulary a row in index notation may use besides sympy's own
(`Maximum`, `Minimum`, `isnan`), and `Evaluation`, which gives a formula's
value for every row and every place along the op's axis at once (Note
[evaluating Sums]). Rows and axis come from `graphexplain.derive.layouts`.

    >>> import sympy as sp
    >>> i, j = sp.symbols("i j", integer=True)
    >>> x = sp.IndexedBase("x", real=True)
    >>> evaluation = Evaluation({"x": np.array([[1.0, 2.0, 3.0]])}, {}, rows=(1,), count=3, depth=2)
    >>> evaluation.result(sp.Sum(x[i], (i, 0, j)), j).tolist()  # cumsum
    [[1.0, 3.0, 6.0]]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Tuple

import mpmath
import numpy as np
import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.logic.boolalg import BooleanFunction

LIMIT = 20_000_000  # array elements one evaluation may hold


class CannotEvaluate(ValueError):
    """This node's numbers do not fit its row (a value torch did not keep,
    a layout the row does not cover, arrays too large to evaluate)."""


# --- the vocabulary's sympy objects -----------------------------------------------


class Maximum(ExprWithLimits):
    """The largest value of a term along the axis: ``Maximum(Abs(self[l]), l)``.
    Rows use it only inside conditions (which element is the largest), so
    sympy never differentiates it."""


class Minimum(ExprWithLimits):
    """The smallest value of a term along the axis, as `Maximum`."""


class isnan(BooleanFunction):  # noqa: N801 (the name rows write)
    """True where a number is nan: nansum's ``Piecewise((0, isnan(self[i])), (self[i], True))``."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        return None


KRONECKER = sp.Function("kronecker")  # KroneckerDelta, as numpy evaluates it
NUMPY = {
    "kronecker": lambda a, b: np.equal(a, b).astype(np.float64),
    "isnan": np.isnan,
}
REDUCTIONS = (sp.Sum, sp.Product, Maximum, Minimum)
_REDUCE = {  # how numpy combines a term along the axis, and what a left-out place holds
    sp.Sum: (np.sum, 0.0),
    sp.Product: (np.prod, 1.0),
    Maximum: (np.max, -np.inf),
    Minimum: (np.min, np.inf),
}

# --- evaluating ---------------------------------------------------------------------


# Note [evaluating Sums]
# Every tensor is arranged as (*rows, N) (`Layout.arrange`). The formula's
# free index (j for a gradient, k for a forward value) runs along one more
# axis after the rows, and each Sum nested inside binds its index to the
# next axis: self[i] inside Sum(..., i) is self's numbers laid along that
# axis. A Sum is then numpy's sum along its axis (keepdims, so that it
# broadcasts back against the terms outside it), innermost first, with the
# places outside its range (i from 0 to k for cumsum) left out. Everything
# between Sums is ordinary numpy arithmetic, via sympy's lambdify.
class Evaluation:
    def __init__(self, tensors: Dict[str, np.ndarray], numbers: Dict[str, object], rows: Tuple[int, ...],
                 count: int, depth: int, exact: bool = False):
        self.exact = exact
        self.tensors = {name: _exactly(value) for name, value in tensors.items()} if exact else tensors
        self.numbers = {name: value if name == "N" else _exactly(value) for name, value in numbers.items()} \
            if exact else dict(numbers)
        self.rows, self.count, self.depth = rows, count, depth
        self.cache: Dict = {}

    def _along(self, array: np.ndarray, axis: int) -> np.ndarray:
        """(*rows, n) → (*rows, 1, ..., n at `axis`, ..., 1)."""
        array = np.asarray(array)
        trailing = [1] * self.depth
        trailing[axis] = array.shape[-1]
        return array.reshape(array.shape[:-1] + tuple(trailing))

    def _position(self, axis: int) -> np.ndarray:
        return self._along(np.arange(self.count, dtype=np.float64).reshape((1,) * len(self.rows) + (-1,)), axis)

    def value(self, expr: sp.Basic, env: Dict[sp.Symbol, int]):
        return _compiled(expr, _env_key(env), self.exact)(self)

    def reduce(self, combine, left_out, axis: int, term, low, high):
        """One reduction's numbers (Note [evaluating Sums]): `term`'s values
        along `axis`, the places outside [`low`, `high`] left out."""
        if axis >= self.depth:
            raise CannotEvaluate("sums nested deeper than expected")
        values = term(self)
        low, high = low(self), high(self)
        position = self._position(axis)
        inside = np.asarray((position >= low) & (position <= high), dtype=bool)
        shape = np.broadcast_shapes(np.shape(values), inside.shape)
        if int(np.prod(shape, dtype=np.int64)) > (EXACT_LIMIT if self.exact else LIMIT):
            raise CannotEvaluate(f"too many numbers to evaluate in index notation ({shape})")
        kept = np.where(inside, values, _exactly(left_out) if self.exact else left_out)
        return combine(kept, axis=len(self.rows) + axis, keepdims=True)

    def result(self, expr: sp.Expr, free: sp.Symbol) -> np.ndarray:
        """The formula's value for each row and each place of `free`: (*rows, N or 1)."""
        with np.errstate(all="ignore"):  # nan/inf are shown and compared, not raised
            values = np.asarray(self.value(expr, {free: 0}))
        values = values.reshape(values.shape + (1,) * (len(self.rows) + self.depth - values.ndim)) \
            if values.ndim else values.reshape((1,) * (len(self.rows) + self.depth))
        values = values.reshape(values.shape[:len(self.rows) + 1])
        return values if self.exact else values.astype(np.float64)


# Note [a formula read once, evaluated per node]
# A formula's reading (which parts are tensors' elements, positions along
# an axis, named numbers, reductions; the numpy function between them) is
# the same for every node of a row: a ResNet's 20 batch norms share one.
# Read at every node it was sympy's tree walked, replaced and printed for
# sorting again and again, a fifth of explaining the model. It is read once
# per (formula, axes, mode) into a tree of closures (`_compiled`), which
# each evaluation runs on its own numbers; a part met twice is one closure,
# computed once per evaluation as before. The numpy work is unchanged.
_UNSET = object()


def _env_key(env: Dict[sp.Symbol, int]) -> tuple:
    return tuple(sorted(env.items(), key=str))


@lru_cache(maxsize=4096)
def _compiled(expr: sp.Basic, env_key: tuple, exact: bool):
    """`expr`'s value under the index axes `env_key`, as a function of an
    Evaluation, computed once per evaluation (Note [a formula read once,
    evaluated per node])."""
    compute = _reading(expr, env_key, exact)

    def run(evaluation: Evaluation):
        found = evaluation.cache.get(run, _UNSET)
        if found is _UNSET:
            found = evaluation.cache[run] = compute(evaluation)
        return found
    return run


def _reading(expr: sp.Basic, env_key: tuple, exact: bool):
    env = dict(env_key)
    if isinstance(expr, sp.Indexed):
        name, (index,) = str(expr.base.label), expr.indices
        axis = env.get(index)

        def element(evaluation):
            if axis is None or name not in evaluation.tensors:
                raise CannotEvaluate(f"no value for {expr}")
            return evaluation._along(evaluation.tensors[name], axis)
        return element
    if expr in env:
        axis = env[expr]
        return lambda evaluation: evaluation._position(axis)
    if isinstance(expr, sp.Symbol):
        name = expr.name

        def number(evaluation):
            found = evaluation.numbers.get(name)
            if found is None:
                raise CannotEvaluate(f"no value for {name}")
            return evaluation._along(found, 0) if isinstance(found, np.ndarray) and found.ndim else found
        return number
    if isinstance(expr, REDUCTIONS):
        combine, left_out = _REDUCE[type(expr)]
        *inner, (index, low, high) = expr.limits
        term = expr.function if not inner else type(expr)(expr.function, *inner)
        axis = len(env)
        values = _compiled(term, _env_key({**env, index: axis}), exact)
        lowest, highest = _compiled(low, env_key, exact), _compiled(high, env_key, exact)
        return lambda evaluation: evaluation.reduce(combine, left_out, axis, values, lowest, highest)
    if expr.is_number:
        constant = _exactly(float(expr)) if exact else float(expr)
        return lambda evaluation: constant
    pieces = _pieces(expr)
    names = tuple(sp.Symbol(f"_piece{n}") for n in range(len(pieces)))
    body = expr.xreplace(dict(zip(pieces, names))).replace(sp.KroneckerDelta, KRONECKER)
    function = _lambdified(body, names, exact)
    parts = [_compiled(piece, env_key, exact) for piece in pieces]
    return lambda evaluation: function(*(part(evaluation) for part in parts))


def _pieces(expr: sp.Basic) -> List[sp.Basic]:
    """The outermost parts numpy cannot do alone: tensors' elements, sums,
    indices and named numbers."""
    found: List[sp.Basic] = []

    def walk(e):
        if isinstance(e, (sp.Indexed, sp.Symbol) + REDUCTIONS):
            if e not in found:
                found.append(e)
            return
        for argument in e.args:
            walk(argument)

    walk(expr)
    return found


@lru_cache(maxsize=None)
def _lambdified(body: sp.Expr, names: Tuple[sp.Symbol, ...], exact: bool = False):
    return sp.lambdify(names, body, modules=[MPMATH if exact else NUMPY, "numpy"])


def depth(expr: sp.Basic) -> int:
    """How deeply reductions nest in `expr` (a Sum inside a Sum is 2)."""
    if isinstance(expr, REDUCTIONS):
        bounds = [bound for _, *pair in expr.limits for bound in pair]
        return len(expr.limits) + max([depth(expr.function)] + [depth(bound) for bound in bounds])
    return max((depth(argument) for argument in expr.args), default=0)


# Note [overflow inside an index formula]
# sympy's gradient of logcumsumexp, exp(self[j])*Sum(G[k]/Sum(exp(self[i]), ...)),
# is inf/inf in float64 once an element passes 709, although its value is an
# ordinary number (torch's op_db feeds it 10000). As for pointwise rows (Note
# [overflow inside a derived formula] in derive/formula.py), a result that comes
# out inf or nan from finite numbers is evaluated again with mpmath numbers,
# whose exponents do not overflow, and those elements are taken from there.
EXACT_LIMIT = 200_000  # mpmath numbers one such evaluation may hold


def _exactly(value):
    """float64 numbers as mpmath's (an object array for an array)."""
    if isinstance(value, np.ndarray):
        return np.vectorize(mpmath.mpf, otypes=[object])(value) if value.size else value.astype(object)
    return mpmath.mpf(value) if isinstance(value, (int, float, np.floating)) else value


def _by_element(function):
    return np.vectorize(function, otypes=[object])


def _select(conditions, choices, default=np.nan):
    conditions = [np.asarray(condition, dtype=bool) for condition in conditions]
    return np.select(conditions, [np.asarray(choice, dtype=object) for choice in choices], default)


MPMATH = {
    "exp": _by_element(mpmath.exp), "log": _by_element(mpmath.log), "sqrt": _by_element(mpmath.sqrt),
    "sign": _by_element(mpmath.sign), "isnan": _by_element(mpmath.isnan), "select": _select,
    "kronecker": lambda a, b: np.where(np.asarray(np.equal(a, b), dtype=bool), 1, 0),
}


def finite(values) -> bool:
    """Whether every number of every value is finite."""
    return all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in values)
