"""The verification stage: every derived number against torch's own.

At each node the derived upstream is compared with the gradient torch passed
into the node, and each derived downstream with what torch passed out; at
each leaf the derived gradient with torch's, and under ``.backward()`` the
accumulated ``.grad`` too. This is the only stage that reads torch's
backward numbers (`graphexplain.observed`).

Two numbers agree when they differ by no more than the rounding the
computing dtype can make on that computation: SAFETY × the error budget
the derivation carried next to the number (Note [error budget] in
derive/budget.py; docs/verification.md).

A mismatch is reported where it first appears: a node whose upstream already
disagreed only inherits the error, and says from where. Below a node whose
gradient could not be derived (no rule, a rule that raised, complex numbers)
or was changed by a user's hook, nothing derived arrives: those nodes and
leaves are UNCHECKED, never ✓, and name the node that broke the chain.

Note [the local step on torch's upstream]
Below a broken chain a node's own step can still be checked: its row,
applied to the upstream torch passed in, must give the downstream torch
passed out. That catches a wrong row anywhere, but it proves nothing about
the chain (torch's upstream is taken on trust), so the best such a node can
be is UNCHECKED. `local_step` (derive_node, handed in by the caller, so this
module imports no sympy) does the work.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Set, Tuple

import numpy as np

from .model import Graph, Node, numbers
from .observed import NOTHING, Observed
from .precision import epsilon, tiny
from .results import (
    BREAKS, DERIVED, HOOK_CHANGED, MISMATCH, NOT_CHECKED, UNCHECKED, VERIFIED, Check, Derivation,
    LeafVerification, NodeDerivation, NodeVerification, Verification, worst,
)

SAFETY = 2.0  # the budget is a first-order bound; twice it leaves room for second-order terms
DEFAULT_STEPS = 16  # rounding steps assumed for a number that comes without a budget

LocalStep = Callable[..., NodeDerivation]
CHAIN_BREAKERS = BREAKS + (HOOK_CHANGED,)  # statuses below which only torch's numbers arrive


def allowed_difference(derived: np.ndarray, budget: Optional[np.ndarray], dtype: str) -> np.ndarray:
    """The largest difference from `derived` that rounding in `dtype` explains, per element."""
    if budget is None:
        budget = DEFAULT_STEPS * epsilon(dtype) * np.abs(derived)
    # A budget that came out nan or inf (an input of -inf, a singular matrix)
    # bounds nothing: such elements get the tensor's largest size, in eps.
    finite = np.isfinite(budget)
    if not np.all(finite):
        largest = float(np.max(np.abs(derived[np.isfinite(derived)]), initial=0.0))
        budget = np.where(finite, budget, DEFAULT_STEPS * epsilon(dtype) * largest)
    return SAFETY * np.asarray(budget, dtype=np.float64) + tiny(dtype)


def compare(what: str, derived, torch_number, dtype: str, budget=None) -> Optional[Check]:
    """One check, or None when either side has no number.

    >>> compare("x", np.array([1.0]), np.array([1.0 + 1e-15]), "float64").status
    'verified'
    >>> compare("x", np.array([1.0]), np.array([1.0 + 1e-6]), "float64").status
    'mismatch'
    >>> compare("x", np.array([0.0]), np.array([-2.5e-5]), "float32", budget=np.array([1e-4])).status
    'verified'
    """
    if derived is None or torch_number is None:
        return None
    derived, torch_number = numbers(derived), numbers(torch_number)
    if derived.size != torch_number.size:
        return Check(what, MISMATCH, float("inf"), f"shape {derived.shape} vs {torch_number.shape}")
    derived = derived.reshape(torch_number.shape)
    if budget is not None and np.size(budget) != derived.size:
        budget = np.broadcast_to(np.asarray(budget, dtype=np.float64), derived.shape) \
            if np.size(budget) == 1 else None
    allowed = np.broadcast_to(allowed_difference(derived, None if budget is None else np.reshape(budget, derived.shape),
                                                 dtype), derived.shape)
    with np.errstate(invalid="ignore"):  # inf - inf: an infinity on both sides compares equal below
        error = np.abs(derived - torch_number)
        close = error <= allowed
        if not close.all():  # the full test only where the quick one failed: big tensors pay it rarely
            close |= (derived == torch_number) | (np.isnan(derived) & np.isnan(torch_number))
    worst_error = float(np.max(error, initial=0.0))
    if not np.isfinite(worst_error):  # an inf or nan on a side: the finite elements only
        finite = np.isfinite(torch_number) & np.isfinite(derived)
        worst_error = float(np.max(error[finite], initial=0.0))
    else:
        finite = None  # every element finite on both sides (a finite difference needs finite operands)
    status = VERIFIED if bool(np.all(close)) else MISMATCH
    where = None
    if status == MISMATCH:
        if finite is None:
            finite = np.ones(derived.shape, dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = np.where(close, -np.inf, np.where(finite, error / allowed, np.inf))
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), derived.shape))
        if not np.all(finite == (np.isfinite(torch_number) | np.isnan(derived))):
            worst_error = float("inf")
    at = where if where is not None else (tuple(int(i) for i in np.unravel_index(int(np.argmax(error - allowed)),
                                                                                   derived.shape))
                                          if derived.size else None)
    allowed_at = float(allowed[at]) if at is not None else 0.0
    rule = f"what rounding in {dtype.replace('torch.', '')} can explain"  # the number itself is `allowed`
    return Check(what, status, worst_error, rule, allowed_at, where,
                 _scalar(derived[where]) if where is not None else None,
                 _scalar(torch_number[where]) if where is not None else None)


def _scalar(value):
    return complex(value) if np.iscomplexobj(value) else float(value)


def _dtype(node: Node) -> str:
    if node.output is not None:
        return node.output.dtype
    return "float32"


def _operand_dtype(node: Node, name: str) -> str:
    operand = next((o for o in node.operands if o.name == name), None)
    return operand.value.dtype if operand is not None and operand.value is not None else _dtype(node)


def _step_checks(node: Node, derived: NodeDerivation, observed: Observed, prefix: str = "") -> List[Check]:
    checks = []
    for step in derived.steps:
        if step.downstream is None:
            continue
        checks.append(compare(f"{prefix}downstream {step.input}", step.downstream,
                              observed.downstream(node, step.input), _operand_dtype(node, step.input), step.budget))
    return [check for check in checks if check is not None]


def _upstream_check(node: Node, derived: NodeDerivation, observed: Observed) -> Optional[Check]:
    return compare("upstream", derived.upstream, observed.upstream(node.id), _dtype(node), derived.upstream_budget)


def _local_step(node: Node, observed: Observed, local_step: Optional[LocalStep]) -> Optional[NodeDerivation]:
    """The node's row applied to torch's upstream (Note [the local step on torch's upstream])."""
    upstreams = observed.upstreams(node.id)
    if local_step is None or not upstreams or upstreams[0] is None:
        return None
    each = None
    if len(upstreams) > 1 and len(node.outputs) == len(upstreams) and None not in node.outputs:
        each = tuple(np.zeros(o.shape) if u is None else u for u, o in zip(upstreams, node.outputs))
    local = local_step(node, upstreams[0], each)
    return local if local.status == DERIVED else None


def _hook_reason(node: Node, derived, torch_number) -> str:
    where = ", ".join(f"{hook.kind} at {hook.location}" if hook.location else hook.kind for hook in node.hooks)
    from_to = ""
    if derived is not None and torch_number is not None and np.size(derived) == 1:
        from_to = f": {float(np.reshape(derived, ())):.4g} → {float(np.reshape(torch_number, ())):.4g}"
    return f"a user's hook ({where}) changed this gradient{from_to}; the derivation cannot know what it does"


def _break_words(node: Node, derived: NodeDerivation, status: str) -> str:
    if status == HOOK_CHANGED:
        return f"{node.name} [{node.op}] (step {node.id + 1}), whose gradient a hook changed"
    return f"{node.name} [{node.op}] (step {node.id + 1}): {derived.note or status}"


class _Walk:
    """verify()'s state while it goes down the graph in backward order."""

    def __init__(self, graph: Graph, derivation: Derivation, observed: Observed, local_step):
        self.graph, self.derivation, self.observed, self.local_step = graph, derivation, observed, local_step
        self.status: Dict[int, str] = {}
        self.broken_at: Dict[int, Tuple[int, ...]] = {}  # node → the nodes that broke the chain above it
        self.started_at: Dict[int, int] = {}  # a mismatching node → where its mismatch started
        self.first_mismatch: Optional[int] = None
        self.consumers = {node.id: graph.consumers(node.id) for node in graph.nodes}

    def breaks_above(self, node_id: int) -> Tuple[int, ...]:
        found: Set[int] = set()
        for consumer, _ in self.consumers[node_id]:
            if self.status.get(consumer) in CHAIN_BREAKERS:
                found.add(consumer)
            found |= set(self.broken_at.get(consumer, ()))
        return tuple(sorted(found))

    def mismatch(self, node_id: int, checks: List[Check]) -> Optional[int]:
        """Record a mismatch at the node; returns where it started, if earlier."""
        upstream_wrong = any(c.what == "upstream" and c.status == MISMATCH for c in checks)
        passed_on = [self.started_at[c] for c, _ in self.consumers[node_id] if c in self.started_at]
        inherited = passed_on[0] if upstream_wrong and passed_on else None
        self.started_at[node_id] = node_id if inherited is None else inherited
        if self.first_mismatch is None:
            self.first_mismatch = node_id
        return inherited

    def node(self, node: Node) -> NodeVerification:
        derived = self.derivation.nodes[node.id]
        broken_at = self.breaks_above(node.id)
        if broken_at:
            return self._unchecked(node, broken_at)
        checks = [check for check in [_upstream_check(node, derived, self.observed)] if check is not None]
        upstream_off = any(c.status == MISMATCH for c in checks)
        if upstream_off and node.hooks:
            torch_upstream = self.observed.upstream(node.id)
            local = _local_step(node, self.observed, self.local_step)
            local_checks = _step_checks(node, local, self.observed, "from torch's upstream: ") if local else []
            status = MISMATCH if any(c.status == MISMATCH for c in local_checks) else HOOK_CHANGED
            if status == MISMATCH:
                self.mismatch(node.id, local_checks)
            return NodeVerification(node.id, status, tuple(checks + local_checks), None,
                                    _hook_reason(node, derived.upstream, torch_upstream), (), local)
        if derived.status != DERIVED:
            status = MISMATCH if upstream_off else derived.status
            inherited = self.mismatch(node.id, checks) if upstream_off else None
            return NodeVerification(node.id, status, tuple(checks), inherited, derived.note)
        checks += _step_checks(node, derived, self.observed)
        if any(c.status == MISMATCH for c in checks):
            return NodeVerification(node.id, MISMATCH, tuple(checks), self.mismatch(node.id, checks))
        return NodeVerification(node.id, VERIFIED if checks else NOT_CHECKED, tuple(checks))

    def _unchecked(self, node: Node, broken_at: Tuple[int, ...]) -> NodeVerification:
        self.broken_at[node.id] = broken_at
        first = self.graph.nodes[broken_at[0]]
        reason = "below " + _break_words(first, self.derivation.nodes[first.id], self.status[first.id]) + \
            ("" if len(broken_at) == 1 else f" (and {len(broken_at) - 1} more)") + \
            ": only torch's numbers reach here"
        derived = self.derivation.nodes[node.id]
        if derived.status in BREAKS:  # no rule here either: its own status says more than "unchecked"
            return NodeVerification(node.id, derived.status, (), None, reason, broken_at)
        local = _local_step(node, self.observed, self.local_step)
        checks = _step_checks(node, local, self.observed, "from torch's upstream: ") if local is not None else []
        if any(c.status == MISMATCH for c in checks):
            return NodeVerification(node.id, MISMATCH, tuple(checks), self.mismatch(node.id, checks), reason,
                                    broken_at, local)
        return NodeVerification(node.id, UNCHECKED, tuple(checks), None, reason, broken_at, local)


def _jacobian_check(graph: Graph, leaf, jacobian, torch_grad, chain_budget=None) -> Optional[Check]:
    """vᵀ·J, row by row derived, against what backward(v) gave the leaf."""
    if jacobian is None or len(graph.roots) != 1:
        return None
    seed = np.asarray(graph.roots[0].grad_output, dtype=np.float64).reshape(-1)
    if seed.size != jacobian.shape[0]:
        return None
    product = seed @ jacobian
    rows = jacobian.shape[0]
    budget = epsilon(leaf.value.dtype) * (DEFAULT_STEPS + rows) * (np.abs(seed) @ np.abs(jacobian))
    if chain_budget is not None and np.size(chain_budget) == budget.size:
        # torch's number carries the chain's rounding, cancellations included,
        # which |v|·|J| does not see (a PINN's ∂u/∂x sums large terms to a small one)
        budget = budget + np.reshape(chain_budget, budget.shape)
    return compare("vᵀ·J", product.reshape(leaf.value.shape), torch_grad, leaf.value.dtype, budget)


def _derived_part_check(graph: Graph, leaf, derived, torch_grad, observed: Observed) -> Optional[Check]:
    """A leaf gradient only partly derived: the derived part against torch's
    whole minus torch's parts through the consumers that broke the chain."""
    if derived.partial is None or torch_grad is None or not derived.missing_from:
        return None
    through = []
    for consumer in derived.missing_from:
        node = graph.nodes[consumer]
        for operand in node.operands:
            if operand.producer == leaf.node:
                part = observed.downstream(node, operand.name)
                if part is None:
                    return None
                through.append(np.asarray(part))
    if not through:
        return None
    rest = np.asarray(torch_grad) - sum(through)
    eps = epsilon(leaf.value.dtype)
    budget = (derived.partial_budget if derived.partial_budget is not None else 0) + \
        eps * (np.abs(torch_grad) + sum(np.abs(p) for p in through))
    return compare("derived part (torch's whole minus torch's part through the broken chain)", derived.partial,
                   rest, leaf.value.dtype, np.broadcast_to(budget, np.shape(rest)))


def verify(graph: Graph, derivation: Derivation, observed: Observed = NOTHING,
           local_step: Optional[LocalStep] = None, jacobians=None) -> Verification:
    """Compare the derivation with torch's numbers, node by node.

    A deliberately wrong number is caught (the doctest in `compare` shows
    one); tests/test_verify.py and tests/test_faults.py feed whole graphs
    with wrong gradients.
    """
    walk = _Walk(graph, derivation, observed, local_step)
    nodes: List[NodeVerification] = []
    for node in graph.nodes:
        verified = walk.node(node)
        walk.status[node.id] = verified.status
        nodes.append(verified)

    leaves = []
    for position, (leaf, derived) in enumerate(zip(graph.leaves, derivation.leaves)):
        torch_side = observed.leaf(position)
        node = graph.nodes[leaf.node]
        if walk.status.get(leaf.node) == HOOK_CHANGED:
            leaves.append(LeafVerification(leaf.node, leaf.name, HOOK_CHANGED, nodes[leaf.node].checks,
                                           nodes[leaf.node].reason))
            continue
        broken_at = walk.broken_at.get(leaf.node, ()) or \
            ((leaf.node,) if walk.status.get(leaf.node) in CHAIN_BREAKERS else ())
        if derived.grad is None or broken_at:
            check = _derived_part_check(graph, leaf, derived, torch_side.grad, observed)
            status = MISMATCH if check is not None and check.status == MISMATCH else UNCHECKED
            leaves.append(LeafVerification(leaf.node, leaf.name, status, (check,) if check else (),
                                           nodes[leaf.node].reason, broken_at))
            continue
        dtype = leaf.value.dtype
        checks = [compare("gradient", derived.grad, torch_side.grad, dtype, derived.budget),
                  _jacobian_check(graph, leaf, (jacobians or {}).get(leaf.node), torch_side.grad, derived.budget)]
        if leaf.accumulates:
            checks.append(compare(".grad after the call", derived.accumulated, torch_side.grad_after, dtype,
                                  derived.accumulated_budget))
        checks = [check for check in checks if check is not None]
        status = VERIFIED if checks else NOT_CHECKED
        reason = ""
        if any(check.status == MISMATCH for check in checks):
            status = MISMATCH
            if node.hooks:
                status, reason = HOOK_CHANGED, _hook_reason(node, derived.grad, torch_side.grad)
        leaves.append(LeafVerification(leaf.node, leaf.name, status, tuple(checks), reason))

    overall = worst([v.status for v in nodes] + [v.status for v in leaves])
    first_mismatch = walk.first_mismatch
    if overall == MISMATCH and first_mismatch is None:
        first_mismatch = next((v.node for v in leaves if v.status == MISMATCH), None)
    return Verification(overall, tuple(nodes), tuple(leaves), first_mismatch)

