"""The explanation as JSON-ready dicts. The field names are documented in
docs/json.md; numbers are lists of floats (nested like the tensor), rounded
to 10 significant digits so the output is the same on every run.

Note [summaries of big tensors]
A tensor of more than SUMMARY_LIMIT elements is written as a summary
(`summary`): shape, the first few values, its L2 norm, largest magnitude,
min and max. Written element by element as text, a 2000×2000 matmul's JSON
took minutes and gigabytes, and nobody reads four million numbers in a JSON
file. With `--json-full` the whole arrays go into a sidecar ``.npz`` next
to the JSON, and each summary names its array's `key` there.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..digest import Digest, l2_norm, numbers as as_shown
from ..notation import shorten

SCHEMA = "graphexplain/1"
SUMMARY_LIMIT = 1000  # elements; more, and the tensor is summarised (Note [summaries of big tensors])
HEAD = 6  # values the summary shows, in row-major order


class Arrays:
    """Where the numbers of a JSON document go: small ones inline (`numbers`),
    big ones as a `summary`, and, when `full`, the big arrays themselves into
    `arrays` under a key named after where they sit in the document.

        >>> out = Arrays(full=True)
        >>> out(np.arange(3.0), "x")
        [0.0, 1.0, 2.0]
        >>> out(np.zeros(2000), "call-1/x")["key"], sorted(out.arrays)
        ('call-1/x', ['call-1/x'])
    """

    def __init__(self, full: bool = False, limit: int = SUMMARY_LIMIT):
        self.limit = limit
        self.arrays: Optional[Dict[str, np.ndarray]] = {} if full else None

    def __call__(self, data, key: str) -> Any:
        if isinstance(data, Digest):  # summarised already (Note [a big array's last use] in digest.py)
            if self.arrays is not None:
                raise ValueError(f"{key}: --json-full needs the whole array, and only its digest was kept")
            return dict(data.summary)
        if data is None or np.size(data) <= self.limit:
            return numbers(data)
        array = as_shown(data)  # torch's float32 numbers, summarised and written as float64 like the rest
        if self.arrays is not None:
            self.arrays[key] = array
        return summary(array, key if self.arrays is not None else None)


def summary(array: np.ndarray, key: Optional[str] = None) -> Dict[str, Any]:
    """A big tensor in a few numbers (Note [summaries of big tensors]); the
    norms, min and max are over its finite elements, `nonfinite` counts the rest.

    >>> summary(np.array([3.0, -4.0]))["l2_norm"], summary(np.array([3.0, -4.0]))["max_abs"]
    (5.0, 4.0)
    """
    flat = array.reshape(-1)
    real = not np.iscomplexobj(array)
    low, high = (float(np.min(flat)), float(np.max(flat))) if real and flat.size else (np.nan, np.nan)
    if np.isfinite(low) and np.isfinite(high):  # then every element is finite: three passes, no temporaries
        count, largest, norm = flat.size, max(abs(low), abs(high)), l2_norm(flat)
    else:
        finite = np.isfinite(flat)
        count = int(np.count_nonzero(finite))
        magnitude = np.abs(flat[finite])
        largest, norm = np.max(magnitude, initial=0.0), l2_norm(magnitude)
        if real and count:
            low, high = np.min(flat[finite]), np.max(flat[finite])
    data = {
        "summary": True,
        "shape": list(array.shape),
        "dtype": "float64" if real else "complex128",  # as shown: a float32 array digested as it is says so too
        "size": int(flat.size),
        "head": numbers(flat[:HEAD]),
        "l2_norm": numbers(norm),
        "max_abs": numbers(largest),
        "min": numbers(low) if real and count else None,
        "max": numbers(high) if real and count else None,
        "nonfinite": flat.size - count,
    }
    if key is not None:
        data["key"] = key
    return data


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


def _check(check) -> Dict[str, Any]:  # every field a scalar: the worst element, where it is
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


def _chain(steps, out: Arrays, key: str) -> list:
    return [{"input": c.input, "how": c.how, "downstream": out(c.downstream, f"{key}/{c.input}"),
             "broadcast": c.broadcast} for c in steps]


def _node(step, observed, out: Arrays, call: str) -> Dict[str, Any]:
    node, derived, verified = step.node, step.derivation, step.verification
    key = f"{call}/node-{node.id}"
    data = {
        "id": node.id,
        "op": node.op,
        "title": derived.title,
        "name": shorten(node.name),  # Note [bounded labels] in notation.py
        "module": node.module,
        "source": _source(node.source),
        "shape": list(node.output.shape) if node.output is not None else None,
        "value": out(node.output.data, f"{key}/value") if node.output is not None else None,
        "inputs": [
            {"input": o.name, "name": shorten(o.label), "from": o.producer, "requires_grad": o.requires_grad}
            for o in node.operands
        ],
        "forward": derived.forward or None,
        "forward_named": derived.forward_named or None,
        "local_gradients": [
            {"input": g.input, "name": shorten(g.label), "expr": g.expr, "named": g.named,
             "value": out(g.value, f"{key}/local_gradient/{g.input}")}
            for g in derived.local_gradients
        ],
        "upstream": out(derived.upstream, f"{key}/upstream"),
        "torch_upstream": out(observed.upstream(node.id), f"{key}/torch_upstream"),
        "chain": _chain(derived.steps, out, f"{key}/downstream"),
        "torch_downstream": {o.name: out(observed.downstream(node, o.name), f"{key}/torch_downstream/{o.name}")
                             for o in node.operands if o.requires_grad},
        "derivation": derived.status,
        "status": verified.status,
        "note": derived.note or None,
        "reason": verified.reason or None,
        "broken_at": list(verified.broken_at),
        "hooks": [{"kind": h.kind, "location": h.location} for h in node.hooks],
        "local_step_on_torch_upstream": _chain(verified.local.steps, out, f"{key}/local_step")
        if verified.local is not None else None,
        "checks": [_check(c) for c in verified.checks],
    }
    if node.origin:  # a node an earlier call's backward made (create_graph=True)
        data["origin"] = node.origin
    if node.inner is not None:  # a custom autograd.Function: its forward, run again
        data["function"] = _function(node.inner)
    return data


def _leaf(leaf, derived, verified, torch_side, out: Arrays, key: str, jacobian=None) -> Dict[str, Any]:
    data = {
        "name": shorten(leaf.name),
        "node": leaf.node,
        "shape": list(leaf.value.shape),
        "value": out(leaf.value.data, f"{key}/value"),
        "formula": derived.symbolic,
        "derived_grad": out(derived.grad, f"{key}/derived_grad"),
        "torch_grad": out(torch_side.grad, f"{key}/torch_grad"),
        "grad_before": out(leaf.grad_before, f"{key}/grad_before"),
        "grad_after": out(torch_side.grad_after, f"{key}/grad_after"),
        "derived_part": out(derived.partial, f"{key}/derived_part"),
        "missing_from": list(derived.missing_from),
        "jacobian": out(jacobian, f"{key}/jacobian"),
        "status": verified.status,
        "reason": verified.reason or None,
        "broken_at": list(verified.broken_at),
        "checks": [_check(c) for c in verified.checks],
    }
    if leaf.produced_by:  # an input that is not a leaf
        data["produced_by"] = leaf.produced_by
    return data


def call_to_json(explanation, out: Optional[Arrays] = None) -> Dict[str, Any]:
    """One call as a dict; big tensors summarised, and kept in `out.arrays`
    when `out` was made with ``full=True``."""
    out = out if out is not None else Arrays()
    graph = explanation.graph
    call = f"call-{explanation.index}" if explanation.index else "target"
    root = graph.roots[0] if graph.roots else None
    first = explanation.verification.first_mismatch
    data = {
        "index": explanation.index,
        "call": graph.call,
        "source": _source(graph.call_source),
        "status": explanation.status,
        "first_mismatch": first,
        "root": {"name": shorten(root.name), "shape": list(root.value.shape),
                 "value": out(root.value.data, f"{call}/root/value"),
                 "grad_output": out(root.grad_output, f"{call}/root/grad_output")} if root else None,
        "nodes": [_node(step, explanation.observed, out, call) for step in explanation.steps],
        "leaves": [_leaf(leaf, derived, verified, explanation.observed.leaf(position), out,
                         f"{call}/leaf-{position}", explanation.jacobians.get(leaf.node))
                   for position, (leaf, derived, verified) in enumerate(zip(
                       graph.leaves, explanation.derivation.leaves, explanation.verification.leaves))],
        "constants": [{"name": c.name, "shape": list(c.shape), "reason": c.reason, "used_by": list(c.used_by)}
                      for c in graph.constants],
    }
    if graph.unused:  # inputs of torch.autograd.grad that no output depends on
        data["unused_inputs"] = [{"name": u.name, "shape": list(u.shape), "returned": u.returned}
                                 for u in graph.unused]
    return data


def updates_to_json(results, out: "Arrays", key: str) -> list:
    """What the script did to the parameters after an explained call (docs/optimizers.md)."""
    listed = []
    for u, result in enumerate(results):
        update = result.update
        data = {"kind": update.kind, "what": update.what, "call": update.call, "source": _source(update.source),
                "status": result.status}
        if update.kind == "cleared":
            data.update({"cleared": [shorten(name) for name in update.cleared], "how": update.how})
        else:
            data["params"] = [_update_param(param, before, out, f"{key}/{u}/{p}")
                              for p, (param, before) in enumerate(zip(result.params, update.before))]
        listed.append(data)
    return listed


def _update_param(param, before, out: "Arrays", key: str) -> Dict[str, Any]:
    return {
        "name": shorten(param.name), "status": param.status, "rule": param.rule, "note": param.note or None,
        "hyperparameters": {k: numbers(list(v)) if isinstance(v, tuple) else numbers(v)
                            for k, v in sorted(before.hyper.items())},
        "before": out(param.before, f"{key}/before"), "after": out(param.after, f"{key}/after"),
        "steps": [{"name": a.name, "formula": a.formula, "value": out(a.value, f"{key}/{a.name}"),
                   "checked": a.checked} for a in param.assignments],
        "checks": [_check(check) for check in param.checks],
    }
