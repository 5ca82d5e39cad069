"""The backward pass, done again by hand: chain_step by chain_step.

Starting from the roots' seed gradients, each node (in backward order) takes
its upstream gradient — the sum of what its consumers sent back — multiplies
it by the local gradient of each operand, and sends the result downstream.
A node without a row passes torch's own numbers on, so one unknown op
leaves the rest of the explanation intact.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import sympy as sp

from ..model import Graph, Node, Operand
from ..results import ChainStep, Derivation, LeafDerivation, LocalGradient, NO_RULE, NodeDerivation
from ..rules import lookup
from ..rules.kinds import Matrix, NotDifferentiable, Pointwise, Reduction, Routing, Rule
from . import arguments, broadcast, formula, routing
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
            raise CannotApply(f"no value for {missing.args[0]}") from None
        full = np.broadcast_to(upstream, np.broadcast_shapes(upstream.shape, local.shape)) * local
        shape = _shape_of(operand)
        downstream = broadcast.sum_to(full, shape)
        locals_.append(_local_gradient_record(rule, node, operand, expr, local))
        steps.append(ChainStep(
            operand.name, operand.label, upstream, local, downstream, "multiply",
            broadcast.describe_sum(full.shape, shape),
        ))
    return locals_, steps


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


def _routing(rule: Routing, node: Node, upstream: np.ndarray):
    (operand,) = [o for o in node.operands if o.name == "self"]
    shape = _shape_of(operand)
    saved = dict(arguments.saved(node), result_shape=upstream.shape)
    index_map = routing.index_map(rule.forward, shape, saved)
    downstream = routing.route_back(index_map, upstream, shape)
    expr = formula.local_gradient(rule, operand.name)
    local = LocalGradient(operand.name, operand.label, str(expr),
                          "1 where result[k] was taken from self[j], else 0")
    step = ChainStep(operand.name, operand.label, upstream, None, downstream, "route",
                     "each upstream element goes back to the element it was taken from")
    return [local], [step]


def _matrix(rule: Matrix, node: Node, upstream: np.ndarray):
    shapes = tuple(_shape_of(o) for o in node.operands)
    matrix_shapes = formula.matrix_shapes(rule, shapes, upstream.shape)
    stack = formula.stack_shape(upstream.shape)
    result_shape = stack + formula.matrix_forward(rule, matrix_shapes).shape
    values = _operand_values(rule, node)
    inputs = [upstream.reshape(result_shape)]
    inputs += [formula.as_matrix(values[name], shape, stack) if name in values else None
               for name, shape in zip(rule.inputs, matrix_shapes)]
    inputs += [values.get(name) for name in rule.params]
    locals_, steps = [], []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        expr, function = formula.vector_jacobian_product(rule, operand.name, matrix_shapes)
        needed = {str(s) for s in expr.free_symbols}
        if any(value is None and name in needed
               for name, value in zip(rule.inputs + rule.params, inputs[1:])):
            raise CannotApply(f"a value needed by ∂L/∂{operand.name} = {expr} is unknown")
        full = formula.over_stack(function, stack, inputs)
        shape = _shape_of(operand)
        if full.size == int(np.prod(shape, dtype=np.int64)):
            downstream = full.reshape(shape)
            summed = None
        else:
            downstream = broadcast.sum_to(full, shape)
            summed = broadcast.describe_sum(full.shape, shape)
        record = _local_gradient_record(rule, node, operand, expr, None)
        locals_.append(record)
        steps.append(ChainStep(operand.name, operand.label, upstream, None, downstream, "matrix",
                               summed, record.named))
    return locals_, steps


def _forward(rule: Rule, node: Node, result_shape) -> sp.Basic:
    """The forward formula as the walkthrough shows it."""
    if isinstance(rule, Matrix):
        shapes = tuple(_shape_of(o) for o in node.operands)
        return formula.matrix_forward(rule, formula.matrix_shapes(rule, shapes, result_shape))
    if isinstance(rule, Reduction):
        mode = arguments.reduction_mode(rule, node)
        term = formula.forward(rule)
        return term if mode == "none" else sp.Function(mode)(term)
    return formula.forward(rule)


FAMILIES = {Pointwise: _pointwise, Reduction: _reduction, Routing: _routing, Matrix: _matrix}


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


def derive_node(node: Node, upstream: Optional[np.ndarray]) -> NodeDerivation:
    """Apply the node's row to its upstream gradient."""
    rule = lookup(node.op)
    if rule is None:
        return _with_torch_numbers(node, upstream, node.op, "no symbolic rule for this op")
    if isinstance(rule, NotDifferentiable):
        return _with_torch_numbers(node, upstream, rule.title, "this op has no gradient")
    if upstream is None:
        return _with_torch_numbers(node, upstream, rule.title, "no upstream gradient reached it")
    try:
        locals_, steps = FAMILIES[type(rule)](rule, node, np.asarray(upstream, dtype=np.float64))
    except (CannotApply, ValueError, IndexError, TypeError) as problem:
        return _with_torch_numbers(node, upstream, rule.title, f"the rule could not be applied: {problem}")
    forward_named = rename(_forward(rule, node, np.shape(upstream)), display_names(rule, node))
    return NodeDerivation(
        node.id, DERIVED, rule.title, rule.forward, show(forward_named),
        upstream, tuple(locals_), tuple(steps),
    )


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
        upstream = upstreams.get((node.id, 0))
        result = derive_node(node, upstream)
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
