"""The backward pass, done again by hand: chain_step by chain_step.

Starting from the roots' seed gradients, each node (in backward order) takes
its upstream gradient — the sum of what its consumers sent back — multiplies
it by the local gradient of each operand, and sends the result downstream.

Nothing here reads torch's backward numbers (Note [independence of the
derived side] in observed.py). A node without a usable row sends nothing
derived downstream: the nodes and leaves below it are UNREACHED, and say
from where. Next to each derived number goes its error budget (Note [error
budget] in derive/budget.py), which verify.py turns into a tolerance.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import sympy as sp

from ..model import Graph, Node, Operand, frozen_array, largest_magnitude, numbers, row_blocks
from ..results import (
    DERIVED, NO_RULE, NOT_DERIVED, RULE_ERROR, UNREACHED, ChainStep, Derivation, LeafDerivation, LocalGradient,
    NodeDerivation,
)
from ..rules import lookup
from ..rules.kinds import Composite, IndexFormula, Matrix, NotDifferentiable, Pointwise, Reduction, Routing, Rule
from ..rules.kinds import Convolution
from ..rules.fft import Transform
from ..rules.views import ViewWrite
from . import arguments, broadcast, budget, formula, indexed, routing
from . import convolution
from . import complex as complex_
from . import cache
from . import copy_slices
from .naming import display_names
from .symbolic import leaf_formulas
from ..precision import epsilon


class CannotApply(Exception):
    """The row exists but this node lacks something it needs (a value torch
    did not keep, a shape the row does not cover)."""


def _param_values(rule: Rule, node: Node) -> Dict[str, object]:
    values = dict(rule.defaults)
    params = arguments.saved(node)
    for name in rule.params:
        value = params.get(name)
        if value is not None:
            values[name] = np.asarray(value, dtype=np.float64) if _is_numeric(value) else value
    return values


def _is_numeric(value) -> bool:
    return isinstance(value, (int, float, np.ndarray, np.number)) and not isinstance(value, bool)


def _operand_values(rule: Rule, node: Node) -> Dict[str, object]:
    values = _param_values(rule, node)
    for operand in node.operands:
        if operand.value is not None and operand.value.known:
            values[operand.name] = operand.value.data
    if node.output is not None and node.output.known:
        values[formula.RESULT] = node.output.data
    return values


def _shape_of(operand: Operand) -> Tuple[int, ...]:
    if operand.value is None:
        raise CannotApply(f"the shape of {operand.label} is unknown")
    return operand.value.shape


def _local_gradient_record(rule, node, operand, expr, value, count=None) -> LocalGradient:
    named = cache.named_formula(expr, display_names(rule, node, count))  # printed once per formula and names
    return LocalGradient(operand.name, operand.label, cache.printed(expr), named, value)


# Note [broadcast views held once]
# The gradient a mean or a sum sends back is one number spread over every
# element, and torch keeps it so (an expanded tensor). Multiplied out, it and
# its budget were two full float64 arrays per reduction, and each step below
# made more. `_lean` applies an elementwise function to its operands with
# their stride-0 dims dropped and broadcasts the result back: the same
# number at every element, computed and held once. Where no operand is
# broadcast it is the plain computation.
def _compact(array):
    """`array` with each broadcast (stride-0) dim cut to one element."""
    if not isinstance(array, np.ndarray) or array.ndim == 0 or array.size < 2 or 0 not in array.strides:
        return array
    return array[tuple(slice(0, 1) if stride == 0 and n > 1 else slice(None)
                       for n, stride in zip(array.shape, array.strides))]


def _lean(function, *arrays):
    """`function(*arrays)`, elementwise, computed on the arrays' distinct
    elements only (Note [broadcast views held once]), and a big result
    block by block (Note [an elementwise step's temporaries])."""
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
    compact = [_compact(a) for a in arrays]
    result = _by_rows(function, compact)
    if result is None:
        result = np.asarray(function(*compact))
    return result if result.shape == shape else np.broadcast_to(result, shape)


# Note [an elementwise step's temporaries]
# |l|·b + (steps + 1)·|u|·t is five 2000×2000 arrays before it is one: on a
# matrix product's relu each was 32 MB, and those temporaries set the run's
# peak. An elementwise function of big arrays is computed a block of rows
# at a time into the one array it returns. Each element goes through the
# same operations in the same order, so the numbers are the same to the bit.
def _by_rows(function, arrays) -> Optional[np.ndarray]:
    """`function(*arrays)` by blocks of rows into one new array; None when the
    arrays are too small to be worth it (or the function's blocks do not fit)."""
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
    if len(shape) == 0 or shape[0] < 2 or int(np.prod(shape, dtype=np.int64)) <= BLOCK:
        return None
    along = [isinstance(a, np.ndarray) and a.ndim == len(shape) and a.shape[0] == shape[0] for a in arrays]
    out = None
    for rows in row_blocks(shape, BLOCK):
        part = np.asarray(function(*(a[rows] if cut else a for a, cut in zip(arrays, along))))
        if out is None:
            if part.shape != (min(rows.stop, shape[0]) - rows.start,) + shape[1:]:
                return None
            out = np.empty(shape, dtype=part.dtype)
        out[rows] = part
    return out


# --- one function per family of rows ------------------------------------------


def _local_terms(rule: Rule, input_name: str, expr: sp.Expr, values, eps: float,
                 local: np.ndarray) -> Tuple[np.ndarray, float]:
    """The term magnitude of a local gradient and its rounding steps, over
    both forms torch may compute it in (Note [error budget]). Where the
    magnitude's formula cannot be evaluated, the local gradient's own size,
    with sixteen steps more."""
    steps = budget.steps(expr, eps)
    try:
        # |·| in place where the array is one just computed (Note [an elementwise step's temporaries])
        magnitude = _magnitude(formula.evaluate(budget.terms(expr), {k: _finite_values(v) for k, v in values.items()}),
                               values.values())
    except (KeyError, ValueError, TypeError, ArithmeticError):
        return np.abs(local), steps + 16
    if isinstance(rule, Pointwise) and len(rule.inputs) == 1 and formula.RESULT in values:
        in_result = formula.local_gradient_in_result(rule, input_name, input_name)
        if in_result is not None:
            try:
                other = _magnitude(formula.evaluate(budget.terms(in_result), values), values.values())
                # `magnitude` is this step's own array now: the larger of the two goes into it where it fits
                fits = isinstance(magnitude, np.ndarray) and magnitude.dtype.kind == "f" and magnitude.ndim > 0 and \
                    np.broadcast_shapes(magnitude.shape, np.shape(other)) == magnitude.shape
                magnitude = np.fmax(magnitude, other, out=magnitude if fits else None)
                steps = max(steps, budget.steps(in_result, eps))
            except (KeyError, ValueError, TypeError):
                pass
    return magnitude, steps


def _elementwise_budget(local, local_terms, steps, upstream, upstream_budget, shape):
    """The budget of sum_to(upstream·local) (Note [error budget])."""
    full_shape = np.broadcast_shapes(np.shape(upstream), np.shape(local))
    count = int(np.prod(full_shape, dtype=np.int64)) // max(1, int(np.prod(shape, dtype=np.int64)))
    rounds = budget.summation(count)
    if full_shape == tuple(shape):  # nothing summed: the lines below in one pass (Note [an elementwise step's
        def bound(u, t, l, b):      # temporaries]), each element's operations the same
            m = np.abs(u) * t
            return _plus_scaled(_plus_scaled(np.abs(l) * b, steps + 1, m), rounds, m)
        return _lean(bound, upstream, local_terms, local, upstream_budget)
    magnitude = _lean(lambda u, t: np.abs(u) * t, np.broadcast_to(upstream, full_shape), local_terms)
    # magnitude ≥ 0 is its own |·|: _plus_scaled adds into one new array (Note [a big matrix node's temporaries])
    each = _lean(lambda l, b, m: _plus_scaled(np.abs(l) * b, steps + 1, m), local, upstream_budget, magnitude)
    return _lean(lambda e, m: _plus_scaled(e, rounds, m), broadcast.sum_to(each, shape),
                 broadcast.sum_to(magnitude, shape))


# Note [torch's result before a replayed operand]
# An operand torch did not save is filled in by its producer's forward, in
# float64 (derive/replay.py): the exact value, not the one torch rounded.
# tanh's backward reads its saved result, 1 - tanh(x)^2 from torch's own
# tanh(x); our 1 - tanh(x)^2 at the exact a @ b of a float32 product moved
# by that product's rounding (2e-5 on a 600-term dot product), which no
# budget of the tanh step covers, and a right gradient was called wrong.
# Where a one-input row's derivative can be told from the result torch
# kept, it is computed from that result, as torch computes it; the
# replayed operand is used only where the result cannot tell.
def _pointwise(rule: Pointwise, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float):
    values = _operand_values(rule, node)
    by_result = _result_first(rule, node, values)
    locals_, steps = [], []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        expr = formula.local_gradient(rule, operand.name)
        told = _told_by_result(rule, operand.name, by_result)
        if told is not None:
            (expr, local), values = told, by_result
        else:
            try:
                local = formula.evaluate(expr, values)
            except KeyError as missing:
                expr, local = _in_result(rule, operand.name, values, missing.args[0])
        # x·1 is x to the bit (nan and -0.0 included): an identity's step (AccumulateGrad) passes its upstream on
        identity = expr == 1 and np.broadcast_shapes(upstream.shape, np.shape(local)) == upstream.shape
        full = upstream if identity else _lean(np.multiply, upstream, local)
        shape = _shape_of(operand)
        if expr.is_zero:
            # Note [a local gradient of 0]: the input does not move the result
            # (floor, sign), so nothing flows back, even from an upstream that
            # is inf or nan (where 0·upstream would be nan); torch sends zeros.
            full = np.zeros_like(full)
            error = np.zeros(shape)
        else:
            magnitude, rounding = _local_terms(rule, operand.name, expr, values, eps, local)
            error = _elementwise_budget(local, magnitude, rounding, upstream, upstream_budget, shape)
        downstream = broadcast.sum_to(full, shape)
        locals_.append(_local_gradient_record(rule, node, operand, expr, local))
        steps.append(ChainStep(
            operand.name, operand.label, upstream, local, downstream, "multiply",
            broadcast.describe_sum(full.shape, shape), budget=error,
        ))
    return locals_, steps


def _result_first(rule: Pointwise, node: Node, values) -> Optional[Dict[str, object]]:
    """The values without the one operand, where it was replayed and torch's
    own result is known (Note [torch's result before a replayed operand]); else None."""
    if len(rule.inputs) != 1 or formula.RESULT not in values or node.output is None or node.output.replayed:
        return None
    operand = next((o for o in node.operands if o.name == rule.inputs[0]), None)
    if operand is None or operand.value is None or not operand.value.replayed or \
            formula.local_gradient_in_result(rule, operand.name, operand.name) is None:
        return None
    return {name: value for name, value in values.items() if name != operand.name}


def _told_by_result(rule: Pointwise, input_name: str, by_result):
    """(expr, local) from torch's result, where `_result_first` gave values
    for it and the result tells; None where the replayed operand is used."""
    if by_result is None:
        return None
    try:
        return _in_result(rule, input_name, by_result, input_name)
    except CannotApply:  # the result does not tell which piece made an element
        return None


def _in_result(rule: Pointwise, input_name: str, values, missing: str):
    """The local gradient written in the result, where the one operand it
    lacks can be told from the result (Note [an input told by its result]
    in derive/formula.py)."""
    expr = None
    if missing in rule.inputs and formula.RESULT in values:
        expr = formula.local_gradient_in_result(rule, input_name, missing)
    if expr is None:
        raise CannotApply(f"no value for {missing}")
    try:
        told = formula.told_by_result(rule, missing, values)
        if not np.all(told):
            raise CannotApply(f"no value for {missing}, and the result does not tell which piece of the "
                              f"formula made {np.size(told) - np.count_nonzero(told)} of its elements")
        return expr, formula.evaluate(expr, values)
    except KeyError as still_missing:
        raise CannotApply(f"no value for {still_missing.args[0]}") from None


def _reduction(rule: Reduction, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float):
    mode = arguments.reduction_mode(rule, node)
    values = _operand_values(rule, node)
    shapes = [_shape_of(o) for o in node.operands]
    elementwise = np.broadcast_shapes(*shapes)
    dims, keepdim = arguments.reduced(rule, node, len(elementwise))
    count = int(np.prod([elementwise[d] for d in dims], dtype=np.int64)) if dims else 1
    values[formula.COUNT] = float(count)
    spread = broadcast.spread(upstream, elementwise, dims, keepdim) if mode != "none" else upstream
    spread_budget = broadcast.spread(upstream_budget, elementwise, dims, keepdim) if mode != "none" \
        else upstream_budget
    locals_, steps = [], []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        expr = formula.local_gradient(rule, operand.name, mode)
        try:
            local = formula.evaluate(expr, values)
        except KeyError as missing:
            raise CannotApply(f"no value for {missing.args[0]}") from None
        full = _lean(np.multiply, np.broadcast_to(spread, elementwise), local)
        shape = _shape_of(operand)
        downstream = broadcast.sum_to(full, shape)
        magnitude, rounding = _local_terms(rule, operand.name, expr, values, eps, local)
        error = _elementwise_budget(local, magnitude, rounding, np.broadcast_to(spread, elementwise),
                                    np.broadcast_to(spread_budget, elementwise), shape)
        how = broadcast.describe_spread(upstream.shape, elementwise)
        summed = broadcast.describe_sum(full.shape, shape)
        locals_.append(_local_gradient_record(rule, node, operand, expr, local, count))
        steps.append(ChainStep(
            operand.name, operand.label, upstream, local, downstream, "spread",
            "; ".join(part for part in (how, summed) if part) or None, budget=error,
        ))
    return locals_, steps


def _routing(rule: Routing, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float,
             each_output=None, each_budget=None):
    """Route every output's upstream back to every operand (Note [positions
    of several inputs and outputs] in derive/routing.py)."""
    upstreams = each_output if each_output is not None else (upstream,)
    budgets = each_budget if each_budget is not None else (upstream_budget,)
    saved = dict(arguments.saved(node), result_shape=np.shape(upstreams[0]))
    if node.output is not None and node.output.known:
        saved.setdefault(formula.RESULT, node.output.data)
    shapes = routing.complete_shapes(
        rule.forward, [(o.name, o.value.shape if o.value is not None else None) for o in node.operands],
        saved["result_shape"], saved)
    numbers = [o.value.data if o.value is not None else None for o in node.operands]
    found = routing.routes(rule.forward, shapes, saved, numbers)
    if len(found.output_shapes) != len(upstreams):
        raise CannotApply(f"the forward makes {len(found.output_shapes)} outputs, torch's node {len(upstreams)}")
    flat = _flat(upstreams, found.output_shapes, lambda u: u)
    shown = upstream if each_output is None else flat
    sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape in shapes]
    grads = routing.gradients(found, flat, sizes)
    weighted = found.weights is not None
    errors = _routing_budget(found, upstreams, budgets, sizes)
    locals_, steps = [], []
    for operand, (_, shape), grad, error in zip(node.operands, shapes, grads, errors):
        if not operand.requires_grad:
            continue
        expr = formula.local_gradient(rule, operand.name)
        locals_.append(LocalGradient(operand.name, operand.label, cache.printed(expr), (
            f"w[k, j]: the share of {operand.name}[j] in result[k], else 0" if weighted else
            f"1 where result[k] was taken from {operand.name}[j], else 0")))
        steps.append(ChainStep(operand.name, operand.label, shown, None, grad.reshape(shape), "route", (
            "each upstream element goes back, times its share, to the elements it was made of" if weighted else
            "each upstream element goes back to the element it was taken from")
            + ("; the upstreams of all outputs, one after another" if each_output is not None else ""),
            budget=error.reshape(shape)))
    return locals_, steps


def _routing_budget(found: routing.Routes, upstreams, budgets, sizes):
    """Routing only copies and adds (times a weight, for pools and
    interpolation): |J| is the map with |weights|, and the rounding steps
    are the additions into the element that collects the most."""
    absolute = replace(found, weights=None if found.weights is None else np.abs(found.weights))
    steps = budget.summation(routing.most_collected(found, sizes)) + (1 if found.weights is not None else 0)
    seeds = [_lean(lambda b, u: np.abs(b) + steps * np.abs(u), b, u) for b, u in zip(budgets, upstreams)]
    found_budget = routing.gradients(absolute, _flat(seeds, found.output_shapes, lambda a: a), sizes)
    if found.slack is None:
        return found_budget
    slack = routing.gradients(replace(found, weights=found.slack), _flat(upstreams, found.output_shapes, np.abs), sizes)
    return [b + s for b, s in zip(found_budget, slack)]


def _flat(arrays, shapes, function):
    """`function` of each output's array, flat, one output after another (one output: no copy where none is needed)."""
    if len(arrays) == 1 and len(shapes) == 1:
        return np.broadcast_to(function(arrays[0]), shapes[0]).reshape(-1)
    return np.concatenate([np.broadcast_to(function(a), s).reshape(-1) for a, s in zip(arrays, shapes)])


def _matrix(rule: Matrix, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float,
            each_output=None, each_budget=None):
    """∂L/∂X = ∂ tr(Gᵀ·result)/∂X, by sympy, for each matrix of the stack
    (Note [operands as matrices] in derive/formula.py)."""
    try:
        return _matrix_steps(rule, node, upstream, upstream_budget, each_output, each_budget)
    except (NotImplementedError, RecursionError) as problem:  # sympy's matrix calculus gave up
        raise CannotApply(f"sympy cannot differentiate it: {type(problem).__name__} {problem}") from None


class _MatrixCall(NamedTuple):
    """One node's numbers as its row's matrix formula takes them."""

    along: Optional[int]  # the dim vectors lie along, moved last (linalg.cross); None: the last
    stack: Tuple[int, ...]
    matrix_shapes: Tuple[Tuple[int, int], ...]
    kinds: Tuple[str, ...]  # each operand's layout (Note [operands as matrices])
    choices: Tuple[Tuple[str, bool], ...]
    inputs: List  # the upstreams, operands, params and constants, as the numpy functions take them
    ranks: List[int]
    known: Dict[str, object]  # operand and param names → their value, None where unknown


def _matrix_call(rule: Matrix, node: Node, upstreams) -> _MatrixCall:
    saved = arguments.saved(node)
    along = formula.vector_dim(rule, saved, np.ndim(upstreams[0]))
    shapes = _matrix_operand_shapes(rule, node, np.shape(upstreams[0]))
    upstreams = tuple(formula.to_last(u, along) for u in upstreams)
    matrix_shapes = formula.matrix_shapes(rule, shapes, np.shape(upstreams[0]))
    stack = formula.stack_shape(rule, shapes)
    choices = formula.choices_of(rule, saved)
    outputs = formula.matrix_outputs(rule, matrix_shapes, choices)
    if len(outputs) != len(upstreams):
        raise CannotApply(f"the forward gives {len(outputs)} outputs, torch's node {len(upstreams)}")
    values = _operand_values(rule, node)
    values.update({name: formula.to_last(values.get(name), along) for name in rule.inputs + (formula.RESULT,)})
    _require_full_rank(rule, values)
    kinds = tuple(formula.layout(rule, name, shape) for name, shape in zip(rule.inputs, shapes))
    output_shapes = [tuple(getattr(output, "shape", ())) for output in outputs]
    gradients = [np.asarray(u, dtype=np.float64).reshape(stack + s) for u, s in zip(upstreams, output_shapes)]
    operands = [formula.laid_out(values[name], kind, shape, stack) if values.get(name) is not None else None
                for name, kind, shape in zip(rule.inputs, kinds, matrix_shapes)]
    params = [values.get(name) for name in rule.params]
    try:
        constants = formula.constant_values(rule, matrix_shapes, choices, values)
    except KeyError as missing:
        raise CannotApply(f"no value for {missing.args[0]}") from None
    ranks = [2] * len(operands) + [np.ndim(p) for p in params] + [2] * len(constants)
    result = values.get(formula.RESULT)
    if result is not None:
        result = np.reshape(result, stack + output_shapes[0])
        operands = _recovered(rule, matrix_shapes, choices, stack, result, operands, params + constants, ranks)
        _require_forward(rule, matrix_shapes, choices, stack, result, operands + params + constants, ranks,
                         node.output.dtype)
    known = dict(zip(rule.inputs + rule.params, operands + params))
    return _MatrixCall(along, stack, matrix_shapes, kinds, choices, gradients + operands + params + constants,
                       [len(s) for s in output_shapes] + ranks, known)


def _matrix_steps(rule: Matrix, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray,
                  each_output=None, each_budget=None):
    upstreams = each_output if each_output is not None else (upstream,)
    budgets = each_budget if each_budget is not None else (upstream_budget,)
    call = _matrix_call(rule, node, upstreams)
    inner = max((max(shape) for shape in call.matrix_shapes), default=1)
    rounding = budget.dot_product(inner) + 2
    shown = upstream if each_output is None else np.concatenate([np.reshape(u, -1) for u in upstreams])
    locals_, steps = [], []
    for operand, kind, matrix_shape in zip(node.operands, call.kinds, call.matrix_shapes):
        if not operand.requires_grad:
            continue
        expr, function = formula.vector_jacobian_product(rule, operand.name, call.matrix_shapes, call.choices)
        if any(call.known.get(str(symbol), 0) is None for symbol in expr.free_symbols):
            raise CannotApply(f"a value needed by ∂L/∂{operand.name} = {expr} is unknown")
        shape = _shape_of(operand)
        # the budget's terms before the gradient, so that the product's temporaries and the gradient
        # are not held at once (Note [a big matrix node's temporaries])
        terms = _terms_budget(rule, operand, call, matrix_shape, kind, shape, budgets, rounding,
                              {str(symbol) for symbol in expr.free_symbols})
        full = formula.over_stack(function, call.stack, call.inputs, matrix_shape, call.ranks)
        full = formula.from_last(formula.laid_back(full, kind, formula.moved_shape(shape, call.along)), call.along)
        error = np.broadcast_to(terms, full.shape) if terms is not None else \
            _conditioned_budget(call, budgets, rounding, full)
        if full.size == int(np.prod(shape, dtype=np.int64)):
            downstream = full.reshape(shape)
            summed = None
        else:
            downstream = broadcast.sum_to(full, shape)
            summed = broadcast.describe_sum(full.shape, shape)
        error = error.reshape(shape) if error.size == downstream.size else \
            broadcast.sum_to(error, shape) + budget.summation(error.size // max(1, downstream.size)) * \
            broadcast.sum_to(np.abs(full), shape)
        record = _local_gradient_record(rule, node, operand, expr, None)
        locals_.append(record)
        steps.append(ChainStep(operand.name, operand.label, shown, None, downstream, "matrix",
                               summed, record.named, error))
    return locals_, steps


def _terms_budget(rule: Matrix, operand: Operand, call: "_MatrixCall", matrix_shape, kind, shape,
                  budgets, rounding: float, used=None) -> Optional[np.ndarray]:
    """|J|ᵀ·(budget + rounding·|G|), by the formula's term magnitude at the
    operands' absolute values (Note [error budget]); None for a formula
    with no term magnitude (an inverse, a determinant)."""
    count = len(budgets)
    magnitude = formula.vector_jacobian_terms(rule, operand.name, call.matrix_shapes, call.choices)
    if magnitude is None:
        return None
    # an operand the formula does not read is passed as it is (Note [a big matrix node's temporaries])
    unread = {k for k, name in enumerate(rule.inputs) if used is not None and name not in used}
    size = int(np.prod(tuple(call.stack) + tuple(matrix_shape), dtype=np.int64))  # the gradient's
    single = _budget_in_float32(operand, size, rounding)  # Note [a big matrix budget in float32]
    for dtype in (np.float32, np.float64) if single else (np.float64,):
        gradients = [_plus_scaled(np.asarray(b).reshape(g.shape), rounding, g, dtype)
                     for b, g in zip(budgets, call.inputs[:count])]
        rest = [np.abs(a, dtype=dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" and k not in unread
                else a for k, a in enumerate(call.inputs[count:])]
        try:
            terms = formula.over_stack(magnitude, call.stack, gradients + rest, matrix_shape, call.ranks, dtype)
            terms = formula.from_last(formula.laid_back(terms, kind, formula.moved_shape(shape, call.along)),
                                      call.along)
        except (ValueError, TypeError, IndexError, NotImplementedError):
            return None
        gradients = rest = None
        if dtype == np.float64 or np.isfinite(terms).all():  # float32 that overflowed: once more in float64
            return _magnitude(terms, call.inputs)
    return None


def _conditioned_budget(call: "_MatrixCall", budgets, rounding: float, full) -> np.ndarray:
    """For an inverse or a determinant, the result's size times the
    condition number squared (Note [error budget]): torch's inverse is off
    by κ·eps relative, and the formula multiplies two."""
    count = len(budgets)
    kappa = budget.condition(call.inputs[count:])
    relative = max((float(np.max(np.abs(b), initial=0.0)) / max(float(np.max(np.abs(g), initial=0.0)), 1e-300)
                    for b, g in zip(budgets, call.inputs[:count])), default=0.0)
    return np.full(full.shape, kappa ** 2 * (rounding + relative) * float(np.max(np.abs(full), initial=0.0)))


def _matrix_operand_shapes(rule: Matrix, node: Node, result_shape) -> Tuple[Tuple[int, ...], ...]:
    """The operands' shapes, the dim their vectors lie along moved last. One
    torch did not keep, and that needs no gradient, may be recovered from the
    result, whose shape it then has (Note [an operand recovered from the
    result] in derive/formula.py)."""
    along = formula.vector_dim(rule, arguments.saved(node), len(result_shape))
    return tuple(formula.moved_shape(_shape_of(o) if o.value is not None or o.requires_grad else result_shape, along)
                 for o in node.operands)


def _recovered(rule: Matrix, matrix_shapes, choices, stack, result, operands, rest, ranks) -> list:
    """The operands, each unknown one recovered from the result where the
    formula allows (Note [an operand recovered from the result])."""
    found = list(operands)
    for index, name in enumerate(rule.inputs):
        recovery = formula.recovered_operand(rule, name, matrix_shapes, choices) if found[index] is None else None
        if recovery is None or any(o is None for k, o in enumerate(operands) if k != index):
            continue
        _, function = recovery
        found[index] = formula.over_stack(function, stack, [result] + operands + rest, matrix_shapes[index],
                                          [result.ndim - len(stack)] + ranks)
    return found


def _require_forward(rule: Matrix, matrix_shapes, choices, stack, result, arguments_, ranks, dtype: str) -> None:
    """The row applies where its formula gives torch's result: torch's
    pinv(A, hermitian=True) reads one triangle of A, and its result is then
    not pinv(A). The check is loose (rounding in float32 is no reason to
    refuse); it is there for answers that differ outright."""
    if any(a is None for a in arguments_):
        return
    forward = formula.matrix_forward_function(rule, matrix_shapes, choices)
    ours = formula.over_stack(lambda *a: forward(*a)[0], stack, arguments_, result.shape[len(stack):], ranks)
    scale = max(1.0, largest_magnitude(result))
    loose = 1e-6 if dtype == "float64" else 1e-2
    if not _all_close(ours, result, rtol=loose, atol=loose * scale):
        raise CannotApply(f"torch's result is not {rule.forward} of these operands")


# Note [a big matrix node's temporaries]
# On a 2000×2000 product each temporary is a 32 MB array, and the node's
# own results (two gradients, two budgets) are already four of them: a
# temporary made of a temporary (rounding·|G|, then budget + that; the
# allclose of torch's result, five arrays) set the whole run's peak memory.
# The helpers below compute the same numbers, in the same order of
# operations, in one array each, or block by block.
BLOCK = 1 << 18  # elements per block


def _plus_scaled(base: np.ndarray, factor: float, array, dtype=np.float64) -> np.ndarray:
    """base + factor·|array|, one new array of `dtype` (Note [a big matrix node's temporaries])."""
    total = np.abs(array, dtype=dtype) if np.asarray(array).dtype.kind == "f" else np.abs(array)
    if total.dtype != dtype or total.shape != np.broadcast_shapes(total.shape, np.shape(base)):
        return (base + factor * total).astype(dtype, copy=False)
    total *= factor
    total += base
    return total


# Note [a big matrix budget in float32]
# The budget of a 2000×2000 product is a product too, |G|·|B|ᵀ, and in
# float64 it took as long as the gradient itself and three 32 MB
# temporaries (|G| + budget, |B|, the product) at the run's peak. It is a
# bound (Note [a big budget in float32]), and a float32 product of numbers
# ≥ 0 is off by at most n·2**-24 of itself over n terms, nothing next to
# SAFETY's factor of two while n stays under 2**20; what would be under
# float32's range is under verify.tiny's floor as well. So a big float32
# gradient's budget is computed in float32, where it stays, and once more
# in float64 should it overflow. A float64 gradient, or a formula that is
# no polynomial (an inverse, a determinant), keeps float64.
def _budget_in_float32(operand: Operand, size: int, rounding: float) -> bool:
    return operand.value is not None and operand.value.dtype == "float32" and size > BLOCK and \
        rounding * _FLOAT32_EPS < 1 / 16


def _magnitude(terms, inputs) -> np.ndarray:
    """|terms|, in place where `terms` is an array of its own (not one of the `inputs`), or a
    read-only view of one the same shape (formula.over_stack's broadcast_to)."""
    own = terms
    if isinstance(terms, np.ndarray) and not terms.flags.writeable and isinstance(terms.base, np.ndarray) and \
            terms.base.shape == terms.shape and terms.base.strides == terms.strides:
        own = terms.base
    if isinstance(own, np.ndarray) and own.dtype.kind == "f" and own.flags.writeable and \
            not any(isinstance(a, np.ndarray) and np.may_share_memory(own, a) for a in inputs):
        return np.abs(own, out=own)
    return np.abs(terms)


def _all_close(ours, theirs, rtol: float, atol: float) -> bool:
    """np.allclose(ours, theirs, equal_nan=True), block by block of the flat arrays."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape or ours.size <= BLOCK:
        return bool(np.allclose(ours, theirs, rtol=rtol, atol=atol, equal_nan=True))
    ours, theirs = ours.reshape(-1), theirs.reshape(-1)
    return all(np.allclose(ours[i:i + BLOCK], theirs[i:i + BLOCK], rtol=rtol, atol=atol, equal_nan=True)
               for i in range(0, ours.size, BLOCK))


def _require_full_rank(rule: Matrix, values: Dict[str, object]) -> None:
    """A closed form that holds at full rank only (pinv's) leaves other nodes to torch."""
    for name in rule.full_rank:
        value = values.get(name)
        if value is None:
            raise CannotApply(f"{name} is unknown, and the formula holds at full rank only")
        value = np.asarray(value, dtype=np.float64)
        if value.size and np.any(np.linalg.matrix_rank(value) < min(value.shape[-2:])):
            raise CannotApply(f"{name} is not of full rank, and the formula holds at full rank only")


def _indexed(rule: IndexFormula, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float,
             each_output=None, each_budget=None):
    """∂L/∂x[j] = ∂/∂x[j] Σ_k G[k]·result[k], by sympy, evaluated along the
    op's axis (Note [index notation] in derive/indexed.py)."""
    upstreams = each_output if each_output is not None else (upstream,)
    budgets = each_budget if each_budget is not None else (upstream_budget,)
    shown = upstream if each_output is None else np.concatenate([np.reshape(u, -1) for u in upstreams])
    operands = {operand.name: operand for operand in node.operands}
    found = indexed.gradients(rule, node, upstreams)
    errors = _indexed_budget(rule, node, upstreams, budgets, found, eps)
    locals_, steps = [], []
    for gradient, error in zip(found, errors):
        operand = operands[gradient.name]
        record = LocalGradient(operand.name, operand.label, str(gradient.expr),
                               indexed.named(rule, node, gradient.expr, gradient.count))
        locals_.append(record)
        # shown as a matrix row's is: the formula of G, then its numbers
        steps.append(ChainStep(operand.name, operand.label, shown, None, gradient.downstream, "matrix",
                               gradient.summed, record.named, error))
    return locals_, steps


# Note [magnitudes at infinite inputs]
# A term magnitude multiplies a function's slope by its argument's size:
# exp(x)·|x| at x = -inf is 0·inf = nan, and a row's sum of such terms is
# nan throughout, though torch's softmax of a row holding -inf is ordinary.
# Magnitudes are therefore evaluated with infinite inputs moved to the
# largest finite float, where the limits are what the formula says.
def _finite_values(value):
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        return np.nan_to_num(value, nan=np.nan, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max)
    return value


def _finite(node: Node) -> Node:
    """The node with its infinite operand and output values made finite (Note [magnitudes at infinite inputs])."""
    def finite(value):
        if value is None or not value.known or np.all(np.isfinite(value.data)):
            return value
        return replace(value, data=frozen_array(_finite_values(np.asarray(value.data))))
    return replace(node, operands=tuple(replace(o, value=finite(o.value)) for o in node.operands),
                   outputs=tuple(finite(o) for o in node.outputs))


def _indexed_budget(rule: IndexFormula, node: Node, upstreams, budgets, found, eps: float) -> List[np.ndarray]:
    """The formulas' term magnitudes evaluated with budget + rounding·|G| for
    G (Note [error budget]); where that cannot be evaluated, the largest
    such magnitude of the tensor for every element."""
    rounding = max((budget.steps(g.expr, eps) for g in found), default=1.0) + \
        budget.summation(max((g.count for g in found), default=1))
    seeds = tuple(None if u is None else np.asarray(b, dtype=np.float64) + rounding * np.abs(u)
                  for u, b in zip(upstreams, budgets))
    try:
        return [np.abs(m.downstream) for m in indexed.gradients(rule, _finite(node), seeds, transform=budget.terms)]
    except Exception:  # noqa: BLE001 - a magnitude the evaluator cannot do: the uniform bound below
        relative = max((float(np.max(s, initial=0.0)) / max(float(np.max(np.abs(u), initial=0.0)), 1e-300)
                        for s, u in zip(seeds, upstreams) if u is not None), default=rounding)
        return [np.full(np.shape(g.downstream), relative * float(np.max(np.abs(g.downstream), initial=0.0)))
                for g in found]


def _forward(rule: Rule, node: Node, result_shape) -> sp.Basic:
    """The forward formula as the walkthrough shows it."""
    if isinstance(rule, IndexFormula):
        return indexed.shown_forward(rule, node)
    if isinstance(rule, Convolution):
        return convolution.shown_forward(rule, node, result_shape)
    if isinstance(rule, Transform):
        return complex_.held(complex_.transform_forward(rule, bool(rule.last)))
    if isinstance(rule, Pointwise) and complex_.stated_forward(rule) is not None:
        return complex_.stated_forward(rule)
    if isinstance(rule, Matrix):
        shapes = _matrix_operand_shapes(rule, node, result_shape)
        along = formula.vector_dim(rule, arguments.saved(node), len(result_shape))
        choices = formula.choices_of(rule, arguments.saved(node))
        return formula.matrix_forward(rule, formula.matrix_shapes(rule, shapes, formula.moved_shape(result_shape, along)),
                                      choices)
    if isinstance(rule, Reduction):
        mode = arguments.reduction_mode(rule, node)
        term = formula.forward(rule)
        return term if mode == "none" else sp.Function(mode)(term)
    return formula.forward(rule)


FAMILIES = {Pointwise: _pointwise, Reduction: _reduction, Routing: _routing, Matrix: _matrix}
FAMILIES[IndexFormula] = _indexed
FAMILIES[Convolution] = convolution.steps
DESCRIBED = {Convolution: convolution.describe}  # a row's geometry in words, for the picture


def _not_derived(node: Node, upstream: Optional[np.ndarray], title: str, status: str, note: str,
                 upstream_budget=None, missing_from: Tuple[int, ...] = ()) -> NodeDerivation:
    """A node whose gradients could not be derived: no rule, a rule that
    raised, or a gradient above it that was not derived. Its operands get
    no derived number (how "unknown"), so nothing below pretends to be."""
    steps = tuple(ChainStep(operand.name, operand.label, upstream, None, None, "unknown")
                  for operand in node.operands if operand.requires_grad)
    return NodeDerivation(node.id, status, title, "", "", upstream, (), steps, note, upstream_budget, missing_from)


def derive_node(node: Node, upstream: Optional[np.ndarray], each_output=None, upstream_budget=None,
                each_budget=None) -> NodeDerivation:
    """Apply the node's row to its upstream gradient (`each_output`: every
    output's, for a node with several; Note [nodes with several outputs]).
    The budgets default to 0: an upstream taken as exact."""
    if node.inner is not None:  # a hand-written backward: its forward's graph is differentiated instead
        from .function import derive_function
        return derive_function(node, upstream, each_output, upstream_budget, each_budget)
    rule = lookup(node.op)
    if isinstance(rule, ViewWrite):  # a write into a view: fn's own row, on the region written
        return copy_slices.derive_node(node, upstream, upstream_budget)
    if rule is None:
        return _not_derived(node, upstream, node.op, NO_RULE, "no symbolic rule for this op", upstream_budget)
    if isinstance(rule, NotDifferentiable):
        return _not_derived(node, upstream, rule.title, NO_RULE, "this op has no gradient", upstream_budget)
    if isinstance(rule, Composite):  # its forward is written out at capture; a graph built without it has none
        return _not_derived(node, upstream, rule.title, NO_RULE, "its written-out forward was not run at capture",
                            upstream_budget)
    if upstream is None:
        return _not_derived(node, upstream, rule.title, UNREACHED, "no derived gradient reached it")
    complex_numbers = _is_complex(node) or np.iscomplexobj(upstream)
    if complex_numbers and not _complex_ready(rule):
        return _not_derived(node, upstream, rule.title, NOT_DERIVED,
                            "complex numbers: this row is not derived for them yet", upstream_budget)
    upstream = numbers(upstream)
    upstream_budget = np.zeros(upstream.shape) if upstream_budget is None else np.asarray(upstream_budget)
    # Budgets are absolute; inside a family they count in this node's eps
    # (Note [error budget]), so a float16 op rounds as float16 does.
    eps = max(epsilon(computing_dtype(node)), epsilon(rule.constants_in) if rule.constants_in else 0.0)
    several = {}
    if each_output is not None:
        each_budget = each_budget or tuple(np.zeros(np.shape(u)) for u in each_output)
        several = {"each_output": each_output, "each_budget": tuple(np.asarray(b) / eps for b in each_budget)}
    family = _complex_pointwise if complex_numbers and isinstance(rule, Pointwise) else FAMILIES[type(rule)]
    family = _complex_routing if complex_numbers and isinstance(rule, Routing) else family
    try:
        with np.errstate(all="ignore"):  # a budget at a pole (0**-1) is inf: verify handles it, no warning
            locals_, steps = family(rule, node, upstream, _in_eps(upstream_budget, eps), eps, **several)
        for k in range(len(steps)):  # one at a time: each step's unstored budget goes as its stored one comes
            if steps[k].budget is not None:
                steps[k] = replace(steps[k], budget=_stored(steps[k], np.asarray(steps[k].budget), node, eps))
    except (CannotApply, ValueError, IndexError, TypeError, KeyError, ArithmeticError) as problem:
        reason = f"{type(problem).__name__}: {problem}" if not isinstance(problem, CannotApply) else str(problem)
        return _not_derived(node, upstream, rule.title, RULE_ERROR, f"the rule could not be applied: {reason}",
                            upstream_budget)
    forward_named = cache.named_formula(_forward(rule, node, np.shape(upstream)), display_names(rule, node))
    return NodeDerivation(
        node.id, DERIVED, rule.title, rule.forward, forward_named,
        upstream, tuple(locals_), tuple(steps), upstream_budget=upstream_budget,
        geometry=DESCRIBED[type(rule)](rule, node) if type(rule) in DESCRIBED else "",
    )


# Note [a big budget in float32]
# A budget is a bound on rounding, used once multiplied by SAFETY = 2: its
# own last bits do not matter, and float32's 2**-24 of it is nothing next
# to that factor. For a big float32 gradient it is stored in float32, half
# the memory: on a 2000×2000 product the two operands' budgets, and the
# budget passed to the next node, were 32 MB each at the run's peak. A
# float32 budget that overflows is inf, which bounds nothing and is
# treated so (verify.allowed_difference); a float64 gradient's budget stays
# float64, whose range it needs.
_FLOAT32_EPS = epsilon("float32")


# Note [a budget past float32's range]
# Through a deep net the worst-case budget compounds (Note [a chain's budget
# that has grown] in verify.py): on a ResNet-18 with a batch of 256 it grew
# ×30 to ×100 a layer and passed 1e31 near the stem. Stored in float32 it
# was still finite, but in eps units (÷2**-24) it overflowed to inf, and an
# infinite budget is taken to bound nothing (an input of -inf, a pole;
# verify.allowed_difference), so the stem's right gradients were called
# wrong. A big budget is kept in float32 only while it, and it in eps
# units, stays well inside float32's range; past that it is float64, whose
# range it needs.
_FLOAT32_ROOM = float(np.finfo(np.float32).max) / 1024


def _fits_float32(budget: np.ndarray, scale: float) -> bool:
    """Whether `budget`·`scale` stays well inside float32's range."""
    return float(np.max(budget, initial=0.0)) * scale < _FLOAT32_ROOM  # nan: not inside, float64


def _in_eps(budget, eps: float):
    """An absolute budget in units of `eps` (Note [error budget]), in float64 where
    float32 would overflow (Note [a budget past float32's range])."""
    array = np.asarray(budget)
    if array.dtype == np.float32 and not _fits_float32(array, 1 / eps):
        return _lean(lambda b: np.divide(b, eps, dtype=np.float64), array)
    return _lean(lambda b: b / eps, array)


def _stored(step: ChainStep, error: np.ndarray, node: Node, unit: float) -> np.ndarray:
    """The budget (`error`, in units of `unit`, the node's eps) once torch
    stores the gradient in its operand's dtype (a float64 gradient sent to a
    float32 tensor rounds once more)."""
    operand = next((o for o in node.operands if o.name == step.input), None)
    if operand is None or operand.value is None or step.downstream is None:
        return _lean(lambda e: e * unit, error)
    eps = epsilon(operand.value.dtype)
    stored = lambda e, d: e * unit + eps * np.abs(d) / 2  # noqa: E731
    downstream = step.downstream
    if isinstance(downstream, np.ndarray) and error.shape == downstream.shape and error.size > BLOCK and \
            0 not in error.strides and 0 not in downstream.strides:
        # block by block: one new array, not four (Note [a big matrix node's temporaries]), and in
        # float32 for a float32 gradient (Note [a big budget in float32])
        # stored (error·unit), and in a float32 node's eps units after it (Note [a budget past float32's range])
        single = eps >= _FLOAT32_EPS and unit >= _FLOAT32_EPS and _fits_float32(error, unit / _FLOAT32_EPS)
        out = np.empty(error.shape, dtype=np.float32 if single else np.float64)
        for part in row_blocks(error.shape, BLOCK):  # by rows: selfᵀ·G reshaped flat would be copied whole
            out[part] = stored(error[part], downstream[part])
        return out
    return _lean(stored, error, step.downstream)


def computing_dtype(node: Node) -> str:
    """The dtype torch computes the node's backward in: its output's."""
    value = node.output if node.output is not None else next((o.value for o in node.operands if o.value), None)
    return value.dtype if value is not None else "float32"


def _complex_ready(rule: Rule) -> bool:
    """Rows derived for complex numbers: pointwise ones with a complex form,
    and plain sums and means (Note [complex gradients] in derive/complex.py)."""
    if isinstance(rule, Pointwise):
        return all(complex_.wirtinger(rule, name) is not None for name in rule.inputs)
    if isinstance(rule, Transform):
        return True
    if isinstance(rule, Routing):  # Note [complex routing] in derive/routing.py
        return routing.complex_ready(rule.forward)
    return isinstance(rule, Reduction) and rule.forward == "self" and rule.reduce in ("sum", "mean")


def _complex_pointwise(rule: Pointwise, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray,
                       eps: float):
    """downstream = conj(u)·∂s/∂z̄ + u·conj(∂s/∂z), real for a real operand
    (Note [complex gradients]). The budget takes |∂s/∂z| + |∂s/∂z̄| as |J|."""
    values = _operand_values(rule, node)
    locals_, steps = [], []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        d, d_conjugate = complex_.wirtinger(rule, operand.name)
        try:
            local, local_conjugate = complex_.evaluate(d, values), complex_.evaluate(d_conjugate, values)
        except KeyError as missing:
            told = [complex_.in_result(rule, e, missing.args[0]) if missing.args[0] in rule.inputs else None
                    for e in (d, d_conjugate)]
            if None in told or formula.RESULT not in values:
                raise CannotApply(f"no value for {missing.args[0]}") from None
            d, d_conjugate = told
            try:
                local, local_conjugate = complex_.evaluate(d, values), complex_.evaluate(d_conjugate, values)
            except KeyError as still:
                raise CannotApply(f"no value for {still.args[0]}") from None
        full = np.conj(upstream) * local_conjugate + upstream * np.conj(local)
        shape = _shape_of(operand)
        if operand.value is not None and not operand.value.dtype.startswith("complex"):
            full = full.real
        magnitude = np.abs(local) + np.abs(local_conjugate)
        error = _elementwise_budget(magnitude, magnitude, budget.steps(d + d_conjugate, eps), upstream,
                                    upstream_budget, shape)
        vjp = f"conj(G)*({d_conjugate}) + G*conj({d})"
        locals_.append(LocalGradient(operand.name, operand.label, vjp, vjp, None))
        steps.append(ChainStep(operand.name, operand.label, upstream, None, broadcast.sum_to(full, shape), "matrix",
                               broadcast.describe_sum(full.shape, shape), vjp, error))
    return locals_, steps


def _complex_routing(rule: Routing, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float,
                     each_output=None, each_budget=None):
    """The complex upstream routed back as a real one is; view_as_real and
    view_as_complex by their Wirtinger coefficients (Note [complex routing]
    in derive/routing.py). A real operand keeps the real part."""
    upstreams = each_output if each_output is not None else (upstream,)
    budgets = each_budget if each_budget is not None else (upstream_budget,)
    saved = dict(arguments.saved(node), result_shape=np.shape(upstreams[0]))
    shapes = routing.complete_shapes(
        rule.forward, [(o.name, o.value.shape if o.value is not None else None) for o in node.operands],
        saved["result_shape"], saved)
    sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape in shapes]
    if routing.function_name(rule.forward) in routing.PART_FUNCTIONS:
        edges = routing.part_routes(rule.forward, shapes, saved)
        output_shapes = edges[0]
        flat = np.concatenate([np.broadcast_to(u, s).reshape(-1) for u, s in zip(upstreams, output_shapes)])
        grads = routing.part_gradients(edges, flat, sizes)
        collected = np.bincount(edges[2], minlength=int(np.sum(sizes))) if len(edges[2]) else np.zeros(1)
        rounding = budget.summation(int(np.max(collected, initial=1)))
        magnitude = np.concatenate([np.broadcast_to(np.abs(u), s).reshape(-1) for u, s in zip(upstreams, output_shapes)])
        spread = np.concatenate([np.broadcast_to(b, s).reshape(-1) for b, s in zip(budgets, output_shapes)])
        errors = [e.real for e in routing.part_gradients(edges, spread + rounding * magnitude, sizes,
                                                         weights=np.abs(edges[3]) + np.abs(edges[4]))]
        how = "each upstream element goes back to the real or imaginary part it was taken from"
        local = "∂result[k]/∂self[j] and ∂result[k]/∂conj(self[j]), from re(z) = (z + conj(z))/2, im(z) = (z - conj(z))/2i"
    else:
        numbers_ = [o.value.data if o.value is not None else None for o in node.operands]
        found = routing.routes(rule.forward, shapes, saved, numbers_)
        output_shapes = found.output_shapes
        flat = np.concatenate([np.broadcast_to(u, s).reshape(-1) for u, s in zip(upstreams, output_shapes)])
        grads = routing.complex_gradients(found, flat, sizes)
        errors = _routing_budget(found, upstreams, budgets, sizes)
        how = "each complex upstream element goes back to the element it was taken from"
        local = None
    if len(output_shapes) != len(upstreams):
        raise CannotApply(f"the forward makes {len(output_shapes)} outputs, torch's node {len(upstreams)}")
    shown = upstream if each_output is None else flat
    locals_, steps = [], []
    for operand, (_, shape), grad, error in zip(node.operands, shapes, grads, errors):
        if not operand.requires_grad:
            continue
        if operand.value is not None and not operand.value.dtype.startswith("complex"):
            grad = grad.real
        expr = formula.local_gradient(rule, operand.name) if local is None else local
        locals_.append(LocalGradient(operand.name, operand.label, cache.printed(expr), local or
                                     f"1 where result[k] was taken from {operand.name}[j], else 0"))
        steps.append(ChainStep(operand.name, operand.label, shown, None, grad.reshape(shape), "route",
                               how + ("; the upstreams of all outputs, one after another" if each_output is not None
                                      else ""), budget=error.reshape(shape)))
    return locals_, steps


def _transform(rule: Transform, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float):
    """The VJP of a DFT, dim by dim in the reverse of the forward's order:
    conj(u)·B + u·conj(A) along each, with A and B the Wirtinger derivatives
    sympy derived from the row (Note [the DFT as index notation] in
    derive/complex.py); a real operand keeps the real part."""
    saved = arguments.saved(node)
    (operand,) = node.operands
    shape = _shape_of(operand)
    ndim = len(shape)
    dims = [int(d) % ndim for d in saved["dim"]]
    order = [(d, False) for d in dims[:-1]] + [(dims[-1], bool(rule.last))]
    values = _param_values(rule, node)
    gradient = numbers(upstream).astype(np.complex128)
    error = np.asarray(upstream_budget, dtype=np.float64)
    sizes = list(np.shape(upstream))
    for d, last in reversed(order):
        K, L = sizes[d], shape[d]
        N = K if rule.signal == "result" else L
        A, B = complex_.transform_matrices(rule, last, values, K, L, N)
        along = np.moveaxis(gradient, d, -1)
        magnitude = np.abs(A) if B is None else np.abs(A) + np.abs(B)
        carried = np.moveaxis(np.broadcast_to(error, gradient.shape), d, -1) @ magnitude
        sent = along @ np.conj(A) if B is None else np.conj(along) @ B + along @ np.conj(A)
        # torch's rounding: the smaller of two bounds, a dot product's against
        # Σ|terms| and a fast transform's against the row's 2-norm
        rounding = np.minimum(budget.transform(N) * (np.abs(along) @ magnitude),
                              budget.fft(N) * np.linalg.norm(sent, axis=-1, keepdims=True))
        gradient = np.moveaxis(sent, -1, d)
        error = np.moveaxis(carried + rounding, -1, d)
        sizes[d] = L
    if not operand.value.dtype.startswith("complex"):  # r2c: a real signal
        gradient = gradient.real
    d, d_conjugate = complex_.transform_derivatives(rule, bool(rule.last))
    named = f"∂result[k]/∂self[j] = {d}; ∂result[k]/∂conj(self[j]) = {d_conjugate}; along dims {tuple(dims)}"
    vjp = "conj(G)·∂result/∂conj(self) + G·conj(∂result/∂self), summed over k, along each dim"
    locals_ = [LocalGradient(operand.name, operand.label, str(d), named)] if operand.requires_grad else []
    steps = [ChainStep(operand.name, operand.label, upstream, None, gradient, "matrix", None, vjp, error)] \
        if operand.requires_grad else []
    return locals_, steps


FAMILIES[Transform] = _transform


def _is_complex(node: Node) -> bool:
    values = [o.value for o in node.operands] + list(node.outputs)
    return any(value is not None and value.dtype.startswith("complex") for value in values)


# Note [nodes with several outputs]
# split, unbind and chunk make several outputs, and the gradient of each
# arrives on its own: upstreams[(node, 0)], upstreams[(node, 1)], ... A
# routing row routes each output's upstream back with its own map; an output
# nothing used sends back zeros, as torch does. A matrix row sums tr(Gᵀ·result)
# over its outputs, and so does an index-notation row (var_mean: G·var + G1·mean).
# Rows of other families read the first output's upstream only.
def _arrived(node: Node, upstream_of) -> Tuple[Optional[np.ndarray], Optional[Tuple[np.ndarray, ...]]]:
    """The upstream of the node's first output, and for a routing or matrix
    node with several outputs the upstream of each (Note [nodes with several
    outputs]). `upstream_of(nr)` gives an output's, None where none arrived."""
    first = upstream_of(0)
    several = isinstance(lookup(node.op), (Routing, Matrix, IndexFormula)) or node.inner is not None
    if len(node.outputs) < 2 or not several or None in node.outputs:
        return first, None
    each = [upstream_of(nr) for nr in range(len(node.outputs))]
    if all(arrived is None for arrived in each):
        return first, None
    each = tuple(np.zeros(output.shape) if arrived is None else numbers(arrived)
                 for arrived, output in zip(each, node.outputs))
    return each[0], each


def derive(graph: Graph, symbolic: bool = True, root_budgets=None, keep=None) -> Derivation:
    """Run the chain rule over the whole graph, from the graph alone.
    `root_budgets` (one per root) are the seeds' error budgets where the
    seeds are themselves derived numbers (a Function's forward graph,
    derive/function.py); by default the seeds are exact. `keep`, given,
    is handed each node's derivation and its leaves' ({position: leaf}) as
    soon as they are complete, and returns what the Derivation keeps of
    them (Note [a big array's last use] in digest.py); by default, all.

    >>> from graphexplain.model import Graph, Node, Operand, Root, Value, Leaf
    >>> x = Value.of([1.0, 2.0])
    >>> nodes = (
    ...     Node(0, "MulBackward0", "y", (Operand("self", "x", x, producer=1),
    ...          Operand("other", "3", Value.of(3.0), requires_grad=False)), (Value.of([3.0, 6.0]),)),
    ...     Node(1, "AccumulateGrad", "x", (Operand("self", "x", x),), (x,)),
    ... )
    >>> graph = Graph(nodes, (Root(0, 0, "y", nodes[0].output, np.ones(2)),), (Leaf(1, "x", x),))
    >>> derive(graph).leaves[0].grad.tolist()
    [3.0, 3.0]
    """
    upstreams: Dict[Tuple[int, int], np.ndarray] = {}
    budgets: Dict[Tuple[int, int], np.ndarray] = {}  # Note [error budget] in derive/budget.py
    missing: Dict[Tuple[int, int], List[int]] = {}  # consumers that could not send a derived gradient
    for position, root in enumerate(graph.roots):
        key = (root.node, root.output)
        seed = numbers(root.grad_output)
        upstreams[key] = upstreams.get(key, 0) + seed
        seed_budget = np.zeros(seed.shape) if root_budgets is None else np.broadcast_to(root_budgets[position], seed.shape)
        budgets[key] = budgets.get(key, 0) + seed_budget  # the seed is exact, unless derived

    complex_graph = any(_is_complex(node) for node in graph.nodes)
    formulas = leaf_formulas(graph) if symbolic and not complex_graph else {}
    leaves_at: Dict[int, List[int]] = {}  # node → the leaves it stands for, each derived with its node
    for position, leaf in enumerate(graph.leaves):
        leaves_at.setdefault(leaf.node, []).append(position)
    leaves: List[Optional[LeafDerivation]] = [None] * len(graph.leaves)
    derived: List[NodeDerivation] = []
    for node in graph.nodes:
        outputs = range(max(1, len(node.outputs)))
        missing_from = tuple(sorted({c for nr in outputs for c in missing.get((node.id, nr), ())}))
        upstream, each_output = _arrived(node, lambda nr: upstreams.get((node.id, nr)))
        upstream_budget, each_budget = _arrived(node, lambda nr: budgets.get((node.id, nr)))
        if missing_from:
            rule = lookup(node.op)
            result = _not_derived(node, None, rule.title if rule is not None else node.op, UNREACHED,
                                  "a gradient it receives could not be derived", None, missing_from)
        else:
            result = derive_node(node, upstream, each_output, upstream_budget, each_budget)
        derived.append(result)
        operands_by_name = {o.name: o for o in node.operands}
        for step in result.steps:
            operand = operands_by_name.get(step.input)
            if operand is None or operand.producer is None:
                continue
            key = (operand.producer, operand.producer_output)
            if step.downstream is None:
                missing.setdefault(key, []).append(node.id)
                continue
            previous = upstreams.get(key)
            upstreams[key] = step.downstream if previous is None else previous + step.downstream
            added = step.budget if step.budget is not None else np.zeros(np.shape(step.downstream))
            if previous is not None:  # torch adds the two in its input buffer: one more rounding
                eps = epsilon(operand.value.dtype if operand.value is not None else "float32")
                added = added + eps * (np.abs(previous) + np.abs(step.downstream))
            budgets[key] = added if previous is None else budgets[key] + added
        done = {position: _leaf(graph.leaves[position], result, upstreams, budgets, missing, formulas)
                for position in leaves_at.get(node.id, ())}
        if keep is not None:
            derived[-1], done = keep(result, done)
        for position, leaf in done.items():
            leaves[position] = leaf
        for nr in outputs:  # every consumer has sent its part: no later node reads this node's upstream
            upstreams.pop((node.id, nr), None)
            budgets.pop((node.id, nr), None)
        # from here on only `derived` and the two dicts hold this node's arrays (`keep` may have let them go)
        result = done = step = previous = added = upstream = upstream_budget = each_output = each_budget = None
    return Derivation(tuple(derived), tuple(leaves))


def _leaf(leaf, node: NodeDerivation, upstreams, budgets, missing, formulas) -> LeafDerivation:
    """What the call adds to the leaf's .grad: wholly derived, or the derived
    part and the consumers whose part is missing."""
    key = (leaf.node, 0)
    if node.status != DERIVED:
        return LeafDerivation(leaf.node, leaf.name, None, partial=upstreams.get(key),
                              missing_from=tuple(sorted(set(missing.get(key, ())))) or node.missing_from,
                              partial_budget=budgets.get(key))
    step = node.steps[0] if node.steps else None
    grad = step.downstream if step is not None else None
    error = step.budget if step is not None else None
    accumulated, accumulated_budget = grad, error
    if grad is not None and leaf.accumulates and leaf.grad_before is not None:
        accumulated = leaf.grad_before + grad
        accumulated_budget = (error if error is not None else 0) + \
            epsilon(leaf.value.dtype) * (np.abs(leaf.grad_before) + np.abs(grad))
    return LeafDerivation(leaf.node, leaf.name, grad, formulas.get(leaf.node), accumulated, error,
                          accumulated_budget)
