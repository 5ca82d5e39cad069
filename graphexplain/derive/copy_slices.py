"""The chain rule through a write into a view: torch's CopySlices node.

The node's forward is "the base, with the region R a view of it reads
replaced by fn(view, ...)" (rules/views.py). So, with G the upstream:

- the base gets G outside R, and inside R fn's gradient for its self,
  applied to G[R] (none for a copy or a fill: the old elements are gone);
- fn's other operands (the v of ``x[:, 0] = v``) get fn's gradient for
  them, applied to G[R].

R is the as_strided geometry the recorder noted, run on the base's
positions (routing's as_strided, Note [positions of several inputs and
outputs] in derive/routing.py): R[i] is the base element the view's
element i is. fn's gradients come from fn's own row, through
`chain.derive_node` on a node built for fn: its self is the view's old
numbers, its other operands this node's, upstream G[R]. Nothing comes from
torch's backward.

    >>> region((3, 4), {"size": (3,), "stride": (4,), "storage_offset": 1, "base_geometry": (0, (4, 1))}).tolist()
    [1, 5, 9]
"""

from __future__ import annotations

import ast
from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np

from ..model import Node, Operand, Value, numbers
from ..results import DERIVED, NO_RULE, NOT_DERIVED, UNREACHED, ChainStep, LocalGradient, NodeDerivation
from ..rules import lookup
from . import routing

NOT_RECORDED = ("the region written cannot be recovered: torch's CopySlices node does not say where its view "
                "lies in the base, and no recorder saw the write (build the graph under "
                "graphexplain.recording(), or run the script with graphexplain trace)")


def region(base_shape: Tuple[int, ...], params) -> np.ndarray:
    """The base element each element of the view is: as_strided on the
    base's positions."""
    return np.asarray(routing.FUNCTIONS["as_strided"](
        routing.positions(tuple(base_shape)), tuple(params["size"]), tuple(params["stride"]),
        int(params["storage_offset"]), (int(params["base_geometry"][0]), tuple(params["base_geometry"][1]))))


def _value(array, shape, dtype) -> Value:
    if array is None:
        return Value(tuple(shape), dtype, None)
    return Value(tuple(np.shape(array)), dtype, np.asarray(array, dtype=np.float64))


def wrapped_node(node: Node, view_shape: Tuple[int, ...]) -> Optional[Node]:
    """fn's node, as chain.derive_node takes it: self is the view before the
    write, the other operands are this node's after its base."""
    params = node.params
    rule = lookup(params.get("wrapped", ""))
    if rule is None or len(rule.inputs) != len(node.operands):
        return None
    saved: Dict[str, object] = dict(params.get("wrapped_saved") or {})
    dtype = node.output.dtype if node.output is not None else "float64"
    before = params.get("view_before")
    if before is None:
        before = saved.get("self")
    base = node.operands[0]
    operands = [Operand("self", f"{base.label}[R]", _value(before, view_shape, dtype), None, 0, True)]
    for word, operand in zip(rule.inputs[1:], node.operands[1:]):
        value = operand.value
        if (value is None or not value.known) and saved.get(word) is not None:
            value = Value.of(np.asarray(saved[word], dtype=np.float64))
        operands.append(replace(operand, name=word, value=value))
    inner_params = dict(params.get("wrapped_params") or {})
    for name in rule.params:  # a number fn took that torch saved as a tensor (fill's value)
        if inner_params.get(name) is None and saved.get(name) is not None:
            inner_params[name] = saved[name]
    after = params.get("view_after")
    output = _value(after, view_shape, dtype)
    return Node(node.id, rule.op, node.name, tuple(operands), (output,), inner_params, node.source, node.module)


_LONG = 24  # a label longer than this (an inner node's made-up name) is shown by its word


def _word(operand: Operand) -> str:
    return operand.label if len(operand.label) <= _LONG else operand.name


def shown_forward(node: Node, wrapped: str) -> str:
    """"y with y[:, 0] replaced by v", from the line that wrote it where
    known; else the view's geometry and fn's operands."""
    base, written, value = _from_source(node)
    if written is None:
        base = _word(node.operands[0]) if node.operands else "self"
        written = f"its elements at as_strided({tuple(node.params['size'])}, {tuple(node.params['stride'])}, " \
                  f"{node.params['storage_offset']})"
        value = f"{wrapped}({', '.join(['self[R]'] + [_word(o) for o in node.operands[1:]])})"
    return f"{base} with {written} replaced by {value}"


def _root_name(expression: ast.expr) -> Optional[str]:
    while isinstance(expression, (ast.Subscript, ast.Attribute, ast.Call)):
        expression = expression.func if isinstance(expression, ast.Call) else expression.value
    return expression.id if isinstance(expression, ast.Name) else None


def _from_source(node: Node) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(the base, the view written, what it was written with) as the line
    says: `y`, `y[:, 0]` and `v` for ``y[:, 0] = v``; `y`, `y[:, 1:]` and
    `y[:, 1:].mul(2)` for ``y[:, 1:].mul_(2)``."""
    source = node.source
    for text in (source.expr, source.code) if source is not None else ():
        try:
            tree = ast.parse(text.strip()) if text else None
        except SyntaxError:
            continue
        if tree is None or len(tree.body) != 1:
            continue
        statement = tree.body[0]
        view = value = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and \
                isinstance(statement.targets[0], ast.Subscript):
            view, value = statement.targets[0], ast.unparse(statement.value)
        elif isinstance(statement, ast.AugAssign):
            view = statement.target
            value = f"{ast.unparse(view)} {_OPERATORS.get(type(statement.op), '?')} {ast.unparse(statement.value)}"
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) and \
                isinstance(statement.value.func, ast.Attribute) and statement.value.func.attr.endswith("_"):
            call = statement.value
            view = call.func.value
            value = ast.unparse(ast.Call(ast.Attribute(view, call.func.attr[:-1], ast.Load()), call.args,
                                         call.keywords))
        if view is not None:
            base = _root_name(view) or (node.operands[0].label if node.operands else "self")
            return base, ast.unparse(view), value
    return None, None, None


_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


def derive_node(node: Node, upstream: Optional[np.ndarray], upstream_budget=None) -> NodeDerivation:
    """The CopySlices node's steps (see the module's docstring)."""
    from . import chain  # chain dispatches here: imported when first used

    rule = lookup(node.op)
    if upstream is None:
        return chain._not_derived(node, upstream, rule.title, UNREACHED, "no derived gradient reached it")
    if "size" not in node.params:
        return chain._not_derived(node, upstream, rule.title, NO_RULE, NOT_RECORDED, upstream_budget)
    wrapped = node.params.get("wrapped")
    if wrapped is None or lookup(wrapped) is None:
        words = f"the op written into the view ({wrapped}) has no symbolic rule" if wrapped else \
            "the op written into the view could not be run again to tell which it is"
        return chain._not_derived(node, upstream, rule.title, NO_RULE, words, upstream_budget)
    if np.iscomplexobj(upstream) or chain._is_complex(node):
        return chain._not_derived(node, upstream, rule.title, NOT_DERIVED,
                                  "complex numbers: this row is not derived for them yet", upstream_budget)
    upstream = numbers(upstream)
    upstream_budget = np.zeros(upstream.shape) if upstream_budget is None else \
        np.broadcast_to(np.asarray(upstream_budget, dtype=np.float64), upstream.shape)
    try:
        where = region(upstream.shape, node.params)
    except (ValueError, IndexError, TypeError, KeyError) as problem:
        return chain._not_derived(node, upstream, rule.title, NO_RULE,
                                  f"the region written cannot be recovered: {problem}", upstream_budget)
    inner = wrapped_node(node, where.shape)
    if inner is None:
        return chain._not_derived(node, upstream, rule.title, NO_RULE,
                                  f"the operands of {wrapped} do not line up with the node's", upstream_budget)
    flat, flat_budget = upstream.reshape(-1), upstream_budget.reshape(-1)
    inside = chain.derive_node(inner, flat[where], upstream_budget=flat_budget[where])
    if inside.status != DERIVED:
        return chain._not_derived(node, upstream, rule.title, inside.status,
                                  f"the op written into the view, {inner.op}: {inside.note}", upstream_budget)
    by_word = {step.input: step for step in inside.steps}
    base_grad, base_budget = flat.copy(), flat_budget.copy()
    written = by_word.get("self")
    base_grad[where.reshape(-1)] = 0.0 if written is None else np.asarray(written.downstream).reshape(-1)
    base_budget[where.reshape(-1)] = 0.0 if written is None or written.budget is None else \
        np.asarray(written.budget).reshape(-1)
    base = node.operands[0]
    steps, locals_ = [], []
    if base.requires_grad:
        locals_.append(LocalGradient("self", base.label, "1 outside R; inside R, fn's gradient for its self", (
            f"1 where {base.label}'s element is not written, else {inner.op}'s gradient for the old element")))
        steps.append(ChainStep("self", base.label, upstream, None, base_grad.reshape(upstream.shape), "route",
                               f"upstream outside the region written; inside it, {inner.op}'s gradient for the "
                               f"view's old elements", budget=base_budget.reshape(upstream.shape)))
    for operand, word in zip(node.operands[1:], [o.name for o in inner.operands[1:]]):
        step = by_word.get(word)
        if step is None or not operand.requires_grad:
            continue
        steps.append(replace(step, input=operand.name, label=operand.label,
                             broadcast="; ".join(part for part in ("upstream[R], the region written", step.broadcast)
                                                 if part)))
    locals_.extend(replace(local, input=operand.name) for local in inside.local_gradients
                   for operand, o in zip(node.operands[1:], inner.operands[1:]) if local.input == o.name)
    title = lookup(inner.op).title
    return NodeDerivation(node.id, DERIVED, f"{rule.title} ({title})", rule.forward, shown_forward(node, inner.op),
                          upstream, tuple(locals_), tuple(steps), upstream_budget=upstream_budget)
