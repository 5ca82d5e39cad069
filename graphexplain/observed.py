"""What torch itself computed in the real backward call: the numbers the
verification stage compares the derivation with.

Note [independence of the derived side]
A ✓ means the derived number was computed without torch's backward numbers
and agrees with them. So torch's gradients are not on the `model.Node` that
the derivation reads: they live here, and only `graphexplain.verify` (and
the renderers, which show them) are handed an `Observed`. No module of
`graphexplain.derive` imports this one; tests/test_architecture.py checks
it, and tests/test_independence.py scales torch's numbers by 3 at capture
and expects every derived number to stay as it was.

Like the model, this is plain data: no torch, sympy, graphviz or rich.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .model import Node


@dataclass(frozen=True)
class NodeGradients:
    """The gradients torch passed into a node (one per output) and out of it
    (one per operand, in ``next_functions`` order); None where it passed none."""

    upstream: Tuple[Optional[np.ndarray], ...] = ()
    downstream: Tuple[Optional[np.ndarray], ...] = ()


@dataclass(frozen=True)
class LeafGradients:
    """What the call contributed to a leaf (or returned, under
    ``torch.autograd.grad``), and the leaf's ``.grad`` after the call."""

    grad: Optional[np.ndarray] = None
    grad_after: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Observed:
    """Torch's numbers for one captured graph: `nodes` by node id, `leaves`
    in the order of ``Graph.leaves``."""

    nodes: Tuple[NodeGradients, ...] = ()
    leaves: Tuple[LeafGradients, ...] = ()

    def node(self, node_id: int) -> NodeGradients:
        return self.nodes[node_id] if node_id < len(self.nodes) else NodeGradients()

    def leaf(self, position: int) -> LeafGradients:
        return self.leaves[position] if position < len(self.leaves) else LeafGradients()

    def upstream(self, node_id: int, output: int = 0) -> Optional[np.ndarray]:
        """The gradient torch passed into output number `output` of the node."""
        upstream = self.node(node_id).upstream
        return upstream[output] if output < len(upstream) else None

    def upstreams(self, node_id: int):
        return self.node(node_id).upstream

    def downstream(self, node: Node, operand: str) -> Optional[np.ndarray]:
        """The gradient torch sent from `node` to its operand named `operand`."""
        downstream = self.node(node.id).downstream
        for index, candidate in enumerate(node.operands):
            if candidate.name == operand:
                return downstream[index] if index < len(downstream) else None
        return None


NOTHING = Observed()
