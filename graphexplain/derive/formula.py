"""From a row's forward formula to sympy expressions and numpy functions.

Everything here is cached per row: sympy derives each local gradient once
per process, however many nodes or training steps use the row.

    >>> from graphexplain.rules import TABLE
    >>> str(local_gradient(TABLE["MulBackward0"], "self"))
    'other'
    >>> str(local_gradient(TABLE["MeanBackward0"], "self", "mean"))
    '1/N'
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np
import sympy as sp
from sympy.concrete.delta import deltasummation
from sympy.parsing.sympy_parser import parse_expr

from ..rules.kinds import Matrix, Reduction, Routing, Rule
from . import budget, cache, functions, routing

RESULT = "result"
COUNT = "N"  # elements combined by a reduction
UPSTREAM = "G"  # the upstream gradient, in matrix rows


def _names(rule: Rule) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(rule.inputs + rule.params + (RESULT, COUNT)))


@lru_cache(maxsize=None)
def symbols(rule: Rule) -> Dict[str, sp.Symbol]:
    """The row's vocabulary as real sympy symbols (real, so that |x|' is
    sign(x) rather than a complex-valued expression)."""
    return {name: sp.Symbol(name, real=True) for name in _names(rule)}


@lru_cache(maxsize=None)
def forward(rule: Rule) -> sp.Expr:
    """The row's forward formula, parsed; elementwise for pointwise rows, the
    per-element term of reductions, a call of a routing function."""
    local = dict(functions.NAMES)  # log1p, floor, ...: see derive/functions.py
    local.update(symbols(rule))
    if isinstance(rule, Routing):
        local["result_shape"] = sp.Symbol("result_shape")
        local.update({name: sp.Function(name) for name in routing.FUNCTIONS if name not in symbols(rule)})
    return parse_expr(rule.forward, local_dict=local)


# Note [Piecewise from a Sum's derivative]
# d/dx[j] of Sum(f(x[i]), (i, 0, N-1)) comes back from sympy as
# Piecewise((f'(x[j]), (0 <= j) & (j <= N-1)), (0, True)): sympy cannot know
# that j is one of the summed positions. Here it always is (j runs over the
# elements of the reduced operand), so the first branch is the derivative.
def _inside_the_sum(expr: sp.Expr, j: sp.Symbol) -> sp.Expr:
    def first_branch(piecewise):
        value, condition = piecewise.args[0]
        about_j = j in condition.free_symbols and not condition.atoms(sp.Indexed)  # not a loss's own branch
        return value if about_j else piecewise

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), first_branch)


# Note [a Kronecker delta inside a Piecewise]
# For a term with branches (huber, smooth_l1), d/dx[j] of the sum is
# Sum(Piecewise((f'(x[i])*δ(i, j), c(x[i])), ...)): sympy sums δ(i, j) away
# only when it is a factor of the whole summand (and a Sum folds a factor
# back into the branches), so where every branch holds δ (or is 0) it is
# moved out of them, δ*Piecewise((f'(x[i]), c(x[i])), ...), and summed.
def _delta_outside_branches(expr: sp.Expr) -> sp.Expr:
    def pull_out(piecewise):
        for delta in piecewise.atoms(sp.KroneckerDelta):
            values = [value for value, _ in piecewise.args]
            if all(value == 0 or delta in sp.Mul.make_args(value) for value in values):
                return delta * piecewise.func(*((value / delta, condition) for value, condition in piecewise.args))
        return piecewise

    def summed(total):
        if len(total.limits) != 1 or not isinstance(total.function, sp.Piecewise):
            return total
        term = pull_out(total.function)
        return deltasummation(term, total.limits[0]) if term is not total.function else total

    return expr.replace(lambda e: isinstance(e, sp.Sum), summed)


@lru_cache(maxsize=None)
def reduced_forward(rule: Reduction, mode: str) -> Tuple[sp.Expr, Dict[str, sp.Indexed]]:
    """The whole reduction in index notation: Σ_i forward(self[i], ...) / N."""
    i = sp.Symbol("i", integer=True)
    count = symbols(rule)[COUNT]
    term = forward(rule)
    indexed = {name: sp.IndexedBase(name, real=True)[i] for name in rule.inputs}
    term = term.subs({symbols(rule)[name]: indexed[name] for name in rule.inputs})
    if mode == "none":
        return term, indexed
    total = sp.Sum(term, (i, 0, count - 1))
    return (total / count if mode == "mean" else total), indexed


@lru_cache(maxsize=None)
def local_gradient(rule: Rule, input_name: str, mode: str = "") -> sp.Expr:
    """∂result/∂input, derived by sympy from the row's forward formula
    (or read back from an earlier run's derivation: derive/disk_cache.py).

    Pointwise rows differentiate the elementwise formula. Reductions
    differentiate the index-notation sum with respect to one element
    ``input[j]``; routing rows differentiate ``self[pi(k)]`` (a Kronecker
    delta). Matrix rows are derived by `vector_jacobian_product` instead.
    """
    return cache.derived("local-gradient", cache.row_key(rule, input_name, mode),
                         lambda: _local_gradient(rule, input_name, mode))


def _local_gradient(rule: Rule, input_name: str, mode: str) -> sp.Expr:
    names = symbols(rule)
    if isinstance(rule, Reduction) and mode != "none":
        total, indexed = reduced_forward(rule, mode)
        j = sp.Symbol("j", integer=True)
        element = {name: sp.IndexedBase(name, real=True)[j] for name in rule.inputs}
        derivative = _delta_outside_branches(total.diff(element[input_name])).doit()
        derivative = _inside_the_sum(derivative, j)
        back = {element[name]: names[name] for name in rule.inputs}
        back.update({indexed[name]: names[name] for name in rule.inputs})
        return tidy(derivative.subs(back))
    if isinstance(rule, Routing):
        j, k = sp.symbols("j k", integer=True)
        pi = sp.Function("pi")
        source = sp.IndexedBase(input_name)
        return source[pi(k)].diff(source[j])
    return tidy(sp.diff(forward(rule), names[input_name]))


# Note [an input told by its result]
# Some ops keep only their result (rsqrt, sigmoid and exp save `result`), and
# inside a bigger op (rms_norm's x.pow(2).mean() + eps) the input itself may
# be recorded nowhere. When sympy can solve the row's forward formula for that
# input, and finds one solution, the local gradient is rewritten in the
# result: sigmoid's exp(-self)/(1 + exp(-self))**2 becomes
# result*(1 - result), rsqrt's becomes -result**3/2. A forward in pieces is
# solved piece by piece (Note [a piece told by the result]).
@lru_cache(maxsize=None)
def local_gradient_in_result(rule: Rule, input_name: str, unknown: str) -> Optional[sp.Expr]:
    """∂result/∂input with the `unknown` operand written in the result, or
    None where the forward formula does not give it back uniquely.

    >>> from graphexplain.rules import TABLE
    >>> str(local_gradient_in_result(TABLE["SqrtBackward0"], "self", "self"))
    '1/(2*Abs(result))'
    >>> str(local_gradient_in_result(TABLE["LeakyReluBackward1"], "self", "self"))
    'Piecewise((1, result > 0), (negative_slope, True))'
    """
    return cache.derived("local-gradient-in-result", cache.row_key(rule, input_name, unknown),
                         lambda: _local_gradient_in_result(rule, input_name, unknown))


def _local_gradient_in_result(rule: Rule, input_name: str, unknown: str) -> Optional[sp.Expr]:
    names = symbols(rule)
    term = forward(rule)
    if isinstance(rule, (Reduction, Routing, Matrix)):
        return None
    if isinstance(term, sp.Piecewise):
        found = pieces_in_result(rule, input_name, unknown)
        if found is None:
            return None
        *first, last = found
        return sp.Piecewise(*((piece.gradient, piece.condition) for piece in first), (last.gradient, True))
    if term.has(sp.Piecewise, sp.Max, sp.Min):
        return None
    solution = _solved_for(names[RESULT], term, names[unknown])
    if solution is None:
        return None
    return tidy(sp.simplify(local_gradient(rule, input_name).subs(names[unknown], solution)))


def _solved_for(result: sp.Symbol, value: sp.Expr, unknown: sp.Symbol) -> Optional[sp.Expr]:
    """The one real solution of result = value for `unknown`, else None.
    sympy's solve may answer with complex branches too (tanh's two logs);
    solveset over the reals then gives the one real solution (atanh)."""
    try:
        solutions = sp.solve(sp.Eq(result, value), unknown)
    except (NotImplementedError, TypeError, ValueError):
        return None
    if len(solutions) == 1 and not solutions[0].has(sp.I):
        return solutions[0]
    if len(solutions) < 2:
        return None
    try:
        found = sp.solveset(sp.Eq(result, value), unknown, sp.S.Reals)
    except (NotImplementedError, TypeError, ValueError):
        return None
    if isinstance(found, sp.Intersection) and sp.S.Reals in found.args:  # {atanh(result)} ∩ ℝ
        found = sp.Intersection(*(part for part in found.args if part != sp.S.Reals))
    if isinstance(found, sp.FiniteSet) and len(found) == 1 and not found.args[0].has(sp.I):
        return found.args[0]
    return None


# Note [a piece told by the result]
# An in-place activation (leaky_relu_, elu_, celu_, rrelu_) keeps only its
# result, and its forward is in pieces. Each piece is solved for the input on
# its own: leaky_relu's negative piece gives self = result/negative_slope. The
# piece's condition, read at that input, says whether the result came from it;
# a piece that is only in force where earlier ones are not (Piecewise takes
# the first that holds) is read with their conditions failing there too. A
# flat piece (relu's 0, hardtanh's bounds) gives no input back, and its
# gradient needs none: it claims the results equal to its value. So relu's
# gradient in the result is Piecewise((1, result > 0), (0, True)).
#
# This tells the input only where one piece, and only one, can have made the
# result: with a negative slope, a positive result of leaky_relu could come
# from either side (torch refuses that backward too). So `told_by_result`
# checks, element by element, that exactly one piece claims the result (its
# condition holds at its input, and the forward, run on that input, gives the
# result back), and that it is the first piece whose condition holds, so that
# the Piecewise shown is the one computed. Where it is not, the node keeps
# torch's numbers. The inputs are computed with log1p and expm1 (sympy's
# C99 rewrites), so that a result within rounding of a kink falls on its side.
class Piece(NamedTuple):
    gradient: sp.Expr  # ∂result/∂input on this piece, in the result
    condition: sp.Expr  # in the result: the piece is in force at the input it gives back
    unknown: Optional[sp.Expr]  # the unknown operand on this piece, in the result; None on a flat piece
    value: sp.Expr  # the piece's forward formula


@lru_cache(maxsize=None)
def pieces_in_result(rule: Rule, input_name: str, unknown: str) -> Optional[Tuple[Piece, ...]]:
    """Each piece of a Piecewise forward, its gradient and condition written
    in the result (Note [a piece told by the result]); None where a piece
    cannot be solved for the unknown uniquely."""
    names = symbols(rule)
    term, result, hidden = forward(rule), names[RESULT], names[unknown]
    if not isinstance(term, sp.Piecewise) or any(value.has(sp.Piecewise, sp.Max, sp.Min) for value, _ in term.args):
        return None
    pieces = []
    for index, (value, condition) in enumerate(term.args):
        in_force = sp.And(condition, *(sp.Not(earlier) for _, earlier in term.args[:index]))
        gradient = sp.diff(value, names[input_name])
        if not value.has(hidden):
            given = [part for part in sp.And.make_args(in_force) if not part.has(hidden)]
            pieces.append(Piece(tidy(gradient), sp.And(sp.Eq(result, value), *given), None, value))
            continue
        # an input that appears once is undone function by function; sympy
        # may search without end for one that appears more often (gelu's)
        solution = _solved_for(result, value, hidden) if _appearances(value, hidden) == 1 else None
        if solution is None:
            return None
        pieces.append(Piece(tidy(sp.simplify(gradient.subs(hidden, solution))),
                            _precise(sp.simplify(in_force.subs(hidden, solution))), _precise(solution), value))
    return tuple(pieces)


def _appearances(expr: sp.Expr, symbol: sp.Symbol) -> int:
    """How many times `symbol` appears in `expr`'s tree."""
    return sum(1 for node in sp.preorder_traversal(expr) if node == symbol)


def _precise(expr: sp.Expr) -> sp.Expr:
    """log(1 + x) as log1p(x), exp(x) - 1 as expm1(x): the same function,
    computed without cancelling near 0."""
    def as_log1p(log):
        rest = sp.cancel(log.args[0] - 1)
        return functions.NAMES["log1p"](rest) if sp.count_ops(rest) <= sp.count_ops(log.args[0]) else log

    if isinstance(expr, sp.logic.boolalg.Boolean):  # a condition: each side of each comparison
        return expr.replace(lambda e: isinstance(e, sp.core.relational.Relational),
                            lambda comparison: comparison.func(_precise(comparison.lhs), _precise(comparison.rhs)))
    expr = expr.replace(lambda e: isinstance(e, sp.log) and len(e.args) == 1, as_log1p)
    from sympy.codegen.rewriting import expm1_opt, optimize  # here: it loads sympy.tensor and combinatorics

    return optimize(expr, [expm1_opt])


def told_by_result(rule: Rule, unknown: str, values: Dict[str, object]) -> np.ndarray:
    """Where the result tells which piece of the forward made it: one piece
    claims it, the first whose condition holds (Note [a piece told by the
    result]). True everywhere for a forward not in pieces.

    >>> from graphexplain.rules import TABLE
    >>> negative_slope = {"negative_slope": np.array(-0.1), "result": np.array([-0.2, 0.0, 0.5])}
    >>> told_by_result(TABLE["LeakyReluBackward1"], "self", negative_slope).tolist()
    [False, True, False]
    """
    names = symbols(rule)
    term = forward(rule)
    if not isinstance(term, sp.Piecewise):
        return np.asarray(True)
    pieces = pieces_in_result(rule, unknown, unknown)
    if pieces is None:
        return np.asarray(False)
    result = np.asarray(values[RESULT], dtype=np.float64)
    whole = _precise(term)
    holds, claims = [], []
    for piece in pieces:
        condition = np.broadcast_to(evaluate(piece.condition, values), result.shape).astype(bool)
        if piece.unknown is None:
            claims.append(condition)
        else:
            recovered = evaluate(piece.unknown, values)
            again = evaluate(whole, dict(values, **{str(names[unknown]): recovered}))
            claims.append(condition & np.isclose(again, result, rtol=1e-9, atol=0.0))
        holds.append(condition)
    holds[-1] = np.ones(result.shape, dtype=bool)  # the Piecewise shown ends in (…, True)
    first = np.argmax(np.stack(holds), axis=0)
    claimed = np.stack(claims)
    return (claimed.sum(axis=0) == 1) & np.take_along_axis(claimed, first[None], axis=0)[0]


def tidy(expr: sp.Expr) -> sp.Expr:
    """Light simplification that keeps the shape a learner recognises:
    exponent*self**(exponent - 1), not sympy.simplify's rewrites (it turns
    the sigmoid's derivative into 1/(4*cosh(self/2)**2)). Of the gentle form
    and its factored form, the one with fewer operations wins."""
    gentle = sp.powsimp(sp.factor_terms(sp.together(expr)))
    factored = sp.factor(gentle)
    return factored if sp.count_ops(factored) <= sp.count_ops(gentle) else gentle


def free_names(expr: sp.Expr) -> Tuple[str, ...]:
    return tuple(sorted(str(symbol) for symbol in expr.free_symbols))


@lru_cache(maxsize=None)
def numeric(expr: sp.Expr) -> Tuple[Callable[..., np.ndarray], Tuple[str, ...]]:
    """A numpy function of the expression's free symbols, and their names
    in the order it takes them."""
    names = free_names(expr)
    function = functions.lambdify([sp.Symbol(n, real=True) for n in names], expr)
    return function, names


def evaluate(expr: sp.Expr, values: Dict[str, object]) -> np.ndarray:
    """Substitute the node's numbers into `expr` (numpy broadcasting).

    >>> x = sp.Symbol("self", real=True)
    >>> evaluate(sp.exp(x) / (sp.exp(x) + 1) ** 2, {"self": np.array([0.0, 800.0])}).tolist()
    [0.25, 0.0]
    """
    expr = _unrolled(expr, values)
    function, names = numeric(expr)
    missing = [name for name in names if values.get(name) is None]
    if missing:
        raise KeyError(", ".join(missing))
    arguments = [values[name] for name in names]
    overflowed = []
    with np.errstate(all="ignore", over="call"):  # nan/inf are shown and compared, not raised
        previous = np.seterrcall(lambda *_: overflowed.append(True))
        try:
            result = np.asarray(function(*arguments), dtype=np.float64)
        except NameError as unknown:
            raise ValueError(functions.missing_implementation(unknown)) from None
        finally:
            np.seterrcall(previous)
    return _without_overflow(expr, names, arguments, result, bool(overflowed))


# Note [sums over a saved count]
# mvlgamma is Σ_{j<p} loggamma(self - j/2) for the saved int p. numpy cannot
# loop a symbolic number of times, so once p's value is known the sum is
# written out term by term (for p = 3: three loggamma terms).
def _unrolled(expr: sp.Expr, values: Dict[str, object]) -> sp.Expr:
    counts = {symbol for total in expr.atoms(sp.Sum) for limit in total.limits
              for bound in limit[1:] for symbol in bound.free_symbols}
    known = {symbol: values.get(str(symbol)) for symbol in counts}
    if not counts or any(value is None or np.size(value) != 1 for value in known.values()):
        return expr
    numbers = {symbol: sp.Integer(int(np.asarray(value).item())) for symbol, value in known.items()}
    return expr.xreplace(numbers).doit()


# Note [overflow inside a derived formula]
# sympy's derivative of the sigmoid, exp(self)/(exp(self) + 1)**2, is inf/inf
# in float64 once self > 709, although its value is tiny. Where a formula
# comes out inf or nan from finite numbers, those elements are evaluated
# again with mpmath, whose exponents do not overflow. A value that is truly
# infinite (1/(2*sqrt(self)) at 0) raises or stays infinite there too. Where
# an intermediate overflowed, a 0 is suspect as well: logaddexp's
# exp(self)/(exp(other) + exp(self)) is finite/inf = 0 in float64, though
# its value (1e-136, say) is not.
def _without_overflow(expr: sp.Expr, names, arguments, result: np.ndarray, overflowed: bool = False) -> np.ndarray:
    if (np.all(np.isfinite(result)) and not overflowed) or not arguments:
        return result
    arrays = np.broadcast_arrays(result, *(np.asarray(a, dtype=np.float64) for a in arguments))
    result, inputs = arrays[0].copy(), arrays[1:]
    wrong = ~np.isfinite(result) | ((result == 0) if overflowed else False)
    suspect = wrong & np.all([np.isfinite(a) for a in inputs], axis=0)
    if not np.any(suspect):
        return result
    precise = sp.lambdify([sp.Symbol(n, real=True) for n in names], expr, modules=functions.MPMATH_MODULES)
    for index in zip(*np.nonzero(np.atleast_1d(suspect))) if suspect.ndim else [()]:
        try:
            result[index] = float(precise(*(float(a[index]) for a in inputs)))
        except (ArithmeticError, ValueError, TypeError, NameError):
            pass  # keep numpy's inf or nan
    return result


# --- matrix rows -----------------------------------------------------------
#
# Note [operands as matrices]
# Each operand of a matrix row becomes one MatrixSymbol of concrete shape,
# chosen by its layout: a matrix (its last two dims); a vector, taken as a
# column (1-D operands, and those the row names in `vectors`); broadcast
# (the result's shape: the gradient is summed back afterwards); a stack laid
# `across` as one wide matrix [X₁ … X_B], or `down` as one tall matrix
# [Y₁; …; Y_B]. The dims in front of a matrix or vector are a stack: the
# formula holds for each matrix of it (bmm, a batch of determinants), and
# `over_stack` applies it to each in turn.

MATRIX, VECTOR, BROADCAST, ACROSS, DOWN = "matrix", "vector", "broadcast", "across", "down"


def layout(rule: Matrix, name: str, shape: Tuple[int, ...]) -> str:
    """How the operand `name` of this shape meets the formula."""
    for kind, names in ((BROADCAST, rule.broadcast), (ACROSS, rule.across), (DOWN, rule.down),
                        (VECTOR, rule.vectors)):
        if name in names:
            return kind
    return VECTOR if len(shape) <= 1 else MATRIX


def _count(dims) -> int:
    return int(np.prod(dims, dtype=np.int64))


def _as_matrix_shape(shape: Tuple[int, ...], kind: str) -> Tuple[int, int]:
    """The shape of the MatrixSymbol an operand of this layout becomes."""
    if kind == VECTOR or len(shape) < 2:
        return (shape[-1] if shape else 1, 1)
    if kind == ACROSS:
        return (shape[-2], _count(shape[:-2]) * shape[-1])
    if kind == DOWN:
        return (_count(shape[:-2]) * shape[-2], shape[-1])
    return tuple(shape[-2:])


def _own_stack(shape: Tuple[int, ...], kind: str) -> Tuple[int, ...]:
    if kind == VECTOR:
        return tuple(shape[:-1])
    return tuple(shape[:-2]) if kind == MATRIX else ()


def matrix_shapes(rule: Matrix, shapes: Tuple[Tuple[int, ...], ...], result_shape) -> Tuple[Tuple[int, int], ...]:
    """The operands' shapes as matrices (Note [operands as matrices]). An
    operand the row names in `broadcast` (the bias of addmm) takes the
    result's shape, and broadcasting sums its gradient back later."""
    out = _as_matrix_shape(tuple(result_shape), MATRIX)
    return tuple(
        out if kind == BROADCAST else _as_matrix_shape(tuple(shape), kind)
        for kind, shape in ((layout(rule, name, shape), shape) for name, shape in zip(rule.inputs, shapes))
    )


def vector_dim(rule: Matrix, saved: Dict[str, object], ndim: int):
    """The dim the vectors lie along, counted from the end, for a row with
    `along` (linalg.cross's dim); None when they lie along the last."""
    if not rule.along:
        return None
    dim = saved.get(rule.along)
    if not isinstance(dim, int):
        raise ValueError(f"no saved {rule.along}")
    return dim - ndim if dim >= 0 else dim


def to_last(value, along):
    """A tensor with the dim its vectors lie along moved last; `from_last` undoes it."""
    return value if along is None or value is None else np.moveaxis(np.asarray(value, dtype=np.float64), along, -1)


def from_last(value, along):
    return value if along is None else np.moveaxis(value, -1, along)


def moved_shape(shape: Tuple[int, ...], along) -> Tuple[int, ...]:
    return tuple(shape) if along is None else tuple(np.moveaxis(np.empty(shape, dtype=bool), along, -1).shape)


def stack_shape(rule: Matrix, shapes: Tuple[Tuple[int, ...], ...]) -> Tuple[int, ...]:
    """The stack the formula is applied over: the operands' leading dims,
    broadcast together; () for one matrix."""
    stacks = [_own_stack(tuple(shape), layout(rule, name, shape)) for name, shape in zip(rule.inputs, shapes)]
    return tuple(np.broadcast_shapes(*stacks)) if stacks else ()


# Note [matrix constants]
# Some matrices a formula needs are not operands but follow from the node's
# shapes and saved arguments: the triangle a triangular solve reads (a 0/1
# mask, so that the matrix is read, and sympy's derivative lands, on that
# triangle only), the identity of a non-square trace, the row permutation P
# of an LU factorisation. A row names them through the helpers below; each
# is a MatrixSymbol, and CONSTANTS computes its numbers from its shape and
# the node's values.

def _triangle(matrix: sp.MatrixExpr, upper, unitriangular=False) -> sp.MatrixExpr:
    """The triangle of `matrix` that a triangular solve reads; with
    `unitriangular`, the strict triangle plus ones on the diagonal."""
    side = "upper" if upper else "lower"
    mask = sp.MatrixSymbol(("strict_" if unitriangular else "") + f"{side}_triangle", *matrix.shape)
    inside = sp.HadamardProduct(matrix, mask)
    return inside + sp.Identity(matrix.shape[0]) if unitriangular else inside


def _lu(factors: sp.MatrixExpr) -> sp.MatrixExpr:
    """P·L·U, the matrix an LU factorisation (torch.linalg.lu_factor's LU
    and pivots) stands for: L its unit lower triangle, U its upper one."""
    size = factors.shape[0]
    return sp.MatrixSymbol("P", size, size) * _triangle(factors, False, True) * _triangle(factors, True)


def _eye(matrix: sp.MatrixExpr) -> sp.MatrixExpr:
    """The identity, cut to the shape of `matrix` (it may not be square)."""
    return sp.MatrixSymbol("eye", *matrix.shape)


def _cross(a: sp.MatrixExpr, b: sp.MatrixExpr) -> sp.ImmutableMatrix:
    """The cross product of two 3-vectors, element by element (sympy's)."""
    return sp.ImmutableMatrix(sp.Matrix(a).cross(sp.Matrix(b)))


HELPERS = {"triangle": _triangle, "lu": _lu, "eye": _eye, "cross": _cross}


def _permutation(pivots, shape: Tuple[int, int]) -> np.ndarray:
    """P of A = P·L·U from LAPACK's pivots (1-based: row i was swapped with
    row pivots[i] - 1, in turn), for each matrix of a stack."""
    pivots = np.asarray(pivots, dtype=np.int64)
    size = shape[0]
    order = np.broadcast_to(np.arange(size), pivots.shape[:-1] + (size,)).copy()
    for index in np.ndindex(*pivots.shape[:-1]):
        for row, swap in enumerate(pivots[index] - 1):
            order[index + (row,)], order[index + (swap,)] = order[index + (swap,)], order[index + (row,)]
    rows_of_p = np.eye(size)[order]  # Pᵀ: row i of Pᵀ·A is row order[i] of A
    return np.swapaxes(rows_of_p, -1, -2)


CONSTANTS: Dict[str, Callable[[Tuple[int, int], Dict[str, object]], np.ndarray]] = {
    "upper_triangle": lambda shape, values: np.triu(np.ones(shape)),
    "lower_triangle": lambda shape, values: np.tril(np.ones(shape)),
    "strict_upper_triangle": lambda shape, values: np.triu(np.ones(shape), 1),
    "strict_lower_triangle": lambda shape, values: np.tril(np.ones(shape), -1),
    "eye": lambda shape, values: np.eye(*shape),
    "P": lambda shape, values: _permutation(values["pivots"], shape),
}


def choices_of(rule: Matrix, saved: Dict[str, object]) -> Tuple[Tuple[str, bool], ...]:
    """The row's saved bool arguments (`left`, `upper`): Python values in
    the formula, which choose its shape rather than enter it as numbers."""
    return tuple((name, saved[name]) for name in rule.params if isinstance(saved.get(name), bool))


@lru_cache(maxsize=None)
def matrix_symbols(rule: Matrix, shapes: Tuple[Tuple[int, int], ...]) -> Dict[str, sp.Basic]:
    table: Dict[str, sp.Basic] = {
        name: sp.MatrixSymbol(name, *shape) for name, shape in zip(rule.inputs, shapes)
    }
    table.update({name: sp.Symbol(name, real=True) for name in rule.params})
    return table


@lru_cache(maxsize=None)
def matrix_outputs(rule: Matrix, shapes: Tuple[Tuple[int, int], ...], choices=()) -> Tuple[sp.Basic, ...]:
    """The row's forward formula, parsed: one expression per output (a
    matrix expression, or a scalar one such as a determinant)."""
    local: Dict[str, object] = {"sign": functions.NAMES["sign"], "det": sp.Determinant}
    local.update(HELPERS)
    local.update(matrix_symbols(rule, shapes))
    local.update(dict(choices))
    parsed = parse_expr(rule.forward, local_dict=local)
    return tuple(parsed) if isinstance(parsed, tuple) else (parsed,)


@lru_cache(maxsize=None)
def matrix_forward(rule: Matrix, shapes: Tuple[Tuple[int, int], ...], choices=()) -> sp.Basic:
    """The forward formula as the walkthrough shows it (a Tuple for several outputs)."""
    outputs = matrix_outputs(rule, shapes, choices)
    return outputs[0] if len(outputs) == 1 else sp.Tuple(*outputs)


@lru_cache(maxsize=None)
def matrix_constants(rule: Matrix, shapes: Tuple[Tuple[int, int], ...], choices=()) -> Tuple[sp.MatrixSymbol, ...]:
    """The constants the forward formula uses (Note [matrix constants])."""
    atoms = set().union(*(output.atoms(sp.MatrixSymbol) for output in matrix_outputs(rule, shapes, choices)))
    return tuple(sorted((atom for atom in atoms if atom.name in CONSTANTS), key=str))


def constant_values(rule: Matrix, shapes: Tuple[Tuple[int, int], ...], choices, values: Dict[str, object]) -> list:
    """The numbers of the constants the formula uses, from the node's values
    (Note [matrix constants]); KeyError names a value the node lacks."""
    return [CONSTANTS[constant.name](tuple(int(d) for d in constant.shape), values)
            for constant in matrix_constants(rule, shapes, choices)]


# How numpy computes the matrix functions its printer does not know.
_MATRIX_FUNCTIONS = {"Trace": np.trace, "Determinant": np.linalg.det}
MATRIX_MODULES = [_MATRIX_FUNCTIONS] + functions.NUMPY_MODULES


def _arguments(rule: Matrix, shapes, choices) -> list:
    table = matrix_symbols(rule, shapes)
    return [table[name] for name in rule.inputs + rule.params] + list(matrix_constants(rule, shapes, choices))


@lru_cache(maxsize=None)
def matrix_forward_function(rule: Matrix, shapes: Tuple[Tuple[int, int], ...], choices=()):
    """The forward formula as a numpy function of (operands..., params...,
    constants...), returning one array per output."""
    outputs = matrix_outputs(rule, shapes, choices)
    return functions.lambdify(_arguments(rule, shapes, choices), list(outputs), [_MATRIX_FUNCTIONS])


def upstream_symbols(rule: Matrix, outputs: Tuple[sp.Basic, ...]) -> Tuple[sp.Basic, ...]:
    """G, the upstream gradient, shaped like the result; G_<output> for
    each output of an op with several."""
    names = (UPSTREAM,) if len(outputs) == 1 else tuple(f"{UPSTREAM}_{name}" for name in rule.outputs)
    return tuple(
        sp.MatrixSymbol(name, *output.shape) if isinstance(output, sp.MatrixExpr) else sp.Symbol(name, real=True)
        for name, output in zip(names, outputs)
    )


@lru_cache(maxsize=None)
def vector_jacobian_product(rule: Matrix, input_name: str, shapes: Tuple[Tuple[int, int], ...], choices=()):
    """∂L/∂input = ∂ tr(Gᵀ·result)/∂input by sympy's matrix calculus, where
    G is the upstream gradient (G·result for a scalar result, summed over
    the outputs of an op with several). Returns the expression and a numpy
    function of (G..., operands..., params..., constants...)."""
    outputs = matrix_outputs(rule, shapes, choices)
    upstreams = upstream_symbols(rule, outputs)
    total = sp.Add(*(sp.Trace(g.T * output) if isinstance(output, sp.MatrixExpr) else g * output
                     for g, output in zip(upstreams, outputs)))
    variable = matrix_symbols(rule, shapes)[input_name]
    args = list(upstreams) + _arguments(rule, shapes, choices)
    if total.has(sp.Determinant):
        return _by_cofactors(total, variable, args, len(upstreams))
    # sympy's matrix calculus is a third of a warm run of a transformer: kept between runs
    # (Note [the derivation cache on disk] in derive/disk_cache.py)
    by_elements = any(isinstance(output, sp.MatrixBase) for output in outputs)
    expr = cache.derived("matrix-vector-jacobian-product", cache.row_key(rule, input_name, shapes, choices),
                         lambda: _by_elements(outputs, upstreams, variable) if by_elements
                         else _matrix_derivative(total, variable))
    return expr, functions.lambdify(args, expr, [_MATRIX_FUNCTIONS])


@lru_cache(maxsize=None)
def vector_jacobian_terms(rule: Matrix, input_name: str, shapes: Tuple[Tuple[int, int], ...], choices=()):
    """The term magnitude of `vector_jacobian_product`'s formula as a numpy
    function of the same arguments (fed their absolute values), or None
    where the formula is no polynomial of them (Note [error budget] in
    derive/budget.py)."""
    expr, _ = vector_jacobian_product(rule, input_name, shapes, choices)
    outputs = matrix_outputs(rule, shapes, choices)
    try:
        magnitude = budget.matrix_terms(expr)
    except (budget.NotPolynomial, TypeError, ValueError, AttributeError):
        return None
    args = list(upstream_symbols(rule, outputs)) + _arguments(rule, shapes, choices)
    return functions.lambdify(args, magnitude, [_MATRIX_FUNCTIONS])


# Note [sympy's matrix derivative of a sum]
# sympy differentiates tr(Gᵀ·A) with respect to A, but a sum of two such
# terms comes back 0 (as does a determinant: Note [the determinant by
# cofactor expansion]). So each term is differentiated on its own, and a 0
# from a term that holds the variable is taken for sympy's failure, never
# for an answer.
def _matrix_derivative(total: sp.Expr, variable: sp.MatrixSymbol) -> sp.Basic:
    derivatives = [_term_derivative(term, variable) for term in sp.Add.make_args(total) if term.has(variable)]
    if not derivatives:
        return sp.ZeroMatrix(*variable.shape)
    summed = derivatives[0]
    for derivative in derivatives[1:]:
        summed = summed + derivative
    return summed


def _term_derivative(term: sp.Expr, variable: sp.MatrixSymbol) -> sp.Basic:
    try:
        derivative = term.diff(variable)
    except NotImplementedError:
        derivative = _through_hadamard_products(term, variable)
    if derivative == 0 or (isinstance(derivative, sp.MatrixExpr) and derivative.is_ZeroMatrix):
        raise NotImplementedError(f"sympy's derivative of {term} with respect to {variable} came back 0")
    return derivative


def _by_elements(outputs, upstreams, variable: sp.MatrixSymbol) -> sp.ImmutableMatrix:
    """A formula written element by element (the cross product) is
    differentiated so: Σ G[i, j]·result[i, j] with respect to each element."""
    total = sp.Add(*(g[i, j] * output[i, j] for g, output in zip(upstreams, outputs)
                     for i in range(output.shape[0]) for j in range(output.shape[1])))
    return sp.ImmutableMatrix(*variable.shape, lambda i, j: sp.diff(total, variable[i, j]))


# Note [a masked matrix inside an inverse]
# sympy's matrix calculus differentiates tr(Gᵀ·(A∘M)) (to G∘M) and
# tr(Gᵀ·T⁻¹·B) (to -T⁻ᵀ·G·Bᵀ·T⁻ᵀ), but not the two together: through a
# triangular solve's (A∘M)⁻¹·B it raises NotImplementedError, with respect to
# A and to B alike. So each Hadamard product A∘M is given a name T of its
# own; sympy differentiates the formula with respect to T, and tr(Hᵀ·(A∘M))
# with respect to A, H being the first derivative. That is the chain rule
# through T, every factor of it sympy's.
def _through_hadamard_products(total: sp.Expr, variable: sp.MatrixSymbol) -> sp.Basic:
    products = sorted(total.atoms(sp.HadamardProduct), key=str)
    if not products:
        raise NotImplementedError(f"sympy cannot differentiate {total} with respect to {variable}")
    names = {product: sp.MatrixSymbol(f"T{index}", *product.shape) for index, product in enumerate(products)}
    outer = total.xreplace(names)
    terms = [_matrix_derivative(outer, variable)] if outer.has(variable) else []
    for product, name in names.items():
        if product.has(variable):
            terms.append(_matrix_derivative(sp.Trace(_matrix_derivative(outer, name).T * product), variable))
    if not terms:
        return sp.ZeroMatrix(*variable.shape)
    summed = terms[0]
    for term in terms[1:]:
        summed = summed + term
    return summed.xreplace({name: product for product, name in names.items()})


# Note [the determinant by cofactor expansion]
# sympy's matrix calculus takes Determinant(A) for a constant (its
# derivative comes back 0), so a formula with a determinant is differentiated
# element by element instead. Along row i the determinant is Laplace's
# expansion Σ_k A[i, k]·cofactor(A, i, k), where no cofactor of row i holds
# an element of row i; sympy differentiates that sum with respect to A[i, j]
# (Note [Piecewise from a Sum's derivative]). The cofactors are computed from
# minors, so a singular matrix is no exception. The walkthrough shows
# cofactor(A), the matrix of them.
COFACTOR = sp.Function("cofactor", real=True)
DET = sp.Function("det", real=True)


def _cofactors_at(matrix, rows, cols) -> np.ndarray:
    """cofactor(A, i, j) = (-1)^(i+j)·det(A without row i and column j), at
    each (i, j) asked."""
    matrix = np.asarray(matrix, dtype=np.float64)
    size = matrix.shape[-1]
    cofactors = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            minor = np.delete(np.delete(matrix, i, axis=0), j, axis=1)
            cofactors[i, j] = (-1) ** (i + j) * np.linalg.det(minor)
    return cofactors[rows, cols]


def _by_cofactors(total: sp.Expr, variable: sp.MatrixSymbol, args: list, count: int):
    i, j, k = sp.symbols("i j k", integer=True)
    size = sp.Symbol("n", integer=True, nonnegative=True)
    matrix = sp.Symbol(variable.name, real=True)
    element = sp.IndexedBase(variable.name, real=True)
    expansion = sp.Sum(element[i, k] * COFACTOR(matrix, i, k), (k, 0, size - 1))
    expanded = total.xreplace({sp.Determinant(variable): expansion})
    if expanded.has(variable):
        raise NotImplementedError(f"{variable} appears outside its determinant in {total}")
    derivative = _inside_the_sum(expanded.diff(element[i, j]).doit(), j).subs(expansion, DET(matrix))
    shown = derivative.subs(COFACTOR(matrix, i, j), COFACTOR(matrix))
    elementwise = functions.lambdify(args[:count] + [matrix, i, j], derivative,
                                     [{"cofactor": _cofactors_at, "det": np.linalg.det}, _MATRIX_FUNCTIONS])
    where = args.index(variable)

    def function(*values):
        rows, cols = np.indices(variable.shape)
        result = elementwise(*values[:count], values[where], rows, cols)
        return np.broadcast_to(np.asarray(result, dtype=np.float64), variable.shape)

    return shown, function


# Note [an operand recovered from the result]
# torch keeps what its own backward formula needs: after a solve X = A⁻¹·B it
# keeps A and X, not B, and a B that needs no gradient is then unknown. When
# the first output is a product with that operand as one factor, P·B·Q (every
# solve), the operand is P⁻¹·result·Q⁻¹: that formula, solved for it, by
# sympy. Its shape is then the result's, as it is for every such solve.
@lru_cache(maxsize=None)
def recovered_operand(rule: Matrix, name: str, shapes: Tuple[Tuple[int, int], ...], choices=()):
    """`name` as a formula of the result and the other operands, and a
    numpy function of (result, operands..., params..., constants...); None
    where the first output is not a product with `name` as one factor."""
    first = matrix_outputs(rule, shapes, choices)[0]
    operand = matrix_symbols(rule, shapes)[name]
    if not isinstance(first, sp.MatMul) or first.args.count(operand) != 1:
        return None
    at = first.args.index(operand)
    before, after = first.args[:at], first.args[at + 1:]
    if any(not isinstance(f, sp.MatrixExpr) or f.has(operand) for f in before + after):
        return None
    found = sp.MatrixSymbol(RESULT, *first.shape)
    if before:
        found = sp.MatMul(*before).I * found
    if after:
        found = found * sp.MatMul(*after).I
    if found.shape != operand.shape:
        return None
    return found, functions.lambdify([sp.MatrixSymbol(RESULT, *first.shape)] + _arguments(rule, shapes, choices),
                                     found, [_MATRIX_FUNCTIONS])


def as_matrix(value, shape: Tuple[int, int], stack: Tuple[int, ...] = ()) -> np.ndarray:
    """An operand's numbers in its MatrixSymbol's shape: a vector as a
    column, a broadcast operand spread out, a stacked operand as its stack.

    >>> as_matrix([1.0, 2.0], (2, 1)).tolist()
    [[1.0], [2.0]]
    >>> as_matrix(5.0, (1, 2)).tolist()
    [[5.0, 5.0]]
    """
    value = np.asarray(value, dtype=np.float64)
    target = tuple(stack) + tuple(shape) if value.ndim > 2 else tuple(shape)
    if value.size == int(np.prod(target, dtype=np.int64)):
        return value.reshape(target)
    return np.broadcast_to(value, target)


def laid_out(value, kind: str, shape: Tuple[int, int], stack: Tuple[int, ...]) -> np.ndarray:
    """An operand's numbers as the formula sees them (Note [operands as
    matrices]): stack + its matrix shape, or its matrix shape alone when it
    has no stack of its own and is shared by every matrix of the stack."""
    value = np.asarray(value, dtype=np.float64)
    if kind == BROADCAST:
        return as_matrix(value, shape, stack)
    if kind == ACROSS:
        return np.moveaxis(value, -2, 0).reshape(shape)
    if kind == DOWN:
        return value.reshape(shape)
    if kind == VECTOR:
        value = value.reshape(value.shape[:-1] + tuple(shape)) if value.ndim else value.reshape(shape)
    return np.broadcast_to(value, tuple(stack) + tuple(shape)) if value.ndim > 2 else value


def laid_back(gradient: np.ndarray, kind: str, operand_shape: Tuple[int, ...]) -> np.ndarray:
    """`laid_out` undone for a gradient: the operand's own layout, before
    any sum over broadcast dims."""
    if kind == ACROSS:
        rows, _ = gradient.shape
        spread = gradient.reshape((rows,) + tuple(operand_shape[:-2]) + (operand_shape[-1],))
        return np.moveaxis(spread, 0, -2)
    if kind == DOWN:
        return gradient.reshape(operand_shape)
    if kind == VECTOR and gradient.ndim:
        return gradient.reshape(gradient.shape[:-1])
    return gradient


def over_stack(function: Callable[..., np.ndarray], stack: Tuple[int, ...], arguments,
               shape: Tuple[int, ...] = None, ranks=None, dtype=np.float64) -> np.ndarray:
    """`function` of matrices applied to each matrix of a stack, the results
    stacked again, as `dtype`; one call for (). An argument is stacked when
    it has more dims than its rank (2 unless `ranks` says otherwise: 0 for
    the G of a scalar result). Each result is `shape`, when given; an empty
    stack gives an empty result of that shape."""
    ranks = ranks if ranks is not None else [2] * len(arguments)

    def one(values):
        result = np.asarray(function(*values), dtype=dtype)
        return np.broadcast_to(result, shape) if shape is not None else result

    if not stack:
        return one(arguments)
    if shape is not None and 0 in stack:
        return np.zeros(tuple(stack) + tuple(shape), dtype=dtype)

    def matrix_at(argument, rank, index):
        stacked = isinstance(argument, np.ndarray) and argument.ndim > rank
        return argument[index] if stacked else argument

    results = [one([matrix_at(a, r, index) for a, r in zip(arguments, ranks)]) for index in np.ndindex(*stack)]
    return np.stack(results).reshape(tuple(stack) + results[0].shape)
