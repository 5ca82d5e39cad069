"""What the derivation and verification stages produce: plain, immutable data.

Like `graphexplain.model`, this imports no torch, sympy, graphviz or rich:
formulas arrive here already printed to strings by the derivation stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

# Statuses, as they appear in the JSON and the walkthrough (docs/json.md).
VERIFIED = "verified"  # every number derived without torch's backward, and each agrees with torch's
MISMATCH = "mismatch"  # a derived number differs from torch's by more than rounding can explain
NO_RULE = "no-rule"  # no row for this op: torch's numbers are shown
RULE_ERROR = "rule-error"  # a row exists but raised while applying; the reason is kept
NOT_DERIVED = "not-derived"  # a row exists but cannot do this case yet (complex numbers)
HOOK_CHANGED = "hook-changed"  # a user's hook changed the gradient torch passed on
UNCHECKED = "unchecked"  # below a broken chain: only torch's numbers reach here
NOT_CHECKED = "not-checked"  # derived, but torch computed no number to compare with
INTENTIONAL = "intentional"  # a hand-written backward that differs from its forward's derivative on purpose

# What the derivation says of a node (NodeDerivation.status): DERIVED, or
# one of NO_RULE, RULE_ERROR, NOT_DERIVED, or UNREACHED: some gradient it
# receives could not be derived (a node above it broke the chain).
DERIVED = "derived"
UNREACHED = "unreached"
BREAKS = (NO_RULE, RULE_ERROR, NOT_DERIVED)  # derivation statuses that break the chain below

# Worst first: a call's status is the worst of its nodes' and leaves'.
SEVERITY = (MISMATCH, RULE_ERROR, NO_RULE, INTENTIONAL, NOT_DERIVED, HOOK_CHANGED, UNCHECKED, NOT_CHECKED, VERIFIED)


def worst(statuses) -> str:
    """The most severe of `statuses` (VERIFIED for none).

    >>> worst(["verified", "unchecked", "no-rule"])
    'no-rule'
    """
    present = set(statuses)
    return next((status for status in SEVERITY if status in present), VERIFIED)


@dataclass(frozen=True)
class LocalGradient:
    """∂result/∂input as sympy derived it from the row's forward formula."""

    input: str  # the rule's operand name: "self"
    label: str  # the user's name for the operand: "y"
    expr: str  # in the rule's vocabulary: "other"
    named: str  # with the user's names and the node's numbers put in: "2"
    value: Optional[np.ndarray] = None  # evaluated, elementwise; None for matrix/routing


@dataclass(frozen=True)
class ChainStep:
    """One application of the chain rule for one operand of a node:
    downstream = upstream × local gradient (then summed over broadcast dims)."""

    input: str
    label: str
    upstream: np.ndarray  # the result's gradient, as this operand sees it
    local: Optional[np.ndarray]  # None where the local gradient is a map, not numbers
    downstream: np.ndarray  # the operand's gradient, in the operand's shape
    how: str  # "multiply", "spread", "route", "matrix"; "unknown" where no rule applied
    broadcast: Optional[str] = None  # "summed over dim 0: (3, 2) → (2,)"
    formula: Optional[str] = None  # for matrix rows: "G*mat2.T"
    budget: Optional[np.ndarray] = None  # rounding-error bound of `downstream`, in units of eps (Note [error budget])


@dataclass(frozen=True)
class NodeDerivation:
    node: int
    status: str  # DERIVED, NO_RULE, RULE_ERROR, NOT_DERIVED or UNREACHED
    title: str  # the op in plain words
    forward: str  # "self*other"; empty for no-rule
    forward_named: str  # "y*y"
    upstream: Optional[np.ndarray]  # derived gradient of the node's first output; None if not all derived
    local_gradients: Tuple[LocalGradient, ...] = ()
    steps: Tuple[ChainStep, ...] = ()
    note: str = ""  # why it is not derived: "no symbolic rule", "ValueError: ..."
    upstream_budget: Optional[np.ndarray] = None  # Note [error budget] in derive/budget.py
    missing_from: Tuple[int, ...] = ()  # consumers whose gradient to this node could not be derived
    geometry: str = ""  # a kernel's shape in words, for the picture: "conv2d 3→6, 5×5, stride 1, pad 0"

    @property
    def derived(self) -> bool:
        return self.status == DERIVED


@dataclass(frozen=True)
class LeafDerivation:
    node: int
    name: str
    grad: Optional[np.ndarray]  # what this call adds to .grad; None unless wholly derived
    symbolic: Optional[str] = None  # "4*(x + 2)/3", when the chain composes elementwise
    accumulated: Optional[np.ndarray] = None  # .grad before + grad, under backward()
    budget: Optional[np.ndarray] = None  # of `grad` (Note [error budget])
    accumulated_budget: Optional[np.ndarray] = None
    partial: Optional[np.ndarray] = None  # the derived part, when some part could not be derived
    missing_from: Tuple[int, ...] = ()  # the consumers whose part is torch's alone
    partial_budget: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Derivation:
    nodes: Tuple[NodeDerivation, ...]
    leaves: Tuple[LeafDerivation, ...]

    def for_node(self, node_id: int) -> NodeDerivation:
        return self.nodes[node_id]


@dataclass(frozen=True)
class Check:
    """One comparison of a derived number with torch's."""

    what: str  # "upstream", "downstream self", "leaf grad", ".grad after"
    status: str
    max_abs_error: float = 0.0
    tolerance: str = ""  # the rule applied, in words
    allowed: float = 0.0  # the largest difference rounding explains, at the worst element
    worst_index: Optional[Tuple[int, ...]] = None  # the element furthest outside its allowance
    derived_at_worst: Optional[float] = None
    torch_at_worst: Optional[float] = None
    # for a hand-written backward: what explains the difference, in words ("the sign is flipped")
    diagnosis: str = ""
    first_difference: Optional[Tuple[Tuple[int, ...], float, float]] = None  # (index, derived, torch), in element order


@dataclass(frozen=True)
class NodeVerification:
    node: int
    status: str
    checks: Tuple[Check, ...] = ()
    inherited_from: Optional[int] = None  # a mismatch that started at an earlier node
    reason: str = ""  # for UNCHECKED, HOOK_CHANGED: why, in words
    broken_at: Tuple[int, ...] = ()  # the nodes that broke the chain above this one
    local: Optional[NodeDerivation] = None  # Note [the local step on torch's upstream] in verify.py


@dataclass(frozen=True)
class LeafVerification:
    node: int
    name: str
    status: str
    checks: Tuple[Check, ...] = ()
    reason: str = ""
    broken_at: Tuple[int, ...] = ()


@dataclass(frozen=True)
class Verification:
    status: str
    nodes: Tuple[NodeVerification, ...]
    leaves: Tuple[LeafVerification, ...]
    first_mismatch: Optional[int] = None  # node id where a mismatch first appears

    def for_node(self, node_id: int) -> NodeVerification:
        return self.nodes[node_id]
