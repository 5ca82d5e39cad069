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

from dataclasses import replace
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Set, Tuple

import numpy as np

from .model import Graph, Node, largest_magnitude, numbers, row_blocks
from .observed import NOTHING, Observed
from .precision import epsilon, tiny
from .results import (
    BREAKS, DERIVED, HOOK_CHANGED, INTENTIONAL, MISMATCH, NOT_CHECKED, UNCHECKED, VERIFIED, Check, Derivation,
    LeafVerification, NodeDerivation, NodeVerification, Verification, worst,
)

SAFETY = 2.0  # the budget is a first-order bound; twice it leaves room for second-order terms
DEFAULT_STEPS = 16  # rounding steps assumed for a number that comes without a budget

LocalStep = Callable[..., NodeDerivation]
CHAIN_BREAKERS = BREAKS + (HOOK_CHANGED, INTENTIONAL)  # statuses below which only torch's numbers arrive


def allowed_difference(derived: np.ndarray, budget: Optional[np.ndarray], dtype: str) -> np.ndarray:
    """The largest difference from `derived` that rounding in `dtype` explains, per element."""
    if budget is None:
        budget = _default_budget(derived, dtype)
    # A budget that came out nan or inf (an input of -inf, a singular matrix)
    # bounds nothing: such elements get the tensor's largest size, in eps.
    finite = np.isfinite(budget)
    if not np.all(finite):
        largest = float(np.max(np.abs(derived[np.isfinite(derived)]), initial=0.0))
        budget = np.where(finite, budget, DEFAULT_STEPS * epsilon(dtype) * largest)
    return _allowance(budget, dtype)


def _default_budget(derived, dtype: str) -> np.ndarray:
    """The budget of a number that comes without one: DEFAULT_STEPS roundings of itself."""
    return DEFAULT_STEPS * epsilon(dtype) * np.abs(derived)


def _allowance(budget, dtype: str) -> np.ndarray:
    """SAFETY × budget + the dtype's floor, as one new float64 array."""
    allowed = np.multiply(budget, SAFETY, dtype=np.float64)
    allowed += tiny(dtype)
    return allowed


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
    # torch's float32 numbers are converted block by block where the check passes in blocks
    # (Note [torch's numbers in their own dtype] in capture/snapshot.py), else whole below
    derived, torch_number = numbers(derived), np.asarray(torch_number)
    if derived.size != torch_number.size:
        return Check(what, MISMATCH, float("inf"), f"shape {derived.shape} vs {torch_number.shape}")
    derived = derived.reshape(torch_number.shape)
    if budget is not None and np.size(budget) != derived.size:
        budget = np.broadcast_to(np.asarray(budget, dtype=np.float64), derived.shape) \
            if np.size(budget) == 1 else None
    budget = None if budget is None else np.reshape(budget, derived.shape)
    agreed = _agreed(derived, torch_number, budget, dtype)
    if agreed is not None:
        worst_error, at, allowed_at = agreed
        return Check(what, VERIFIED, worst_error, f"what rounding in {dtype.replace('torch.', '')} can explain",
                     allowed_at, None, None, None)
    torch_number = numbers(torch_number)
    allowed = np.broadcast_to(allowed_difference(derived, budget, dtype), derived.shape)
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


# Note [a big check, block by block]
# A check of n elements made five arrays of n (the allowed difference, the
# error, the test, ...) at once: on a 2000×2000 gradient 150 MB above
# everything the derivation holds, and the peak of the whole run. Most
# checks pass with every number finite, and that case is decided block by
# block of BLOCK elements, each element by the same arithmetic as the whole
# computation in `compare`; the worst element and the allowance there are
# the same ones (first of equals, in element order). Anything else (a
# mismatch, an inf or a nan, a budget that bounds nothing) is left to the
# whole computation, which says where and why.
#
# Small checks take the same path: a model's explanation makes a thousand
# of them, and the whole computation's dozen passes over each (a float64
# copy of torch's number, the finite tests, the error and its allowance
# twice) were a fifth of explaining a transformer. A passing block makes
# two arrays, the allowance and the difference (torch's float32 cast as it
# is read, no copy of it), which becomes its magnitude and then the excess
# in place; one argmax of the excess finds the worst element and tests
# every element at once.
BLOCK = 1 << 18


def _agreed(derived, torch_number, budget, dtype: str):
    """(worst error, its index, the allowance there) where a check passes
    with every number finite; None where the whole check must run."""
    if derived.size == 0:
        return None
    if derived.ndim == 0:
        found = _agreed(derived.reshape(1), torch_number.reshape(1), None if budget is None else budget.reshape(1),
                        dtype)
        return None if found is None else (found[0], (), found[2])
    worst_error, best, at, allowed_at = 0.0, None, None, 0.0
    for part in row_blocks(derived.shape, BLOCK):
        found = _block_agreed(derived[part], torch_number[part], None if budget is None else budget[part], dtype)
        if found is None:
            return None
        error, excess, local, allowed = found
        worst_error = max(worst_error, error)
        if best is None or excess > best:
            best, allowed_at = excess, allowed
            at = (local[0] + part.start,) + local[1:]
    return worst_error, at, allowed_at


def _block_agreed(piece, torch_piece, piece_budget, dtype: str):
    """One block's (largest error, largest excess, where, the allowance
    there), or None; the allowance is `allowed_difference`'s where every
    budget is finite (Note [a big check, block by block])."""
    allowed = _allowance(_default_budget(piece, dtype) if piece_budget is None else piece_budget, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.subtract(piece, torch_piece)  # float64 or complex128: `piece` is
        error = np.abs(error, out=error) if error.dtype.kind == "f" else np.abs(error)
        largest = float(np.max(error))
        excess = np.subtract(error, allowed, out=error)
    # an inf or nan error makes its excess inf or nan, and argmax finds a nan first: one test for "finite"
    # and "within"; an excess of -inf is an allowance of inf (a budget that bounds nothing)
    position = int(np.argmax(excess))
    top = excess.flat[position]
    if not top <= 0 or np.min(excess) == -np.inf:
        return None
    local = tuple(int(i) for i in np.unravel_index(position, piece.shape))
    return largest, float(top), local, float(allowed[local])


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
        torch_number = observed.downstream(node, step.input)
        if torch_number is None and node.inner is not None and observed.node(node.id).downstream:
            torch_number = np.zeros(np.shape(step.downstream))  # the backward returned None: no gradient at all
        check = compare(f"{prefix}downstream {step.input}", step.downstream, torch_number,
                        _operand_dtype(node, step.input), step.budget)
        if check is not None and check.status == MISMATCH and node.inner is not None:
            dtype = _operand_dtype(node, step.input)
            check = replace(check, diagnosis=_diagnosis(step.downstream, torch_number, step.budget, dtype),
                            first_difference=_first_difference(step.downstream, torch_number, step.budget, dtype))
        checks.append(check)
    return [check for check in checks if check is not None]


# Note [what explains a wrong hand-written backward]
# A hand-written backward is most often wrong by a constant factor (a
# forgotten 1/2, a flipped sign) or by a transpose. When one number c makes
# derived·c agree with the backward's within the error budget (scaled by
# |c|), or the backward's result is the derived one transposed, the check
# says so; otherwise it gives the first element that differs.
def _diagnosis(derived, torch_number, budget, dtype: str) -> str:
    derived, torch_number = numbers(derived), numbers(torch_number)
    if np.iscomplexobj(derived) or np.iscomplexobj(torch_number):
        return ""
    if derived.ndim == 2 and derived.T.shape == torch_number.shape and derived.shape[0] > 1 and \
            derived.shape[1] > 1 and not np.allclose(derived, derived.T):
        check = compare("transposed", derived.T, torch_number, dtype,
                        None if budget is None else np.reshape(budget, derived.shape).T)
        if check is not None and check.status == VERIFIED:
            return "the backward returns the transpose of the derivative"
    if derived.shape != torch_number.shape and derived.size == torch_number.size:
        derived = derived.reshape(torch_number.shape)
        budget = None if budget is None or np.size(budget) != derived.size else np.reshape(budget, derived.shape)
    if derived.shape != torch_number.shape:
        return ""
    with np.errstate(all="ignore"):
        scale = float(np.sum(derived * derived))
        factor = float(np.sum(derived * torch_number)) / scale if scale > 0 else 0.0
    if np.isfinite(factor) and factor != 0 and abs(factor - 1) > 1e-6:
        scaled_budget = None if budget is None else np.abs(factor) * np.asarray(budget)
        check = compare("scaled", derived * factor, torch_number, dtype, scaled_budget)
        if check is not None and check.status == VERIFIED:
            return _factor_words(factor)
    return ""


def _first_difference(derived, torch_number, budget, dtype: str):
    """(index, derived, torch) of the first element, in element order, that differs beyond its budget."""
    derived, torch_number = numbers(derived), numbers(torch_number)
    if derived.size != torch_number.size or np.iscomplexobj(derived) or np.iscomplexobj(torch_number):
        return None
    derived = derived.reshape(torch_number.shape)
    if budget is not None and np.size(budget) == derived.size:
        budget = np.reshape(budget, derived.shape)
    elif budget is not None:
        budget = None
    allowed = np.broadcast_to(allowed_difference(derived, budget, dtype), derived.shape)
    with np.errstate(invalid="ignore"):
        off = ~((derived == torch_number) | (np.abs(derived - torch_number) <= allowed))
    where = np.argwhere(off)
    if not len(where):
        return None
    index = tuple(int(i) for i in where[0])
    return index, float(derived[index]), float(torch_number[index])


def _factor_words(factor: float) -> str:
    """"the sign is flipped", "the backward returns 2/3 of the derivative", "... 2 times ..."."""
    close = Fraction(factor).limit_denominator(12)
    exact = abs(float(close) - factor) <= 1e-4 * abs(factor)
    if exact and close == -1:
        return "the sign is flipped: the backward returns −1 times the derivative"
    words = str(close) if exact else f"{factor:.4g}"
    if abs(factor) < 1:
        return f"the backward returns {words} of the derivative"
    return f"the backward returns {words} times the derivative"


def function_words(node: Node, check: Check) -> str:
    """The one-paragraph story of a hand-written backward that disagrees with its forward."""
    operand_name = check.what.split("downstream ", 1)[-1]
    position = next((k for k, o in enumerate(node.operands) if o.name == operand_name), None)
    operand = node.operands[position] if position is not None else None
    which = f"{operand.label} (input {position + 1})" if operand is not None else operand_name
    owner = node.inner.owner or node.op
    words = f"{owner}.backward disagrees with the derivative of {owner}.forward for {which}"
    first = check.first_difference
    if first is None and check.worst_index is not None and check.derived_at_worst is not None:
        first = (check.worst_index, check.derived_at_worst, check.torch_at_worst)
    if first is not None:
        index, derived, returned = first
        at = f"[{', '.join(str(i) for i in index)}]" if index else "the one element"
        words += f": first at {at}, where the forward's derivative is {_short(derived)} and the backward " \
                 f"returns {_short(returned)}"
    if check.diagnosis:
        words += f"; {check.diagnosis}"
    return words + "."


def _short(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _upstream_check(node: Node, derived: NodeDerivation, observed: Observed) -> Optional[Check]:
    return compare("upstream", derived.upstream, observed.upstream(node.id), _dtype(node), derived.upstream_budget)


def _local_step(node: Node, observed: Observed, local_step: Optional[LocalStep]) -> Optional[NodeDerivation]:
    """The node's row applied to torch's upstream (Note [the local step on torch's upstream])."""
    upstreams = tuple(None if u is None else numbers(u) for u in observed.upstreams(node.id))
    if local_step is None or not upstreams or upstreams[0] is None:
        return None
    each = None
    if len(upstreams) > 1 and len(node.outputs) == len(upstreams) and None not in node.outputs:
        each = tuple(np.zeros(o.shape) if u is None else u for u, o in zip(upstreams, node.outputs))
    # torch's upstream is taken as exact: a budget of 0, one number broadcast (Note [broadcast views held
    # once] in derive/chain.py), not a full array of zeros and each of its budgets' temporaries after it
    exact = np.broadcast_to(0.0, np.shape(upstreams[0]))
    local = local_step(node, upstreams[0], each, exact)
    return local if local.status == DERIVED else None


# Note [a chain's budget that has grown]
# A budget bounds the worst case, and the worst case compounds: through a
# few layer norms and attentions a float32 gradient's budget can grow by
# orders of magnitude a layer, until it allows more than the gradient
# itself, and a wrong step below it would pass. Where the budget a node's
# upstream arrived with exceeds LOOSE eps of the upstream's size, and a
# downstream the chain derived differs from torch's by more than LOOSE eps
# of its size, the node's own step is also checked on its own: its row
# applied to torch's upstream, within that one step's rounding, must give
# torch's downstream (the same check as Note [the local step on torch's
# upstream]). The chain's checks still decide ✓; the local one can only
# find a step that is wrong.
#
# The second condition costs nothing in strength: a difference within
# LOOSE eps is what a node whose budget never grew accepts anyway, so a
# wrong step can hide only in the part of a grown budget above LOOSE eps,
# and there the local check runs. It is what keeps the re-run rare: the
# worst-case budget grows through any deep net (a two-layer MLP's reaches
# 1000 eps), while the differences actually seen stay at a few eps, and
# re-running every step was a third of explaining a training loop.
LOOSE = 256


def _loose(node: Node, derived: NodeDerivation) -> bool:
    budget, upstream = derived.upstream_budget, derived.upstream
    if budget is None or upstream is None or np.size(upstream) == 0:
        return False
    largest = float(np.max(budget))
    return not np.isfinite(largest) or largest > LOOSE * epsilon(_dtype(node)) * largest_magnitude(upstream)


def _differs_beyond_loose(node: Node, derived: NodeDerivation, checks: List[Check]) -> bool:
    """Whether a downstream check saw a difference over LOOSE eps of the downstream's size."""
    by_what = {check.what: check for check in checks}
    for step in derived.steps:
        check = by_what.get(f"downstream {step.input}")
        if check is None or step.downstream is None or np.size(step.downstream) == 0:
            continue
        allowed = LOOSE * epsilon(_operand_dtype(node, step.input)) * largest_magnitude(step.downstream)
        if not check.max_abs_error <= allowed:  # nan: the whole check ran and said why; look closer anyway
            return True
    return False


def _hook_reason(node: Node, derived, torch_number) -> str:
    where = ", ".join(f"{hook.kind} at {hook.location}" if hook.location else hook.kind for hook in node.hooks)
    from_to = ""
    if derived is not None and torch_number is not None and np.size(derived) == 1:
        from_to = f": {float(np.reshape(derived, ())):.4g} → {float(np.reshape(torch_number, ())):.4g}"
    return f"a user's hook ({where}) changed this gradient{from_to}; the derivation cannot know what it does"


def _break_words(node: Node, derived: NodeDerivation, status: str) -> str:
    if status == INTENTIONAL:
        return f"{node.name} [{node.op}] (step {node.id + 1}), whose backward differs from its forward on purpose"
    if status == HOOK_CHANGED:
        return f"{node.name} [{node.op}] (step {node.id + 1}), whose gradient a hook changed"
    return f"{node.name} [{node.op}] (step {node.id + 1}): {derived.note or status}"


def _consumers(graph: Graph) -> Dict[int, List[Tuple[int, int]]]:
    """Every node's (consumer id, operand index), as `Graph.consumers` gives
    them, in one pass over the graph: asked per node, it scanned the whole
    graph each time, quadratic in a long chain."""
    found: Dict[int, List[Tuple[int, int]]] = {node.id: [] for node in graph.nodes}
    for consumer in graph.nodes:
        for index, operand in enumerate(consumer.operands):
            if operand.producer in found:
                found[operand.producer].append((consumer.id, index))
    return found


class Walk:
    """verify()'s state while it goes down the graph in backward order: each
    node is `visit`ed with its derivation, each leaf's gradient `leaf`
    checked once its node was, and `verification()` is the result. The
    command line visits each node as soon as it is derived (Note [a big
    array's last use] in digest.py)."""

    def __init__(self, graph: Graph, observed: Observed = NOTHING, local_step=None, jacobians=None):
        self.graph, self.observed, self.local_step = graph, observed, local_step
        self.jacobians = jacobians or {}
        self.derived: Dict[int, NodeDerivation] = {}  # node → its derivation, as visited
        self.nodes: Dict[int, NodeVerification] = {}
        self.leaves: Dict[int, LeafVerification] = {}  # by position in graph.leaves
        self.status: Dict[int, str] = {}
        self.broken_at: Dict[int, Tuple[int, ...]] = {}  # node → the nodes that broke the chain above it
        self.started_at: Dict[int, int] = {}  # a mismatching node → where its mismatch started
        self.first_mismatch: Optional[int] = None
        self.consumers = _consumers(graph)

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

    def visit(self, node: Node, derived: NodeDerivation) -> NodeVerification:
        self.derived[node.id] = derived
        verified = self.node(node)
        self.status[node.id] = verified.status
        self.nodes[node.id] = verified
        return verified

    def node(self, node: Node) -> NodeVerification:
        derived = self.derived[node.id]
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
        if not any(c.status == MISMATCH for c in checks) and _loose(node, derived) and \
                _differs_beyond_loose(node, derived, checks):
            local = _local_step(node, self.observed, self.local_step)
            checks += _step_checks(node, local, self.observed, "from torch's upstream: ") if local else []
        if any(c.status == MISMATCH for c in checks):
            if node.inner is not None and not upstream_off:
                return self._hand_written(node, checks)
            return NodeVerification(node.id, MISMATCH, tuple(checks), self.mismatch(node.id, checks))
        return NodeVerification(node.id, VERIFIED if checks else NOT_CHECKED, tuple(checks))

    def _hand_written(self, node: Node, checks: List[Check]) -> NodeVerification:
        """A custom Function's backward that disagrees with its own forward:
        a mismatch, named and explained, unless the class says it is on
        purpose (graphexplain_intentional), which is a status of its own."""
        first = next(c for c in checks if c.status == MISMATCH)
        words = function_words(node, first)
        if node.inner.intentional:
            return NodeVerification(node.id, INTENTIONAL, tuple(checks), None,
                                    f"differs from the forward's derivative (intentional: {node.inner.intentional}); "
                                    + words)
        return NodeVerification(node.id, MISMATCH, tuple(checks), self.mismatch(node.id, checks), words)

    def _unchecked(self, node: Node, broken_at: Tuple[int, ...]) -> NodeVerification:
        self.broken_at[node.id] = broken_at
        first = self.graph.nodes[broken_at[0]]
        reason = "below " + _break_words(first, self.derived[first.id], self.status[first.id]) + \
            ("" if len(broken_at) == 1 else f" (and {len(broken_at) - 1} more)") + \
            ": only torch's numbers reach here"
        derived = self.derived[node.id]
        if derived.status in BREAKS:  # no rule here either: its own status says more than "unchecked"
            return NodeVerification(node.id, derived.status, (), None, reason, broken_at)
        local = _local_step(node, self.observed, self.local_step)
        checks = _step_checks(node, local, self.observed, "from torch's upstream: ") if local is not None else []
        if any(c.status == MISMATCH for c in checks):
            return NodeVerification(node.id, MISMATCH, tuple(checks), self.mismatch(node.id, checks), reason,
                                    broken_at, local)
        return NodeVerification(node.id, UNCHECKED, tuple(checks), None, reason, broken_at, local)


    def leaf(self, position: int, derived) -> LeafVerification:
        """Check leaf number `position`'s derived gradient, once its node was visited."""
        self.leaves[position] = verified = self._leaf(self.graph.leaves[position], derived,
                                                      self.observed.leaf(position))
        return verified

    def _leaf(self, leaf, derived, torch_side) -> LeafVerification:
        node, verified = self.graph.nodes[leaf.node], self.nodes[leaf.node]
        if self.status.get(leaf.node) == HOOK_CHANGED:
            return LeafVerification(leaf.node, leaf.name, HOOK_CHANGED, verified.checks, verified.reason)
        broken_at = self.broken_at.get(leaf.node, ()) or \
            ((leaf.node,) if self.status.get(leaf.node) in CHAIN_BREAKERS else ())
        if derived.grad is None or broken_at:
            check = _derived_part_check(self.graph, leaf, derived, torch_side.grad, self.observed)
            status = MISMATCH if check is not None and check.status == MISMATCH else UNCHECKED
            return LeafVerification(leaf.node, leaf.name, status, (check,) if check else (), verified.reason,
                                    broken_at)
        dtype = leaf.value.dtype
        checks = [compare("gradient", derived.grad, torch_side.grad, dtype, derived.budget),
                  _jacobian_check(self.graph, leaf, self.jacobians.get(leaf.node), torch_side.grad, derived.budget)]
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
        return LeafVerification(leaf.node, leaf.name, status, tuple(checks), reason)

    def verification(self) -> Verification:
        nodes = [self.nodes[node.id] for node in self.graph.nodes]
        leaves = [self.leaves[position] for position in range(len(self.graph.leaves))]
        overall = worst([v.status for v in nodes] + [v.status for v in leaves])
        first_mismatch = self.first_mismatch
        if overall == MISMATCH and first_mismatch is None:
            first_mismatch = next((v.node for v in leaves if v.status == MISMATCH), None)
        return Verification(overall, tuple(nodes), tuple(leaves), first_mismatch)


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
                through.append(numbers(part))
    if not through:
        return None
    torch_grad = numbers(torch_grad)
    rest = torch_grad - sum(through)
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
    walk = Walk(graph, observed, local_step, jacobians)
    for node in graph.nodes:
        walk.visit(node, derivation.nodes[node.id])
    for position, derived in enumerate(derivation.leaves):
        walk.leaf(position, derived)
    return walk.verification()

