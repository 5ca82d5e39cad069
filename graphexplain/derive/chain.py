"""The backward pass, done again by hand: chain_step by chain_step.

Starting from the roots' seed gradients, each node (in backward order) takes
its upstream gradient — the sum of what its consumers sent back — multiplies
it by the local gradient of each operand, and sends the result downstream.
A node without a row passes torch's own numbers on, so one unknown op
leaves the rest of the explanation intact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import sympy as sp

from ..model import Graph, Node, Operand
from ..results import ChainStep, Derivation, LeafDerivation, LocalGradient, NO_RULE, NodeDerivation
from ..rules import lookup
from ..rules.kinds import IndexFormula, Matrix, NotDifferentiable, Pointwise, Reduction, Routing, Rule
from . import arguments, broadcast, formula, indexed, routing
from .naming import display_names, rename, show
from .symbolic import leaf_formulas

DERIVED = "derived"


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
    named = rename(expr, display_names(rule, node, count))
    return LocalGradient(operand.name, operand.label, str(expr), show(named), value)


# --- one function per family of rows ------------------------------------------


def _pointwise(rule: Pointwise, node: Node, upstream: np.ndarray):
    values = _operand_values(rule, node)
    locals_, steps = [], []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        expr = formula.local_gradient(rule, operand.name)
        try:
            local = formula.evaluate(expr, values)
        except KeyError as missing:
            expr, local = _in_result(rule, operand.name, values, missing.args[0])
        full = np.broadcast_to(upstream, np.broadcast_shapes(upstream.shape, local.shape)) * local
        if expr.is_zero:
            # Note [a local gradient of 0]: the input does not move the result
            # (floor, sign), so nothing flows back, even from an upstream that
            # is inf or nan (where 0·upstream would be nan); torch sends zeros.
            full = np.zeros_like(full)
        shape = _shape_of(operand)
        downstream = broadcast.sum_to(full, shape)
        locals_.append(_local_gradient_record(rule, node, operand, expr, local))
        steps.append(ChainStep(
            operand.name, operand.label, upstream, local, downstream, "multiply",
            broadcast.describe_sum(full.shape, shape),
        ))
    return locals_, steps


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


def _reduction(rule: Reduction, node: Node, upstream: np.ndarray):
    mode = arguments.reduction_mode(rule, node)
    values = _operand_values(rule, node)
    shapes = [_shape_of(o) for o in node.operands]
    elementwise = np.broadcast_shapes(*shapes)
    dims, keepdim = arguments.reduced(rule, node, len(elementwise))
    count = int(np.prod([elementwise[d] for d in dims], dtype=np.int64)) if dims else 1
    values[formula.COUNT] = float(count)
    spread = broadcast.spread(upstream, elementwise, dims, keepdim) if mode != "none" else upstream
    locals_, steps = [], []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        expr = formula.local_gradient(rule, operand.name, mode)
        try:
            local = formula.evaluate(expr, values)
        except KeyError as missing:
            raise CannotApply(f"no value for {missing.args[0]}") from None
        full = np.broadcast_to(spread, elementwise) * local
        shape = _shape_of(operand)
        downstream = broadcast.sum_to(full, shape)
        how = broadcast.describe_spread(upstream.shape, elementwise)
        summed = broadcast.describe_sum(full.shape, shape)
        locals_.append(_local_gradient_record(rule, node, operand, expr, local, count))
        steps.append(ChainStep(
            operand.name, operand.label, upstream, local, downstream, "spread",
            "; ".join(part for part in (how, summed) if part) or None,
        ))
    return locals_, steps


def _routing(rule: Routing, node: Node, upstream: np.ndarray, each_output=None):
    """Route every output's upstream back to every operand (Note [positions
    of several inputs and outputs] in derive/routing.py)."""
    upstreams = each_output if each_output is not None else (upstream,)
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
    flat = np.concatenate([np.broadcast_to(u, s).reshape(-1) for u, s in zip(upstreams, found.output_shapes)])
    shown = upstream if each_output is None else flat
    grads = routing.gradients(found, flat, [int(np.prod(shape, dtype=np.int64)) for _, shape in shapes])
    weighted = found.weights is not None
    locals_, steps = [], []
    for operand, (_, shape), grad in zip(node.operands, shapes, grads):
        if not operand.requires_grad:
            continue
        expr = formula.local_gradient(rule, operand.name)
        locals_.append(LocalGradient(operand.name, operand.label, str(expr), (
            f"w[k, j]: the share of {operand.name}[j] in result[k], else 0" if weighted else
            f"1 where result[k] was taken from {operand.name}[j], else 0")))
        steps.append(ChainStep(operand.name, operand.label, shown, None, grad.reshape(shape), "route", (
            "each upstream element goes back, times its share, to the elements it was made of" if weighted else
            "each upstream element goes back to the element it was taken from")
            + ("; the upstreams of all outputs, one after another" if each_output is not None else "")))
    return locals_, steps


def _matrix(rule: Matrix, node: Node, upstream: np.ndarray, each_output=None):
    """∂L/∂X = ∂ tr(Gᵀ·result)/∂X, by sympy, for each matrix of the stack
    (Note [operands as matrices] in derive/formula.py)."""
    try:
        return _matrix_steps(rule, node, upstream, each_output)
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


def _matrix_steps(rule: Matrix, node: Node, upstream: np.ndarray, each_output=None):
    upstreams = each_output if each_output is not None else (upstream,)
    call = _matrix_call(rule, node, upstreams)
    shown = upstream if each_output is None else np.concatenate([np.reshape(u, -1) for u in upstreams])
    locals_, steps = [], []
    for operand, kind, matrix_shape in zip(node.operands, call.kinds, call.matrix_shapes):
        if not operand.requires_grad:
            continue
        expr, function = formula.vector_jacobian_product(rule, operand.name, call.matrix_shapes, call.choices)
        if any(call.known.get(str(symbol), 0) is None for symbol in expr.free_symbols):
            raise CannotApply(f"a value needed by ∂L/∂{operand.name} = {expr} is unknown")
        shape = _shape_of(operand)
        full = formula.over_stack(function, call.stack, call.inputs, matrix_shape, call.ranks)
        full = formula.from_last(formula.laid_back(full, kind, formula.moved_shape(shape, call.along)), call.along)
        if full.size == int(np.prod(shape, dtype=np.int64)):
            downstream = full.reshape(shape)
            summed = None
        else:
            downstream = broadcast.sum_to(full, shape)
            summed = broadcast.describe_sum(full.shape, shape)
        record = _local_gradient_record(rule, node, operand, expr, None)
        locals_.append(record)
        steps.append(ChainStep(operand.name, operand.label, shown, None, downstream, "matrix",
                               summed, record.named))
    return locals_, steps


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
    scale = max(1.0, float(np.max(np.abs(result), initial=0.0)))
    loose = 1e-6 if dtype == "float64" else 1e-2
    if not np.allclose(ours, result, rtol=loose, atol=loose * scale, equal_nan=True):
        raise CannotApply(f"torch's result is not {rule.forward} of these operands")


def _require_full_rank(rule: Matrix, values: Dict[str, object]) -> None:
    """A closed form that holds at full rank only (pinv's) leaves other nodes to torch."""
    for name in rule.full_rank:
        value = values.get(name)
        if value is None:
            raise CannotApply(f"{name} is unknown, and the formula holds at full rank only")
        value = np.asarray(value, dtype=np.float64)
        if value.size and np.any(np.linalg.matrix_rank(value) < min(value.shape[-2:])):
            raise CannotApply(f"{name} is not of full rank, and the formula holds at full rank only")


def _indexed(rule: IndexFormula, node: Node, upstream: np.ndarray, each_output=None):
    """∂L/∂x[j] = ∂/∂x[j] Σ_k G[k]·result[k], by sympy, evaluated along the
    op's axis (Note [index notation] in derive/indexed.py)."""
    upstreams = each_output if each_output is not None else (upstream,)
    shown = upstream if each_output is None else np.concatenate([np.reshape(u, -1) for u in upstreams])
    operands = {operand.name: operand for operand in node.operands}
    locals_, steps = [], []
    for gradient in indexed.gradients(rule, node, upstreams):
        operand = operands[gradient.name]
        record = LocalGradient(operand.name, operand.label, str(gradient.expr),
                               indexed.named(rule, node, gradient.expr, gradient.count))
        locals_.append(record)
        # shown as a matrix row's is: the formula of G, then its numbers
        steps.append(ChainStep(operand.name, operand.label, shown, None, gradient.downstream, "matrix",
                               gradient.summed, record.named))
    return locals_, steps


def _forward(rule: Rule, node: Node, result_shape) -> sp.Basic:
    """The forward formula as the walkthrough shows it."""
    if isinstance(rule, IndexFormula):
        return indexed.shown_forward(rule, node)
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


def _with_torch_numbers(node: Node, upstream: Optional[np.ndarray], title: str, note: str) -> NodeDerivation:
    """A node explained by torch's own numbers: no rule, or a rule that
    could not be applied. Its downstream gradients are torch's."""
    steps = []
    for index, operand in enumerate(node.operands):
        if not operand.requires_grad:
            continue
        torch_number = node.torch_downstream[index] if index < len(node.torch_downstream) else None
        steps.append(ChainStep(operand.name, operand.label, upstream, None, torch_number, "torch"))
    if node.is_leaf and upstream is not None:
        steps = [ChainStep("self", node.name, upstream, None, upstream, "torch")]
    return NodeDerivation(node.id, NO_RULE, title, "", "", upstream, (), tuple(steps), note)


def derive_node(node: Node, upstream: Optional[np.ndarray], each_output=None) -> NodeDerivation:
    """Apply the node's row to its upstream gradient (`each_output`: every
    output's, for a routing node with several; Note [nodes with several outputs])."""
    rule = lookup(node.op)
    if rule is None:
        return _with_torch_numbers(node, upstream, node.op, "no symbolic rule for this op")
    if isinstance(rule, NotDifferentiable):
        return _with_torch_numbers(node, upstream, rule.title, "this op has no gradient")
    if upstream is None:
        return _with_torch_numbers(node, upstream, rule.title, "no upstream gradient reached it")
    try:
        several = {"each_output": each_output} if each_output is not None else {}
        locals_, steps = FAMILIES[type(rule)](rule, node, np.asarray(upstream, dtype=np.float64), **several)
    except (CannotApply, ValueError, IndexError, TypeError) as problem:
        return _with_torch_numbers(node, upstream, rule.title, f"the rule could not be applied: {problem}")
    forward_named = rename(_forward(rule, node, np.shape(upstream)), display_names(rule, node))
    return NodeDerivation(
        node.id, DERIVED, rule.title, rule.forward, show(forward_named),
        upstream, tuple(locals_), tuple(steps),
    )


# Note [nodes with several outputs]
# split, unbind and chunk make several outputs, and the gradient of each
# arrives on its own: upstreams[(node, 0)], upstreams[(node, 1)], ... A
# routing row routes each output's upstream back with its own map; an output
# nothing used sends back zeros, as torch does. A matrix row sums tr(Gᵀ·result)
# over its outputs, and so does an index-notation row (var_mean: G·var + G1·mean).
# Rows of other families read the first output's upstream only.
def _arrived(node: Node, upstream_of) -> Tuple[Optional[np.ndarray], Optional[Tuple[np.ndarray, ...]]]:
    """The upstream of the node's first output, and for a routing or matrix
    node with several outputs the upstream of each (Note [nodes with several outputs])."""
    first = upstream_of(0)
    several = isinstance(lookup(node.op), (Routing, Matrix, IndexFormula))
    if len(node.outputs) < 2 or not several or None in node.outputs:
        return first, None
    each = [upstream_of(nr) for nr in range(len(node.outputs))]
    if all(arrived is None for arrived in each):
        return first, None
    each = tuple(np.zeros(output.shape) if arrived is None else np.asarray(arrived, dtype=np.float64)
                 for arrived, output in zip(each, node.outputs))
    return each[0], each


def _torch_upstream(node: Node, nr: int) -> Optional[np.ndarray]:
    return node.torch_upstream[nr] if nr < len(node.torch_upstream) else None


def derive(graph: Graph, symbolic: bool = True) -> Derivation:
    """Run the chain rule over the whole graph.

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
    for root in graph.roots:
        key = (root.node, root.output)
        upstreams[key] = upstreams.get(key, 0) + np.asarray(root.grad_output, dtype=np.float64)

    derived: List[NodeDerivation] = []
    for node in graph.nodes:
        upstream, each_output = _arrived(node, lambda nr: upstreams.get((node.id, nr)))
        borrowed = False
        if upstream is None:
            # Note [borrowing torch's upstream]: nothing derived reached this
            # node (an op above it has no rule and torch passed it nothing we
            # could route). Its own step can still be derived and checked,
            # starting from the gradient torch gave it.
            upstream, each_output = _arrived(node, lambda nr: _torch_upstream(node, nr))
            borrowed = upstream is not None
        result = derive_node(node, upstream, each_output)
        if borrowed:
            result = replace(result, upstream_from_torch=True)
        derived.append(result)
        operands_by_name = {o.name: o for o in node.operands}
        for step in result.steps:
            operand = operands_by_name.get(step.input)
            if operand is None or operand.producer is None or step.downstream is None:
                continue
            key = (operand.producer, operand.producer_output)
            upstreams[key] = upstreams.get(key, 0) + step.downstream

    formulas = leaf_formulas(graph) if symbolic else {}
    leaves = []
    for leaf in graph.leaves:
        steps = derived[leaf.node].steps
        grad = steps[0].downstream if steps else None
        accumulated = grad
        if grad is not None and leaf.accumulates and leaf.grad_before is not None:
            accumulated = leaf.grad_before + grad
        leaves.append(LeafDerivation(leaf.node, leaf.name, grad, formulas.get(leaf.node), accumulated))
    return Derivation(tuple(derived), tuple(leaves))
