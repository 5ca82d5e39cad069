"""The explanation as JSON-ready dicts. The field names are documented in
docs/json.md; numbers are lists of floats (nested like the tensor), rounded
to 10 significant digits so the output is the same on every run."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..notation import shorten

SCHEMA = "graphexplain/1"


def numbers(data) -> Any:
    if data is None:
        return None
    array = np.asarray(data)
    if np.iscomplexobj(array):  # complex elements as text: "1.5+2j"
        rounded = [f"{complex(v).real:.10g}{complex(v).imag:+.10g}j" for v in array.reshape(-1)]
        return np.array(rounded, dtype=object).reshape(array.shape).tolist() if array.ndim else rounded[0]
    array = array.astype(np.float64)
    rounded = [float(f"{v:.10g}") if np.isfinite(v) else str(v) for v in array.reshape(-1)]
    return np.array(rounded, dtype=object).reshape(array.shape).tolist() if array.ndim else rounded[0]


def _source(source) -> Optional[Dict[str, Any]]:
    if source is None:
        return None
    return {"file": source.file, "line": source.line, "code": source.code, "expr": source.expr}


def _check(check) -> Dict[str, Any]:
    data = {"what": check.what, "status": check.status, "max_abs_error": numbers(check.max_abs_error),
            "allowed": numbers(check.allowed), "rule": check.tolerance,
            "worst_index": list(check.worst_index) if check.worst_index is not None else None,
            "derived_at_worst": numbers(check.derived_at_worst), "torch_at_worst": numbers(check.torch_at_worst)}
    if check.first_difference is not None:  # a hand-written backward's check (docs/json.md)
        index, derived, returned = check.first_difference
        data["first_difference"] = {"index": list(index), "derived": numbers(derived), "torch": numbers(returned)}
    if check.diagnosis:
        data["diagnosis"] = check.diagnosis
    return data


def _function(inner) -> Dict[str, Any]:
    """A custom Function's forward, as graphexplain ran it again (docs/json.md)."""
    graph = inner.graph
    ops = [] if graph is None else [
        {"op": n.op, "name": n.name, "source": _source(n.source)} for n in graph.nodes if not n.is_leaf]
    return {"class": inner.owner, "title": inner.title, "forward_ops": ops,
            "inputs": [graph.leaves[i].name if graph is not None and i is not None else None for i in inner.inputs],
            "differentiable_outputs": [i is not None for i in inner.outputs],
            "reason": inner.reason or None, "intentional": inner.intentional}


def _chain(steps) -> list:
    return [{"input": c.input, "how": c.how, "downstream": numbers(c.downstream), "broadcast": c.broadcast}
            for c in steps]


def _node(step, observed) -> Dict[str, Any]:
    node, derived, verified = step.node, step.derivation, step.verification
    data = {
        "id": node.id,
        "op": node.op,
        "title": derived.title,
        "name": shorten(node.name),  # Note [bounded labels] in notation.py
        "module": node.module,
        "source": _source(node.source),
        "shape": list(node.output.shape) if node.output is not None else None,
        "value": numbers(node.output.data) if node.output is not None else None,
        "inputs": [
            {"input": o.name, "name": shorten(o.label), "from": o.producer, "requires_grad": o.requires_grad}
            for o in node.operands
        ],
        "forward": derived.forward or None,
        "forward_named": derived.forward_named or None,
        "local_gradients": [
            {"input": g.input, "name": shorten(g.label), "expr": g.expr, "named": g.named, "value": numbers(g.value)}
            for g in derived.local_gradients
        ],
        "upstream": numbers(derived.upstream),
        "torch_upstream": numbers(observed.upstream(node.id)),
        "chain": _chain(derived.steps),
        "torch_downstream": {o.name: numbers(observed.downstream(node, o.name)) for o in node.operands
                             if o.requires_grad},
        "derivation": derived.status,
        "status": verified.status,
        "note": derived.note or None,
        "reason": verified.reason or None,
        "broken_at": list(verified.broken_at),
        "hooks": [{"kind": h.kind, "location": h.location} for h in node.hooks],
        "local_step_on_torch_upstream": _chain(verified.local.steps) if verified.local is not None else None,
        "checks": [_check(c) for c in verified.checks],
    }
    if node.origin:  # a node an earlier call's backward made (create_graph=True)
        data["origin"] = node.origin
    if node.inner is not None:  # a custom autograd.Function: its forward, run again
        data["function"] = _function(node.inner)
    return data


def _leaf(leaf, derived, verified, torch_side, jacobian=None) -> Dict[str, Any]:
    data = {
        "name": shorten(leaf.name),
        "node": leaf.node,
        "shape": list(leaf.value.shape),
        "value": numbers(leaf.value.data),
        "formula": derived.symbolic,
        "derived_grad": numbers(derived.grad),
        "torch_grad": numbers(torch_side.grad),
        "grad_before": numbers(leaf.grad_before),
        "grad_after": numbers(torch_side.grad_after),
        "derived_part": numbers(derived.partial),
        "missing_from": list(derived.missing_from),
        "jacobian": numbers(jacobian),
        "status": verified.status,
        "reason": verified.reason or None,
        "broken_at": list(verified.broken_at),
        "checks": [_check(c) for c in verified.checks],
    }
    if leaf.produced_by:  # an input that is not a leaf
        data["produced_by"] = leaf.produced_by
    return data


def call_to_json(explanation) -> Dict[str, Any]:
    graph = explanation.graph
    root = graph.roots[0] if graph.roots else None
    first = explanation.verification.first_mismatch
    data = {
        "index": explanation.index,
        "call": graph.call,
        "source": _source(graph.call_source),
        "status": explanation.status,
        "first_mismatch": first,
        "root": {"name": shorten(root.name), "shape": list(root.value.shape), "value": numbers(root.value.data),
                 "grad_output": numbers(root.grad_output)} if root else None,
        "nodes": [_node(step, explanation.observed) for step in explanation.steps],
        "leaves": [_leaf(leaf, derived, verified, explanation.observed.leaf(position),
                         explanation.jacobians.get(leaf.node))
                   for position, (leaf, derived, verified) in enumerate(zip(
                       graph.leaves, explanation.derivation.leaves, explanation.verification.leaves))],
        "constants": [{"name": c.name, "shape": list(c.shape), "reason": c.reason, "used_by": list(c.used_by)}
                      for c in graph.constants],
    }
    if graph.unused:  # inputs of torch.autograd.grad that no output depends on
        data["unused_inputs"] = [{"name": u.name, "shape": list(u.shape), "returned": u.returned}
                                 for u in graph.unused]
    return data
