"""The explanation as JSON-ready dicts. The field names are documented in
docs/json.md; numbers are lists of floats (nested like the tensor), rounded
to 10 significant digits so the output is the same on every run."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

SCHEMA = "graphexplain/1"


def numbers(data) -> Any:
    if data is None:
        return None
    array = np.asarray(data, dtype=np.float64)
    rounded = [float(f"{v:.10g}") if np.isfinite(v) else str(v) for v in array.reshape(-1)]
    return np.array(rounded, dtype=object).reshape(array.shape).tolist() if array.ndim else rounded[0]


def _source(source) -> Optional[Dict[str, Any]]:
    if source is None:
        return None
    return {"file": source.file, "line": source.line, "code": source.code, "expr": source.expr}


def _node(step) -> Dict[str, Any]:
    node, derived, verified = step.node, step.derivation, step.verification
    return {
        "id": node.id,
        "op": node.op,
        "title": derived.title,
        "name": node.name,
        "module": node.module,
        "source": _source(node.source),
        "shape": list(node.output.shape) if node.output is not None else None,
        "value": numbers(node.output.data) if node.output is not None else None,
        "inputs": [
            {"input": o.name, "name": o.label, "from": o.producer, "requires_grad": o.requires_grad}
            for o in node.operands
        ],
        "forward": derived.forward or None,
        "forward_named": derived.forward_named or None,
        "local_gradients": [
            {"input": g.input, "name": g.label, "expr": g.expr, "named": g.named, "value": numbers(g.value)}
            for g in derived.local_gradients
        ],
        "upstream": numbers(derived.upstream),
        "torch_upstream": numbers(node.torch_upstream[0]) if node.torch_upstream else None,
        "chain": [
            {"input": c.input, "how": c.how, "downstream": numbers(c.downstream), "broadcast": c.broadcast}
            for c in derived.steps
        ],
        "status": verified.status,
        "note": derived.note or None,
        "checks": [{"what": c.what, "status": c.status, "max_abs_error": numbers(c.max_abs_error)}
                   for c in verified.checks],
    }


def _leaf(leaf, derived, verified, jacobian=None) -> Dict[str, Any]:
    return {
        "name": leaf.name,
        "node": leaf.node,
        "shape": list(leaf.value.shape),
        "value": numbers(leaf.value.data),
        "formula": derived.symbolic,
        "derived_grad": numbers(derived.grad),
        "torch_grad": numbers(leaf.torch_grad),
        "grad_before": numbers(leaf.grad_before),
        "grad_after": numbers(leaf.grad_after),
        "jacobian": numbers(jacobian),
        "status": verified.status,
    }


def call_to_json(explanation) -> Dict[str, Any]:
    graph = explanation.graph
    root = graph.roots[0] if graph.roots else None
    first = explanation.verification.first_mismatch
    return {
        "index": explanation.index,
        "call": graph.call,
        "source": _source(graph.call_source),
        "status": explanation.status,
        "first_mismatch": first,
        "root": {"name": root.name, "shape": list(root.value.shape), "value": numbers(root.value.data),
                 "grad_output": numbers(root.grad_output)} if root else None,
        "nodes": [_node(step) for step in explanation.steps],
        "leaves": [_leaf(leaf, derived, verified, explanation.jacobians.get(leaf.node))
                   for leaf, derived, verified in zip(graph.leaves, explanation.derivation.leaves,
                                                      explanation.verification.leaves)],
        "constants": [{"name": c.name, "shape": list(c.shape), "reason": c.reason, "used_by": list(c.used_by)}
                      for c in graph.constants],
    }
