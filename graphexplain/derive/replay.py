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
from ..rules.kinds import IndexFormula, Matrix, Pointwise, Reduction, Routing
from . import arguments, formula, indexed, routing


def _known(value: Optional[Value]) -> bool:
    return value is not None and value.known


def forward_value(node: Node) -> Optional[np.ndarray]:
    """The node's output computed from its row, or None if it cannot be."""
    rule = lookup(node.op)
    if rule is None or node.output is None or not all(_known(o.value) for o in node.operands):
        return None
    if any(np.iscomplexobj(o.value.data) for o in node.operands) or node.output.dtype.startswith("complex"):
        return None  # the rows' forwards are evaluated in float64 (Note [complex gradients] in derive/complex.py)
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
        if isinstance(rule, Routing):  # the forward run on the numbers themselves
            made = routing.replay(rule.forward, [(o.name, o.value.data) for o in node.operands],
                                  dict(params, result_shape=shape))
            if len(made) > 1:  # split, unbind: every output (Note [nodes with several outputs])
                return tuple(np.asarray(m, dtype=np.float64) for m in made) if len(made) == len(node.outputs) else None
            return np.asarray(made[0], dtype=np.float64).reshape(shape)
        if isinstance(rule, Matrix):
            return _matrix(rule, node, values, shape)
        if isinstance(rule, IndexFormula):
            return np.asarray(indexed.forward_value(rule, node), dtype=np.float64).reshape(shape)
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


def _matrix_outputs(rule: Matrix, node: Node, values, shape) -> np.ndarray:
    """The first output of a matrix row, for each matrix of the stack."""
    along = formula.vector_dim(rule, arguments.saved(node), len(shape))
    shapes = tuple(formula.moved_shape(o.value.shape, along) for o in node.operands)
    matrix_shapes = formula.matrix_shapes(rule, shapes, formula.moved_shape(shape, along))
    stack = formula.stack_shape(rule, shapes)
    choices = formula.choices_of(rule, arguments.saved(node))
    forward_function = formula.matrix_forward_function(rule, matrix_shapes, choices)
    inputs = [formula.laid_out(formula.to_last(values[name], along), formula.layout(rule, name, given), s, stack)
              for name, given, s in zip(rule.inputs, shapes, matrix_shapes)]
    params = [values.get(name) for name in rule.params]
    constants = formula.constant_values(rule, matrix_shapes, choices, values)
    ranks = [2] * len(inputs) + [np.ndim(p) for p in params] + [2] * len(constants)
    first = tuple(getattr(formula.matrix_outputs(rule, matrix_shapes, choices)[0], "shape", ()))
    first_output = formula.over_stack(lambda *a: forward_function(*a)[0], stack, inputs + params + constants, first,
                                      ranks)
    return formula.from_last(first_output.reshape(formula.moved_shape(shape, along)), along)


def _matrix(rule: Matrix, node: Node, values, shape) -> np.ndarray:
    try:
        return _matrix_outputs(rule, node, values, shape)
    except (NotImplementedError, RecursionError) as problem:  # a formula sympy cannot turn into numpy
        raise ValueError(str(problem)) from None


# Note [a replayed view shares its operand's numbers]
# A view, a reshape, a transpose or a select replayed on an operand's
# numbers is a numpy view of them; copied to be frozen, every one of a
# transformer's head splits and merges became a float64 array of its own
# (720 MB of 2.7 GB on a 4-layer encoder over 32×128 tokens). An operand's
# numbers are read-only already, so a view of them is kept as a read-only
# view: the same numbers, held once.
def _frozen(made, node: Node) -> np.ndarray:
    """`made` as a read-only float64 array: a view where it is one of an operand's read-only numbers."""
    if isinstance(made, np.ndarray) and made.dtype == np.float64 and made.base is not None and any(
            _known(o.value) and isinstance(o.value.data, np.ndarray) and not o.value.data.flags.writeable
            and np.may_share_memory(made, o.value.data) for o in node.operands):
        view = made.view()
        view.flags.writeable = False
        return view
    return frozen_array(made)


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
            if isinstance(computed, tuple):  # a routing node's several outputs
                node = replace(node, outputs=tuple(
                    output if output is None or output.known else
                    replace(output, data=_frozen(made, node), replayed=True)
                    for output, made in zip(node.outputs, computed)))
            elif computed is not None:
                output = replace(node.output, data=_frozen(computed, node), replayed=True)
                node = replace(node, outputs=(output,) + tuple(node.outputs[1:]))
        for nr, output in enumerate(node.outputs):
            if _known(output):
                outputs[(node.id, nr)] = output
        nodes[node.id] = node
    return replace(graph, nodes=tuple(nodes))
