"""The verification stage: every derived number against torch's own.

At each node the derived upstream is compared with the gradient torch passed
into the node, and each derived downstream with what torch passed out; at
each leaf the derived gradient with torch's, and under ``.backward()`` the
accumulated ``.grad`` too. Tolerances follow the dtype torch computed in
(the derivation itself is float64).

A mismatch is reported where it first appears: a node whose upstream already
disagreed only inherits the error, and says from where.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .model import Graph, Node
from .results import (
    MISMATCH, NO_RULE, NOT_CHECKED, VERIFIED, Check, Derivation, LeafVerification,
    NodeVerification, Verification,
)

# dtype → (relative, absolute) tolerance. The absolute part is scaled by the
# size of the numbers compared, so a float32 sum of large terms is judged by
# float32's precision at that size, not near zero.
TOLERANCES: Dict[str, Tuple[float, float]] = {
    "float64": (1e-7, 1e-9),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}
DEFAULT_DTYPE = "float32"


def tolerance(dtype: str) -> Tuple[float, float]:
    return TOLERANCES.get(dtype.replace("torch.", ""), TOLERANCES[DEFAULT_DTYPE])


def compare(what: str, derived, torch_number, dtype: str) -> Optional[Check]:
    """One check, or None when either side has no number.

    >>> compare("x", np.array([1.0]), np.array([1.0 + 1e-9]), "float64").status
    'verified'
    >>> compare("x", np.array([1.0]), np.array([1.1]), "float64").status
    'mismatch'
    """
    if derived is None or torch_number is None:
        return None
    derived = np.asarray(derived, dtype=np.float64)
    torch_number = np.asarray(torch_number, dtype=np.float64)
    rtol, atol = tolerance(dtype)
    if derived.size != torch_number.size:
        return Check(what, MISMATCH, float("inf"), f"shape {derived.shape} vs {torch_number.shape}")
    derived = derived.reshape(torch_number.shape)
    finite = np.isfinite(torch_number) & np.isfinite(derived)
    scale = max(1.0, float(np.max(np.abs(torch_number[finite]), initial=0.0)))
    with np.errstate(invalid="ignore"):  # inf - inf: an infinity on both sides compares equal below
        close = np.isclose(derived, torch_number, rtol=rtol, atol=atol * scale, equal_nan=True)
        error = np.abs(derived - torch_number)
    worst = float(np.max(error[finite], initial=0.0))
    status = VERIFIED if bool(np.all(close)) else MISMATCH
    if status == MISMATCH and not np.all(finite == (np.isfinite(torch_number) | np.isnan(derived))):
        worst = float("inf")
    return Check(what, status, worst, f"rtol {rtol:g}, atol {atol * scale:g}")


def _dtype(node: Node) -> str:
    if node.output is not None:
        return node.output.dtype
    return DEFAULT_DTYPE


def _node_checks(node: Node, derivation) -> List[Check]:
    dtype = _dtype(node)
    checks = []
    torch_upstream = node.torch_upstream[0] if node.torch_upstream else None
    if not derivation.upstream_from_torch:  # a borrowed upstream would only be compared with itself
        checks.append(compare("upstream", derivation.upstream, torch_upstream, dtype))
    for step in derivation.steps:
        if step.how == "torch":
            continue  # torch's own number, nothing to compare it with
        checks.append(compare(f"downstream {step.input}", step.downstream,
                              node.torch_gradient_of(step.input), dtype))
    return [check for check in checks if check is not None]


def _status(checks: List[Check], no_rule: bool) -> str:
    if any(check.status == MISMATCH for check in checks):
        return MISMATCH
    if no_rule:
        return NO_RULE
    return VERIFIED if checks else NOT_CHECKED


def verify(graph: Graph, derivation: Derivation) -> Verification:
    """Compare the derivation with torch's numbers, node by node.

    A deliberately wrong number is caught (the doctest in `compare` shows
    one); tests/test_verify.py feeds whole graphs with perturbed gradients.
    """
    nodes: List[NodeVerification] = []
    first_mismatch: Optional[int] = None
    started_at: Dict[int, int] = {}  # a mismatching node → where its mismatch started
    for node, derived in zip(graph.nodes, derivation.nodes):
        checks = _node_checks(node, derived)
        status = _status(checks, derived.status == NO_RULE)
        inherited = None
        if status == MISMATCH:
            upstream_wrong = any(c.what == "upstream" and c.status == MISMATCH for c in checks)
            # inherited only from a consumer that passed a wrong gradient on (consumers come first)
            passed_on = [started_at[c] for c, _ in graph.consumers(node.id) if c in started_at]
            if upstream_wrong and passed_on:
                inherited = passed_on[0]
            started_at[node.id] = node.id if inherited is None else inherited
            if first_mismatch is None:
                first_mismatch = node.id
        nodes.append(NodeVerification(node.id, status, tuple(checks), inherited))

    leaves = []
    for leaf, derived in zip(graph.leaves, derivation.leaves):
        dtype = leaf.value.dtype
        checks = [compare("gradient", derived.grad, leaf.torch_grad, dtype)]
        if leaf.accumulates:
            checks.append(compare(".grad after the call", derived.accumulated, leaf.grad_after, dtype))
        checks = [check for check in checks if check is not None]
        leaves.append(LeafVerification(leaf.node, leaf.name, _status(checks, False), tuple(checks)))

    statuses = {v.status for v in nodes} | {v.status for v in leaves}
    for status in (MISMATCH, NO_RULE, NOT_CHECKED):
        if status in statuses:
            overall = status
            break
    else:
        overall = VERIFIED
    if overall == MISMATCH and first_mismatch is None:
        first_mismatch = next((v.node for v in leaves if v.status == MISMATCH), None)
    return Verification(overall, tuple(nodes), tuple(leaves), first_mismatch)
