"""Filling in values torch did not keep, by running the rows' forward formulas.

Torch keeps only what backward needs (Note [why saved tensors may be None]
in capture/snapshot.py), and nodes made inside a call (F.linear's transpose)
have no recorded output. Going from the leaves to the root, a node whose
output is unknown but whose operands are known gets its output from its
row's forward formula; its consumers then see that value as their operand.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np

from ..model import Graph, Node, Value, frozen_array
from ..rules import lookup
from ..rules.kinds import Matrix, Pointwise, Reduction, Routing
from . import arguments, formula, routing


def _known(value: Optional[Value]) -> bool:
    return value is not None and value.known


def forward_value(node: Node) -> Optional[np.ndarray]:
    """The node's output computed from its row, or None if it cannot be."""
    rule = lookup(node.op)
    if rule is None or node.output is None or not all(_known(o.value) for o in node.operands):
        return None
    values: Dict[str, object] = dict(rule.defaults)
    params = arguments.saved(node)
    values.update({k: np.asarray(v, dtype=np.float64) for k, v in params.items()
                   if k in rule.params and isinstance(v, (int, float, np.ndarray)) and not isinstance(v, bool)})
    values.update({o.name: o.value.data for o in node.operands})
    shape = node.output.shape
    try:
        if isinstance(rule, Pointwise):
            return np.broadcast_to(formula.evaluate(formula.forward(rule), values), shape).copy()
        if isinstance(rule, Reduction):
            return _reduce(rule, node, values, shape)
        if isinstance(rule, Routing):
            (source,) = [o for o in node.operands if o.name == "self"]
            index_map = routing.index_map(rule.forward, source.value.shape, dict(params, result_shape=shape))
            return np.asarray(source.value.data).reshape(-1)[index_map].reshape(shape)
        if isinstance(rule, Matrix):
            return _matrix(rule, node, values, shape)
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    return None


def _reduce(rule: Reduction, node: Node, values, shape) -> np.ndarray:
    mode = arguments.reduction_mode(rule, node)
    elementwise = np.broadcast_shapes(*(o.value.shape for o in node.operands))
    values[formula.COUNT] = 1.0
    term = np.broadcast_to(formula.evaluate(formula.forward(rule), values), elementwise)
    if mode == "none":
        return term.copy()
    dims, keepdim = arguments.reduced(rule, node, len(elementwise))
    reduced = term.sum(axis=dims, keepdims=keepdim) if mode == "sum" else term.mean(axis=dims, keepdims=keepdim)
    return np.asarray(reduced).reshape(shape)


def _matrix(rule: Matrix, node: Node, values, shape) -> np.ndarray:
    shapes = tuple(o.value.shape for o in node.operands)
    matrix_shapes = formula.matrix_shapes(rule, shapes, shape)
    stack = formula.stack_shape(shape)
    function = formula.matrix_forward_function(rule, matrix_shapes)
    inputs = [formula.as_matrix(values[name], s, stack) for name, s in zip(rule.inputs, matrix_shapes)]
    inputs += [values.get(name) for name in rule.params]
    return formula.over_stack(function, stack, inputs).reshape(shape)


def complete(graph: Graph) -> Graph:
    """The same graph with every value its rows can compute filled in."""
    nodes = list(graph.nodes)
    outputs: Dict[Tuple[int, int], Value] = {}
    for node in reversed(nodes):  # producers before consumers
        operands = tuple(
            replace(o, value=outputs[(o.producer, o.producer_output)])
            if o.producer is not None and not _known(o.value) and (o.producer, o.producer_output) in outputs
            else o
            for o in node.operands
        )
        if any(new is not old for new, old in zip(operands, node.operands)):
            node = replace(node, operands=operands)  # (Value equality ignores data: compare by identity)
        if node.output is not None and not node.output.known:
            computed = forward_value(node)
            if computed is not None:
                output = replace(node.output, data=frozen_array(computed))
                node = replace(node, outputs=(output,) + tuple(node.outputs[1:]))
        for nr, output in enumerate(node.outputs):
            if _known(output):
                outputs[(node.id, nr)] = output
        nodes[node.id] = node
    return replace(graph, nodes=tuple(nodes))
