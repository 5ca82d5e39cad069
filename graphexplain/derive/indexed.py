"""Rows in index notation (`IndexFormula`): sympy derives the vector-Jacobian
product, numpy evaluates it along the op's axis.

Note [index notation]
A row says what one element of the result is: softmax's result[k] is
``exp(self[k])/Sum(exp(self[i]), i)``. The op's dims split in two: the axis it
works along (the saved `dim`, layer_norm's normalized_shape, ...; several dims
count as one axis of N = their product elements) and rows, the other dims,
each an independent copy of the formula (`Layout`). With G the upstream
gradient, the gradient of the loss L with respect to one element self[j] is

    ∂L/∂self[j] = ∂/∂self[j] Σ_k G[k]·result[k]

or ∂(G·result)/∂self[j] for a formula without k (one number per row, like
logsumexp). An op with several outputs (var_mean) adds one such term per
output, with upstreams G, G1, G2. sympy takes the derivative; the
KroneckerDelta(i, j) it produces is summed out here (Note [summing out a
delta]); numpy evaluates what is left for every j of every row at once
(Note [evaluating Sums] in derive/sums.py).

    >>> from graphexplain.rules import TABLE
    >>> str(vector_jacobian_product(TABLE["LogsumexpBackward0"], "self"))
    'G*exp(self[j])/Sum(exp(self[i]), (i, 0, N - 1))'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import numpy as np
import sympy as sp
from sympy.core.relational import Relational
from sympy.parsing.sympy_parser import parse_expr

from ..model import Node
from ..rules.kinds import IndexFormula
from . import arguments, cache
from .formula import tidy
from .layouts import LAYOUT_WORDS, Layout, layout, tensor_names, texts
from .naming import _number, display_names
from .sums import REDUCTIONS, CannotEvaluate, Evaluation, Maximum, Minimum, depth, finite, isnan

COUNT = "N"  # the length of the op's axis
RESULT = "result"  # the op's (first) output
UPSTREAM = "G"  # the upstream gradient of the first output; G1, G2, ... of the later ones

_INDEX = {name: sp.Symbol(name, integer=True) for name in ("i", "j", "k", "l", "m")}
J, K = _INDEX["j"], _INDEX["k"]
N = sp.Symbol(COUNT, integer=True, positive=True)
_FUNCTIONS = {"Maximum": Maximum, "Minimum": Minimum, "isnan": isnan}
_IDENTIFIER = re.compile(r"\b([A-Za-z_]\w*)\b")


def _whole_axis(kind):
    """`Sum(term, i)` is the sum over the whole axis, (i, 0, N - 1)."""
    def reduce(term, *limits):
        bounded = [limit if isinstance(limit, (tuple, sp.Tuple)) else (limit, 0, N - 1) for limit in limits]
        return kind(term, *bounded)
    return reduce


@dataclass(frozen=True)
class Parsed:
    outputs: Tuple[sp.Expr, ...]  # each output's formula, `where` names still in it
    where: Tuple[Tuple[sp.Symbol, sp.Expr], ...]  # each in terms of the earlier ones
    tensors: Tuple[str, ...]

    def expanded(self, expr: sp.Expr) -> sp.Expr:
        """`expr` with each `where` name replaced by its formula, except
        inside a Piecewise's conditions (Note [where-names in conditions])."""
        definitions = dict(self.where)

        def expand(e):
            if e in definitions:
                return expand(definitions[e])
            if isinstance(e, sp.Piecewise):
                return sp.Piecewise(*((expand(value), condition) for value, condition in e.args))
            if not e.args or isinstance(e, (sp.Indexed, sp.IndexedBase)):
                return e
            return e.func(*(expand(argument) for argument in e.args))

        return expand(expr) if definitions else expr


# Note [where-names in conditions]
# sympy differentiates a Piecewise branch by branch and never differentiates
# its conditions, so a condition such as `var > 0` can keep the name `var`:
# numpy evaluates it per row. Writing the formula out there would not only be
# longer: sympy rewrites a condition holding a Piecewise (piecewise_fold),
# and moves a Piecewise out of a Sum's body while doing so, which changes
# its meaning.


def _symbols(rule: IndexFormula) -> Dict[str, sp.Basic]:
    tensors = tensor_names(rule)
    table: Dict[str, sp.Basic] = {name: sp.IndexedBase(name, real=True) for name in tensors}
    for text in texts(rule):
        for name in _IDENTIFIER.findall(text):
            if name not in table and name not in _INDEX and name not in _FUNCTIONS and not hasattr(sp, name):
                table[name] = sp.Symbol(name, real=True)
    for name in rule.inputs + rule.params:  # names that shadow sympy's or Python's (ord, N)
        table.setdefault(name, sp.Symbol(name, real=True))
    for name in rule.branches_on:  # not real: a real symbol is finite, and Eq(ord, oo) would be False
        table[name] = sp.Symbol(name)
    table.update(_INDEX)
    table.update(_FUNCTIONS)
    table.update(Sum=_whole_axis(sp.Sum), Product=_whole_axis(sp.Product),
                 Maximum=_whole_axis(Maximum), Minimum=_whole_axis(Minimum))
    table[COUNT] = N
    return table


@lru_cache(maxsize=None)
def parsed(rule: IndexFormula) -> Parsed:
    """The row's formulas as sympy expressions."""
    table = _symbols(rule)
    where = []
    for name, text in rule.where:
        where.append((sp.Symbol(name, real=True), parse_expr(text, local_dict=dict(table))))
        table[name] = where[-1][0]
    outputs = tuple(parse_expr(text, local_dict=dict(table)) for text in (rule.forward,) + rule.outputs)
    return Parsed(outputs, tuple(where), tensor_names(rule))


Branches = Tuple[Tuple[str, object], ...]


def _put_in(expr: sp.Expr, branches: Branches) -> sp.Expr:
    if not branches:
        return expr
    values = dict(branches)
    return expr.xreplace({s: values[s.name] for s in expr.free_symbols if s.name in values})


def branches(rule: IndexFormula, node: Node) -> Branches:
    """The values of the params that pick the row's branch (ord, reduction),
    as sympy numbers: True is 1, inf is oo."""
    saved = arguments.saved(node)
    chosen = []
    for name in rule.branches_on:
        value = saved.get(name)
        if value is None:
            value = dict(rule.defaults).get(name)
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        if isinstance(value, (np.ndarray, np.generic)):
            value = value.item()
        if isinstance(value, float) and np.isinf(value):
            chosen.append((name, sp.oo if value > 0 else -sp.oo))
        elif isinstance(value, (int, float)):
            chosen.append((name, sp.Integer(value) if float(value).is_integer() else sp.Float(value)))
    return tuple(chosen)


# --- deriving ---------------------------------------------------------------------


def _upstream(output: int, elementwise: bool) -> sp.Basic:
    name = UPSTREAM if output == 0 else f"{UPSTREAM}{output}"
    return sp.IndexedBase(name, real=True)[K] if elementwise else sp.Symbol(name, real=True)


def is_elementwise(expr: sp.Expr) -> bool:
    """Whether a formula names result[k] (softmax) rather than one number per row."""
    return K in expr.free_symbols


@lru_cache(maxsize=None)
def vector_jacobian_product(rule: IndexFormula, input_name: str, branches: Branches = (),
                            reached: Optional[Tuple[int, ...]] = None) -> sp.Expr:
    """∂L/∂input[j] = ∂/∂input[j] Σ_outputs Σ_k G[k]·result[k], derived by
    sympy (Note [index notation]), in the row's words: `where` names stand
    for their formulas. `reached` lists the outputs a gradient reached
    (all of them when None). Kept between runs (Note [the derivation cache
    on disk] in derive/disk_cache.py)."""
    return cache.derived("index-vector-jacobian-product", cache.row_key(rule, input_name, branches, reached),
                         lambda: _vector_jacobian_product(rule, input_name, branches, reached))


def _vector_jacobian_product(rule: IndexFormula, input_name: str, branches: Branches,
                             reached: Optional[Tuple[int, ...]]) -> sp.Expr:
    forms = parsed(rule)
    total = sp.Integer(0)
    for number, output in enumerate(forms.outputs):
        if reached is not None and number not in reached:
            continue
        output = _put_in(forms.expanded(output), branches)
        if is_elementwise(output):
            total += sp.Sum(_upstream(number, True) * output, (K, 0, N - 1))
        else:
            total += _upstream(number, False) * output
    derivative = total.diff(sp.IndexedBase(input_name, real=True)[J])
    derivative = _inside_the_axis(_sum_out_deltas(derivative))
    derivative = _without_removable_branches(_linear_sums(derivative))
    return tidy(_from_j_on(_abbreviated(derivative, forms, branches)))


@lru_cache(maxsize=None)
def forward(rule: IndexFormula, output: int = 0, branches: Branches = ()) -> sp.Expr:
    """One output's formula, the branch params put in."""
    return _put_in(parsed(rule).outputs[output], branches)


# Note [summing out a delta]
# Differentiating Σ_i f(self[i]) with respect to self[j] gives
# Σ_i f'(self[i])·KroneckerDelta(i, j). sympy's own Sum.doit() sums such a
# delta out, but also tries to evaluate every other sum in closed form,
# which is slow and fails on indexed terms. Here only the delta is summed
# out: a term that vanishes unless i == t is f(t) when t lies in the sum's
# range, and 0 otherwise.
def _sum_out_deltas(expr: sp.Expr) -> sp.Expr:
    return expr.replace(lambda e: isinstance(e, sp.Sum) and e.has(sp.KroneckerDelta), _sum_out)


def _sum_out(total: sp.Sum) -> sp.Expr:
    (index, low, high), *outer = total.limits
    kept, resolved = [], []
    for part in _terms(total.function):
        branches = _branches_of(part, index)
        if branches is not None:  # a condition per row: sum each branch (renorm)
            resolved.append(sp.Piecewise(*((_sum_out(sp.Sum(value, (index, low, high))), condition)
                                           for value, condition in branches)))
            continue
        at = _only_at(part, index)
        if at is None:
            kept.append(part)
        else:
            inside = sp.And(sp.Le(low, at), sp.Le(at, high))
            resolved.append(sp.Piecewise((part.subs(index, at), inside), (0, True)))
    result = sp.Add(*resolved) + (sp.Sum(sp.Add(*kept), (index, low, high)) if kept else 0)
    return sp.Sum(result, *outer) if outer else result


def _branches_of(term: sp.Expr, index: sp.Symbol):
    """The branches of a Piecewise factor of `term` whose conditions do not
    depend on `index`, each multiplied by the rest of `term`; else None."""
    factors = sp.Mul.make_args(term)
    for at, factor in enumerate(factors):
        if isinstance(factor, sp.Piecewise) and factor.has(sp.KroneckerDelta) and \
                not any(index in condition.free_symbols for _, condition in factor.args):
            rest = sp.Mul(*factors[:at], *factors[at + 1:])
            return [(rest * value, condition) for value, condition in factor.args]
    return None


def _terms(expr: sp.Expr) -> List[sp.Expr]:
    """`expr` as a sum of terms, products multiplied out where a factor is a
    sum that holds a KroneckerDelta (and only there, to keep terms short)."""
    if isinstance(expr, sp.Add):
        return [term for argument in expr.args for term in _terms(argument)]
    if isinstance(expr, sp.Mul):
        for at, factor in enumerate(expr.args):
            if isinstance(factor, sp.Add) and factor.has(sp.KroneckerDelta):
                rest = sp.Mul(*expr.args[:at], *expr.args[at + 1:])
                return [term for part in _terms(factor) for term in _terms(rest * part)]
    return [expr]


def _only_at(term: sp.Expr, index: sp.Symbol) -> Optional[sp.Expr]:
    """t when `term`, as a function of `index`, is 0 unless index == t."""
    if term == 0:
        return sp.S.Zero  # zero everywhere: any t will do
    if isinstance(term, sp.KroneckerDelta) and index in term.args:
        other = term.args[1] if term.args[0] == index else term.args[0]
        return other if index not in other.free_symbols else None
    if isinstance(term, sp.Mul):
        for factor in term.args:
            at = _only_at(factor, index)
            if at is not None and factor != 0:
                return at
        return None
    if isinstance(term, (sp.Add, sp.Piecewise)):
        values = term.args if isinstance(term, sp.Add) else [value for value, _ in term.args]
        places = {_only_at(value, index) for value in values if value != 0}
        return places.pop() if len(places) == 1 and None not in places else None
    return None


# Note [Piecewise from a Sum's derivative] (derive/formula.py) for rows in
# index notation: the condition that j lies on the axis, 0 <= j <= N - 1,
# always holds, so sympy's Piecewise over it keeps its first branch.
def _inside_the_axis(expr: sp.Expr) -> sp.Expr:
    t = sp.Symbol("t", integer=True, nonnegative=True)

    def implied(relation):
        if relation.free_symbols - {J, N}:
            return relation
        for place in (t, N - 1 - t):
            if relation.subs(J, place) == sp.true:
                return sp.true
        return relation

    return expr.replace(lambda e: isinstance(e, Relational), implied)


def _linear_sums(expr: sp.Expr) -> sp.Expr:
    """Σ(a + b) = Σa + Σb, Σ c·a = c·Σa and Σ c = c·(high - low + 1) for
    c free of the summed index: the forms a reader simplifies by hand."""
    def linear(total: sp.Sum) -> sp.Expr:
        if len(total.limits) != 1:
            return total
        index, low, high = total.limits[0]
        result = sp.Integer(0)
        for part in sp.Add.make_args(sp.expand_mul(total.function, deep=False)):
            constant, varying = part.as_independent(index, as_Add=False)
            result += constant * (sp.Sum(varying, (index, low, high)) if varying != 1 else high - low + 1)
        return result

    return expr.replace(lambda e: isinstance(e, sp.Sum), linear)


def _from_j_on(expr: sp.Expr) -> sp.Expr:
    """Σ_k Piecewise((f, j <= k), (0, True)) over k from 0 is Σ_k f over k
    from j (j is on the axis, so j >= 0): cumsum's gradient reads
    Sum(G[k], (k, j, N - 1))."""
    def tighten(total: sp.Sum) -> sp.Expr:
        if len(total.limits) != 1 or not isinstance(total.function, sp.Piecewise):
            return total
        index, low, high = total.limits[0]
        (value, condition), *rest = total.function.args
        if low != 0 or rest != [(0, sp.true)] or condition not in (sp.Le(J, index), sp.Ge(index, J)):
            return total
        return sp.Sum(value, (index, J, high))

    return expr.replace(lambda e: isinstance(e, sp.Sum), tighten)


def _without_removable_branches(expr: sp.Expr) -> sp.Expr:
    """Piecewise((e, Ne(x, c)), (d, True)) is e when e is d at x == c (the
    derivative of self**2 is 2*self at 0 too): a branch that changes nothing."""
    def collapse(piecewise: sp.Piecewise):
        if len(piecewise.args) != 2 or piecewise.args[1][1] != sp.true:
            return piecewise
        (value, condition), (other, _) = piecewise.args
        if not isinstance(condition, sp.Ne):
            return piecewise
        at = _where_equal(value, condition.lhs, condition.rhs)
        return value if at is not None and sp.simplify(at - other) == 0 else piecewise

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), collapse)


def _where_equal(expr: sp.Expr, lhs: sp.Expr, rhs: sp.Expr) -> Optional[sp.Expr]:
    """`expr` where lhs == rhs (self[j] - other[j] == 0: self[j] put in for other[j])."""
    if isinstance(lhs, (sp.Symbol, sp.Indexed)):
        return expr.subs(lhs, rhs)
    for element in sorted(lhs.atoms(sp.Indexed), key=str):
        solutions = sp.solve(sp.Eq(lhs, rhs), element)
        if len(solutions) == 1:
            return expr.subs(element, solutions[0])
    return None


def _abbreviated(expr: sp.Expr, forms: Parsed, branches: Branches) -> sp.Expr:
    """`where` names put back for their formulas: mean for Sum(input[i], i)/N."""
    for name, definition in forms.where:
        definition = _without_removable_branches(_put_in(definition, branches))
        coefficient, core = definition.as_independent(*REDUCTIONS, as_Add=False)
        if isinstance(core, REDUCTIONS) and coefficient != 0:
            expr = expr.replace(lambda e: _same_reduction(e, core), lambda e: name / coefficient)
        else:
            expr = expr.xreplace({definition: name})
    return expr


def _same_reduction(candidate: sp.Basic, core: sp.Basic) -> bool:
    """Whether two reductions are the same but for the name of their index."""
    if type(candidate) is not type(core) or len(candidate.limits) != 1 or len(core.limits) != 1:
        return False
    (mine, *bounds), (theirs, *their_bounds) = candidate.limits[0], core.limits[0]
    return bounds == their_bounds and candidate.function.xreplace({mine: theirs}) == core.function


# --- a node's numbers ----------------------------------------------------------------


# Note [a tensor word holds a tensor]
# A word the row writes with a subscript (weight in weight[k]) is a tensor.
# When torch left it out (layer_norm without a bias) capture may still fill
# the word with a number of the call (its eps) taken for that argument. A
# tensor word takes only a tensor's numbers, then: a saved tensor (an array)
# or an operand that was a tensor, else the row's default.
_PYTHON_NUMBERS = ("int", "float", "bool")


def _node_values(rule: IndexFormula, node: Node) -> Dict[str, object]:
    """Every name of the row with this node's value: params, then operands;
    a tensor torch left out (a missing weight) takes the row's default
    (Note [a tensor word holds a tensor])."""
    tensors = set(parsed(rule).tensors)
    values: Dict[str, object] = dict(rule.defaults)
    for name, value in arguments.saved(node).items():
        if value is None or isinstance(value, (str, tuple, list)):
            continue
        if name in tensors and not isinstance(value, np.ndarray):
            continue
        values[name] = np.asarray(value, dtype=np.float64) if not isinstance(value, bool) else float(value)
    for operand in node.operands:
        if operand.value is None or not operand.value.known:
            continue
        if operand.name in tensors and operand.producer is None and operand.value.dtype in _PYTHON_NUMBERS:
            continue
        values[operand.name] = operand.value.data
    return values


def _defaulted(rule: IndexFormula, node: Node) -> Tuple[Tuple[str, sp.Expr], ...]:
    """The tensor words that take the row's default on this node (weight 1
    when layer_norm had none), for the walkthrough to show as numbers: word
    and value pairs, sorted, a key for `_without_defaulted`."""
    values = _node_values(rule, node)
    defaults = dict(rule.defaults)
    return tuple(sorted((name, sp.sympify(defaults[name])) for name in parsed(rule).tensors
                        if name in defaults and not isinstance(values.get(name), np.ndarray)))


@lru_cache(maxsize=4096)
def _without_defaulted(expr: sp.Basic, defaulted: Tuple[Tuple[str, sp.Expr], ...]) -> sp.Basic:
    """weight[k] → 1 for each tensor word that took its default; once per
    formula and defaults, not once per layer."""
    if not defaulted:
        return expr
    values = dict(defaulted)
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and str(e.base.label) in values,
                        lambda e: values[str(e.base.label)])


def named(rule: IndexFormula, node: Node, expr: sp.Expr, count: int) -> str:
    """A derived formula in the user's words: the node's names and numbers,
    N and the values its layout recovered (layer_norm's eps) put in."""
    names = display_names(rule, node, count)
    for name in parsed(rule).tensors:  # a number there is not the tensor's (Note [a tensor word holds a tensor])
        if not isinstance(names.get(name), str):
            names.pop(name, None)
    try:
        known = layout(rule, node).known
    except CannotEvaluate:
        known = {}
    names.update({name: _number(value) for name, value in known.items() if np.size(value) == 1})
    return cache.named_formula(_without_defaulted(expr, _defaulted(rule, node)), names)


def vocabulary(rule: IndexFormula) -> set:
    """The words a row's formulas use: operands, saved arguments and the
    words its layout gives, without indices, N or `where` names.

    >>> from graphexplain.rules import TABLE
    >>> sorted(vocabulary(TABLE["VarBackward0"]))
    ['correction', 'self']
    """
    forms = parsed(rule)
    words = set()
    for expr in forms.outputs + tuple(definition for _, definition in forms.where):
        words |= {symbol.name for symbol in expr.free_symbols if isinstance(symbol, sp.Symbol)}
        words |= {str(element.base.label) for element in expr.atoms(sp.Indexed)}
    return words - set(_INDEX) - {COUNT} - {name for name, _ in rule.where} - set(LAYOUT_WORDS.get(rule.layout, ()))


@dataclass(frozen=True)
class _Setting:
    layout: Layout
    tensors: Dict[str, np.ndarray]
    numbers: Dict[str, object]
    branches: Branches


def _setting(rule: IndexFormula, node: Node) -> _Setting:
    where = layout(rule, node)
    values = {**_node_values(rule, node), **where.known}
    tensors, numbers = {}, {}
    for name in parsed(rule).tensors:
        source, aligned = where.views.get(name, (name, None))
        if values.get(source) is None:
            continue
        value = np.asarray(values[source], dtype=np.float64)
        tensors[name] = where.arrange(value, aligned or where.align(name, value.shape))
    for name, value in values.items():
        if name not in tensors and np.size(value) == 1:
            numbers[name] = float(np.asarray(value, dtype=np.float64).reshape(()))
    numbers[COUNT] = float(where.count)
    output = node.output
    if output is not None and output.known and output.data.size == int(np.prod(where.shape, dtype=np.int64)):
        tensors[RESULT] = where.arrange(output.data, where.shape)  # Note [an operand told by the result]
    return _Setting(where, tensors, numbers, branches(rule, node))


def _with_where(rule: IndexFormula, setting: _Setting, evaluation: Evaluation, expr: sp.Expr) -> None:
    """The value per row of each `where` name the formula uses."""
    for name, definition in _needed_where(rule, setting.branches, expr):
        evaluation.numbers[name] = evaluation.result(definition, J)


@lru_cache(maxsize=4096)
def _needed_where(rule: IndexFormula, branches: Branches, expr: sp.Expr) -> Tuple[Tuple[str, sp.Expr], ...]:
    """The `where` definitions `expr` needs, in the row's order, the branch
    put in: the same for every node of a row (Note [a formula read once,
    evaluated per node] in derive/sums.py)."""
    needed = set(expr.free_symbols)
    definitions = [(name, _put_in(definition, branches)) for name, definition in parsed(rule).where]
    for name, definition in reversed(definitions):
        if name in needed:
            needed |= definition.free_symbols
    return tuple((name.name, definition) for name, definition in definitions if name in needed)


def _evaluation(setting: _Setting, expr: sp.Expr, rule: IndexFormula, exact: bool = False) -> Evaluation:
    axes = 1 + max([depth(expr)] + [depth(d) for _, d in parsed(rule).where])  # j, then one per nested Sum
    evaluation = Evaluation(setting.tensors, setting.numbers, setting.layout.rows, setting.layout.count,
                            axes, exact)
    _with_where(rule, setting, evaluation, expr)
    return evaluation


def _evaluate(rule: IndexFormula, setting: _Setting, expr: sp.Expr, free: sp.Symbol) -> np.ndarray:
    """`expr` for every row and place of `free`, in float64, where that
    overflows in mpmath (Note [overflow inside an index formula] in derive/sums.py)."""
    values = _evaluation(setting, expr, rule).result(expr, free)
    if np.all(np.isfinite(values)) or not finite(list(setting.tensors.values()) + list(setting.numbers.values())):
        return values
    try:
        precise = _evaluation(setting, expr, rule, exact=True).result(expr, free)
    except (CannotEvaluate, ArithmeticError, TypeError, ValueError):
        return values  # keep numpy's inf or nan
    precise = np.broadcast_to(np.asarray(precise, dtype=np.float64), np.broadcast_shapes(values.shape, precise.shape))
    return np.where(np.isfinite(values), values, precise)


def forward_value(rule: IndexFormula, node: Node, output: int = 0) -> np.ndarray:
    """An output's numbers from its formula (for values torch did not keep)."""
    setting = _setting(rule, node)
    expr = forward(rule, output, setting.branches)
    values = _evaluate(rule, setting, expr, K)
    if is_elementwise(expr):
        return setting.layout.restore(values, setting.layout.shape)
    return setting.layout.output(values)


@dataclass(frozen=True)
class OperandGradient:
    """One operand's gradient: sympy's formula, and its numbers."""

    name: str
    expr: sp.Expr
    downstream: np.ndarray
    summed: Optional[str]  # how broadcasting was undone, in words
    count: int  # N, the length of the axis


def gradients(rule: IndexFormula, node: Node, upstreams: Tuple[Optional[np.ndarray], ...],
              transform=None) -> List[OperandGradient]:
    """∂L/∂operand for each operand that requires grad, from the upstream
    gradients of the node's outputs (None where none reached one). With
    `transform`, each formula is transformed before it is evaluated (the
    term magnitude of Note [error budget] in derive/budget.py)."""
    setting = _setting(rule, node)
    reached = _reached(rule, upstreams)
    for number in reached:
        output = forward(rule, number, setting.branches)
        name = UPSTREAM if number == 0 else f"{UPSTREAM}{number}"
        if is_elementwise(output):
            upstream = np.asarray(upstreams[number], dtype=np.float64)
            setting.tensors[name] = setting.layout.arrange(upstream, setting.layout.align(name, upstream.shape))
        else:
            setting.numbers[name] = setting.layout.per_row(upstreams[number])
    results = []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        if operand.value is None:
            raise CannotEvaluate(f"the shape of {operand.label} is unknown")
        parts, downstream = [], np.zeros(operand.value.shape)
        for word, aligned in _words_for(rule, setting.layout, operand.name, operand.value.shape):
            expr = vector_jacobian_product(rule, word, setting.branches, reached)
            missing = _missing(expr, setting)
            if missing and RESULT in setting.tensors:
                expr = in_result(rule, word, missing, setting.branches, reached) or expr
            values = _evaluate(rule, setting, transform(expr) if transform is not None else expr, J)
            downstream = downstream + setting.layout.restore(values, aligned).reshape(operand.value.shape)
            parts.append((word, expr))
        summed = None
        if int(np.prod(aligned, dtype=np.int64)) < int(np.prod(setting.layout.shape, dtype=np.int64)):
            summed = f"summed over the dims {operand.label} was broadcast along: " \
                     f"{setting.layout.shape} → {tuple(operand.value.shape)}"
        expr = parts[0][1] if len(parts) == 1 else ThroughViews(*(sp.Tuple(sp.Symbol(w), e) for w, e in parts))
        results.append(OperandGradient(operand.name, expr, downstream, summed, setting.layout.count))
    return results


def _missing(expr: sp.Expr, setting: _Setting) -> Optional[str]:
    """An operand the formula needs whose numbers this node lacks, if any."""
    return next((name for name in _tensors_read(expr) if name not in setting.tensors), None)


@lru_cache(maxsize=4096)
def _tensors_read(expr: sp.Expr) -> Tuple[str, ...]:
    return tuple(sorted({str(element.base.label) for element in expr.atoms(sp.Indexed)}))


# Note [an operand told by the result]
# softmax and log_softmax keep only their result, and inside attention the
# input itself may be recorded nowhere. As for pointwise rows (Note [an input
# told by its result] in derive/formula.py), sympy then solves the forward
# formula for the input's element, each Sum along the axis held fixed (it is
# one number per row): result[k] = exp(self[k])/S gives self[k] = log(S*result[k]).
# Put into the derived gradient, the Sums cancel where the gradient depends
# on the input through the result only: softmax's becomes
# result[j]*(G[j] - Sum(G[k]*result[k], k)). Where something of the input is
# left, there is no such form. A forward that is 0 on a condition of the
# input (_safe_softmax on a row of -inf) has result 0 there: its condition
# can go when the gradient in the result is 0 at result 0 too.
@lru_cache(maxsize=None)
def in_result(rule: IndexFormula, input_name: str, unknown: str, branches: Branches = (),
              reached: Optional[Tuple[int, ...]] = None) -> Optional[sp.Expr]:
    """∂L/∂input[j] with the `unknown` operand written in the result, or None
    (Note [an operand told by the result]).

    >>> from graphexplain.rules import TABLE
    >>> str(in_result(TABLE["SoftmaxBackward0"], "self", "self"))
    '(G[j] - Sum(G[k]*result[k], (k, 0, N - 1)))*result[j]'
    """
    formula = _put_in(parsed(rule).expanded(parsed(rule).outputs[0]), branches)
    element = sp.IndexedBase(unknown, real=True)
    zero_otherwise = isinstance(formula, sp.Piecewise) and len(formula.args) == 2 \
        and formula.args[1] == (0, sp.true) and K not in formula.args[0][1].free_symbols
    if zero_otherwise:
        formula = formula.args[0][0]
    if reached not in (None, (0,)) or not is_elementwise(formula) or formula.has(sp.Piecewise):
        return None
    held = {reduction: sp.Dummy("held") for reduction in _outermost_reductions(formula)}
    try:
        solutions = sp.solve(sp.Eq(sp.IndexedBase(RESULT, real=True)[K], formula.xreplace(held)), element[K])
    except (NotImplementedError, TypeError, ValueError):
        return None
    if len(solutions) != 1:
        return None
    expr = vector_jacobian_product(rule, input_name, branches, reached)
    if zero_otherwise:
        expr = expr.replace(lambda e: isinstance(e, sp.Piecewise) and len(e.args) == 2 and e.args[1] == (0, sp.true)
                            and e.args[0][1].has(element), lambda e: e.args[0][0])
    for reduction, name in held.items():
        expr = expr.replace(lambda e: _same_reduction(e, reduction), lambda e: name)
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == element,
                        lambda e: solutions[0].xreplace({K: e.indices[0]}))
    expr = tidy(_linear_sums(expr))
    if expr.has(element) or expr.free_symbols & set(held.values()):
        return None
    result = sp.IndexedBase(RESULT, real=True)
    if zero_otherwise and expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == result, lambda e: 0) != 0:
        return None
    return expr


def _outermost_reductions(expr: sp.Basic) -> List[sp.Basic]:
    if isinstance(expr, REDUCTIONS):
        return [expr]
    return [found for argument in expr.args for found in _outermost_reductions(argument)]


def _words_for(rule: IndexFormula, layout_: Layout, name: str, shape) -> List[Tuple[str, Tuple[int, ...]]]:
    """The formula's words that see an operand, each with its dims: the
    operand's own name, and the views of it (pdist's row and col)."""
    words = [(name, layout_.align(name, shape))] if name in parsed(rule).tensors else []
    words += [(word, aligned) for word, (source, aligned) in layout_.views.items() if source == name]
    if not words:
        raise CannotEvaluate(f"the row's formula does not use {name}")
    return words


class ThroughViews(sp.Basic):
    """An operand's gradient through each view of it, summed: printed as
    ``∂/∂row: ... + ∂/∂col: ...``."""

    def _sympystr(self, printer):
        return " + ".join(f"∂/∂{printer.doprint(word)}: {printer.doprint(expr)}" for word, expr in self.args)


def _reached(rule: IndexFormula, upstreams) -> Tuple[int, ...]:
    """The outputs whose upstream can add something: not None, not empty
    (batch_norm's saved mean outside training), not all zeros (an output
    nothing used). The first output always counts, so a formula is shown."""
    reached = tuple(
        number for number, upstream in enumerate(upstreams[:len(parsed(rule).outputs)])
        if upstream is not None and (number == 0 or (np.size(upstream) and np.any(upstream != 0)))
    )
    if not reached:
        raise CannotEvaluate("no upstream gradient reached this node")
    return reached


class Where(sp.Basic):
    """A formula and the `where` names it uses, printed as
    ``formula, where name = definition, ...``."""

    def _sympystr(self, printer):
        formula, *names = self.args
        shown = ", ".join(f"{printer.doprint(name)} = {printer.doprint(value)}" for name, value in names)
        return printer.doprint(formula) + (f", where {shown}" if shown else "")


def shown_forward(rule: IndexFormula, node: Node) -> sp.Basic:
    """The first output's formula as the walkthrough shows it, with the
    `where` names it uses."""
    chosen = branches(rule, node)
    formula = _without_defaulted(_without_removable_branches(forward(rule, 0, chosen)), _defaulted(rule, node))
    needed = set(formula.free_symbols)
    definitions = [(name, _without_removable_branches(_put_in(definition, chosen)))
                   for name, definition in parsed(rule).where]
    for name, definition in reversed(definitions):
        if name in needed:
            needed |= definition.free_symbols
    return Where(formula, *(sp.Tuple(name, value) for name, value in definitions if name in needed))
