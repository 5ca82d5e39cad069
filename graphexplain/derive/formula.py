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
from typing import Callable, Dict, Tuple

import numpy as np
import sympy as sp
from sympy.parsing.sympy_parser import parse_expr

from ..rules.kinds import Matrix, Reduction, Routing, Rule

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
    local = dict(symbols(rule))
    if isinstance(rule, Routing):
        local["result_shape"] = sp.Symbol("result_shape")
        local.update({name: sp.Function(name) for name in ("reshape", "transpose", "slice", "select", "permute")})
    return parse_expr(rule.forward, local_dict=local)


# Note [Piecewise from a Sum's derivative]
# d/dx[j] of Sum(f(x[i]), (i, 0, N-1)) comes back from sympy as
# Piecewise((f'(x[j]), (0 <= j) & (j <= N-1)), (0, True)): sympy cannot know
# that j is one of the summed positions. Here it always is (j runs over the
# elements of the reduced operand), so the first branch is the derivative.
def _inside_the_sum(expr: sp.Expr, j: sp.Symbol) -> sp.Expr:
    def first_branch(piecewise):
        value, condition = piecewise.args[0]
        return value if j in condition.free_symbols else piecewise

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), first_branch)


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
    """∂result/∂input, derived by sympy from the row's forward formula.

    Pointwise rows differentiate the elementwise formula. Reductions
    differentiate the index-notation sum with respect to one element
    ``input[j]``; routing rows differentiate ``self[pi(k)]`` (a Kronecker
    delta). Matrix rows are derived by `vector_jacobian_product` instead.
    """
    names = symbols(rule)
    if isinstance(rule, Reduction) and mode != "none":
        total, indexed = reduced_forward(rule, mode)
        j = sp.Symbol("j", integer=True)
        element = {name: sp.IndexedBase(name, real=True)[j] for name in rule.inputs}
        derivative = total.diff(element[input_name]).doit()
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
    function = sp.lambdify([sp.Symbol(n, real=True) for n in names], expr, modules="numpy")
    return function, names


def evaluate(expr: sp.Expr, values: Dict[str, object]) -> np.ndarray:
    """Substitute the node's numbers into `expr` (numpy broadcasting).

    >>> x = sp.Symbol("self", real=True)
    >>> evaluate(sp.exp(x) / (sp.exp(x) + 1) ** 2, {"self": np.array([0.0, 800.0])}).tolist()
    [0.25, 0.0]
    """
    function, names = numeric(expr)
    missing = [name for name in names if values.get(name) is None]
    if missing:
        raise KeyError(", ".join(missing))
    arguments = [values[name] for name in names]
    with np.errstate(all="ignore"):  # nan/inf are shown and compared, not raised
        result = np.asarray(function(*arguments), dtype=np.float64)
    return _without_overflow(expr, names, arguments, result)


# Note [overflow inside a derived formula]
# sympy's derivative of the sigmoid, exp(self)/(exp(self) + 1)**2, is inf/inf
# in float64 once self > 709, although its value is tiny. Where a formula
# comes out inf or nan from finite numbers, those elements are evaluated
# again with mpmath, whose exponents do not overflow. A value that is truly
# infinite (1/(2*sqrt(self)) at 0) raises or stays infinite there too.
def _without_overflow(expr: sp.Expr, names, arguments, result: np.ndarray) -> np.ndarray:
    if np.all(np.isfinite(result)) or not arguments:
        return result
    arrays = np.broadcast_arrays(result, *(np.asarray(a, dtype=np.float64) for a in arguments))
    result, inputs = arrays[0].copy(), arrays[1:]
    suspect = ~np.isfinite(result) & np.all([np.isfinite(a) for a in inputs], axis=0)
    if not np.any(suspect):
        return result
    precise = sp.lambdify([sp.Symbol(n, real=True) for n in names], expr, modules="mpmath")
    for index in zip(*np.nonzero(suspect)):
        try:
            result[index] = float(precise(*(float(a[index]) for a in inputs)))
        except (ArithmeticError, ValueError, TypeError):
            pass  # keep numpy's inf or nan
    return result


# --- matrix rows -----------------------------------------------------------


def _as_matrix_shape(shape: Tuple[int, ...], vector: bool) -> Tuple[int, int]:
    """The shape of the MatrixSymbol an operand becomes: a vector is a
    column, a stack of matrices (bmm) is one matrix of the stack."""
    if vector or len(shape) == 1:
        return (shape[0] if shape else 1, 1)
    return tuple(shape[-2:]) if len(shape) >= 2 else (1, 1)


def stack_shape(result_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The leading dims of a stack of matrices (bmm's batch); () for one matrix."""
    return tuple(result_shape[:-2])


@lru_cache(maxsize=None)
def matrix_symbols(rule: Matrix, shapes: Tuple[Tuple[int, int], ...]) -> Dict[str, sp.Basic]:
    table: Dict[str, sp.Basic] = {
        name: sp.MatrixSymbol(name, *shape) for name, shape in zip(rule.inputs, shapes)
    }
    table.update({name: sp.Symbol(name, real=True) for name in rule.params})
    return table


@lru_cache(maxsize=None)
def matrix_forward(rule: Matrix, shapes: Tuple[Tuple[int, int], ...]) -> sp.MatrixExpr:
    return parse_expr(rule.forward, local_dict=dict(matrix_symbols(rule, shapes)))


@lru_cache(maxsize=None)
def matrix_forward_function(rule: Matrix, shapes: Tuple[Tuple[int, int], ...]):
    """The forward matrix expression as a numpy function of (operands..., params...)."""
    table = matrix_symbols(rule, shapes)
    args = [table[name] for name in rule.inputs + rule.params]
    return sp.lambdify(args, matrix_forward(rule, shapes), modules="numpy")


@lru_cache(maxsize=None)
def vector_jacobian_product(rule: Matrix, input_name: str, shapes: Tuple[Tuple[int, int], ...]):
    """∂L/∂input = ∂ tr(Gᵀ·result)/∂input by sympy's matrix calculus, where
    G is the upstream gradient. Returns the expression and a numpy function
    of (G, operands..., params...)."""
    table = matrix_symbols(rule, shapes)
    result = matrix_forward(rule, shapes)
    upstream = sp.MatrixSymbol(UPSTREAM, *result.shape)
    product = sp.Trace(upstream.T * result)
    expr = product.diff(table[input_name])
    args = [upstream] + [table[name] for name in rule.inputs + rule.params]
    function = sp.lambdify(args, expr, modules="numpy")
    return expr, function


def matrix_shapes(rule: Matrix, shapes: Tuple[Tuple[int, ...], ...], result_shape) -> Tuple[Tuple[int, int], ...]:
    """The operands' shapes as matrices. An operand the row names in
    `broadcast` (the bias of addmm) takes the result's shape, and
    broadcasting sums its gradient back later."""
    out = _as_matrix_shape(tuple(result_shape), False)
    return tuple(
        out if name in rule.broadcast else _as_matrix_shape(tuple(shape), name in rule.vectors)
        for name, shape in zip(rule.inputs, shapes)
    )


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


def over_stack(function: Callable[..., np.ndarray], stack: Tuple[int, ...], arguments) -> np.ndarray:
    """`function` of matrices applied to each matrix of a stack (arguments
    with more than two dims), the results stacked again; one call for ()."""
    if not stack:
        return np.asarray(function(*arguments), dtype=np.float64)

    def matrix_at(argument, index):
        stacked = isinstance(argument, np.ndarray) and argument.ndim > 2
        return argument[index] if stacked else argument

    results = [np.asarray(function(*(matrix_at(a, index) for a in arguments)), dtype=np.float64)
               for index in np.ndindex(*stack)]
    return np.stack(results).reshape(tuple(stack) + results[0].shape)
