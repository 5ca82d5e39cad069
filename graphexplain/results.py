"""What the derivation and verification stages produce: plain, immutable data.

Like `graphexplain.model`, this imports no torch, sympy, graphviz or rich:
formulas arrive here already printed to strings by the derivation stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

# Statuses, as they appear in the JSON and the walkthrough.
VERIFIED = "verified"
MISMATCH = "mismatch"
NO_RULE = "no-rule"
NOT_CHECKED = "not-checked"  # torch computed no number to compare with


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
    how: str  # "multiply", "spread", "route", "matrix", "torch"
    broadcast: Optional[str] = None  # "summed over dim 0: (3, 2) → (2,)"
    formula: Optional[str] = None  # for matrix rows: "G*mat2.T"


@dataclass(frozen=True)
class NodeDerivation:
    node: int
    status: str  # "derived" or NO_RULE
    title: str  # the op in plain words
    forward: str  # "self*other"; empty for no-rule
    forward_named: str  # "y*y"
    upstream: Optional[np.ndarray]  # derived gradient of the node's first output
    local_gradients: Tuple[LocalGradient, ...] = ()
    steps: Tuple[ChainStep, ...] = ()
    note: str = ""
    upstream_from_torch: bool = False  # Note [borrowing torch's upstream] in derive/chain.py


@dataclass(frozen=True)
class LeafDerivation:
    node: int
    name: str
    grad: Optional[np.ndarray]  # what this call adds to .grad
    symbolic: Optional[str] = None  # "4*(x + 2)/3", when the chain composes elementwise
    accumulated: Optional[np.ndarray] = None  # .grad before + grad, under backward()


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
    tolerance: str = ""


@dataclass(frozen=True)
class NodeVerification:
    node: int
    status: str
    checks: Tuple[Check, ...] = ()
    inherited_from: Optional[int] = None  # a mismatch that started at an earlier node


@dataclass(frozen=True)
class LeafVerification:
    node: int
    name: str
    status: str
    checks: Tuple[Check, ...] = ()


@dataclass(frozen=True)
class Verification:
    status: str
    nodes: Tuple[NodeVerification, ...]
    leaves: Tuple[LeafVerification, ...]
    first_mismatch: Optional[int] = None  # node id where a mismatch first appears

    def for_node(self, node_id: int) -> NodeVerification:
        return self.nodes[node_id]
