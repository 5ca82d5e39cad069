"""One backward call, explained: its graph, derivation and verification.

    >>> import torch, graphexplain
    >>> w = torch.tensor(1.0, requires_grad=True)
    >>> loss = (w * 1.0 - 2.0) ** 2
    >>> result = graphexplain.explain(loss)
    >>> result.status
    'verified'
    >>> [step.op for step in result.steps]
    ['PowBackward0', 'SubBackward0', 'MulBackward0', 'AccumulateGrad']
    >>> w.grad is None           # explain() never touches .grad
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .blas import one_thread
from .derive import complete, derive, derive_node, jacobians
from .model import Graph, Node
from .observed import NOTHING, Observed
from .results import Derivation, NodeDerivation, NodeVerification, Verification
from .verify import verify


@dataclass(frozen=True)
class Step:
    """A node with what was derived and checked there, in backward order."""

    node: Node
    derivation: NodeDerivation
    verification: NodeVerification

    @property
    def op(self) -> str:
        return self.node.op

    @property
    def status(self) -> str:
        return self.verification.status


@dataclass(frozen=True)
class LeafResult:
    """A leaf's gradient: derived (and as a formula, when there is one) and torch's."""

    name: str
    derived_grad: Optional[np.ndarray]
    torch_grad: Optional[np.ndarray]
    formula: Optional[str]
    status: str


@dataclass(frozen=True, repr=False)
class Explanation:
    graph: Graph
    derivation: Derivation
    verification: Verification
    index: int = 1  # which backward call of the script
    jacobians: Dict[int, np.ndarray] = field(default_factory=dict)  # leaf node → J, small non-scalar roots
    observed: Observed = NOTHING  # torch's numbers, as verification read them

    @classmethod
    def of(cls, graph: Graph, observed: Optional[Observed] = None, index: int = 1) -> "Explanation":
        """Derive from the graph alone, then verify against torch's numbers
        (Note [independence of the derived side] in observed.py)."""
        observed = observed if observed is not None else NOTHING
        with one_thread():  # Note [one BLAS thread] in blas.py
            graph = complete(graph)
            derivation = derive(graph)
            found = jacobians(graph)
            verification = verify(graph, derivation, observed, local_step=derive_node, jacobians=found)
        return cls(graph, derivation, verification, index, found, observed)

    @property
    def status(self) -> str:
        return self.verification.status

    @property
    def steps(self) -> List[Step]:
        return [Step(node, self.derivation.nodes[node.id], self.verification.nodes[node.id])
                for node in self.graph.nodes]

    @property
    def leaves(self) -> List[LeafResult]:
        return [
            LeafResult(leaf.name, derived.grad, self.observed.leaf(position).grad, derived.symbolic, verified.status)
            for position, (leaf, derived, verified) in enumerate(zip(self.graph.leaves, self.derivation.leaves,
                                                                     self.verification.leaves))
        ]

    def leaf(self, name: str) -> LeafResult:
        """The leaf called `name` (the variable's name in the caller)."""
        for leaf in self.leaves:
            if leaf.name == name:
                return leaf
        known = ", ".join(leaf.name for leaf in self.leaves) or "none"
        raise KeyError(f"no leaf named {name!r}; the leaves are: {known}")

    def to_json(self) -> dict:
        """The call as a JSON-ready dict (see docs/json.md)."""
        from .render.json import call_to_json

        return call_to_json(self)

    def to_dot(self) -> str:
        from .render.dot import to_dot

        return to_dot(self)

    def render(self, path: str, format: str = "png") -> str:
        """Write the graph picture (png, svg, pdf or dot); returns the path written."""
        from .render.dot import render

        return render(self, path, format)

    def to_html(self) -> str:
        """The call as an HTML fragment (picture, steps, verdict) with its own
        CSS and script: what `graphexplain trace --html` shows per call."""
        from .render.html import fragment

        return fragment(self)

    def _repr_html_(self) -> str:  # Jupyter shows the fragment
        return self.to_html()

    def _picture(self, format: str) -> Optional[bytes]:
        from .render.dot import RenderError, _draw

        try:
            return _draw(self.to_dot(), format)
        except RenderError:  # no dot: the notebook shows the HTML and the text alone
            return None

    def _repr_svg_(self) -> Optional[str]:
        """The picture as SVG for Jupyter; None without graphviz's dot."""
        drawn = self._picture("svg")
        return drawn.decode("utf-8") if drawn is not None else None

    def _repr_png_(self) -> Optional[bytes]:
        return self._picture("png")

    def __repr__(self) -> str:
        return (f"<Explanation of call {self.index}: {self.status}, {len(self.graph.nodes)} nodes, "
                f"{len(self.graph.leaves)} leaves>")

    def __str__(self) -> str:
        """The walkthrough as plain text, 80 columns: `print(explanation)`."""
        from .render.terminal import to_text

        return to_text(self)

    def __rich_console__(self, console, options):
        from .render.terminal import walkthrough

        yield from walkthrough(self, options.max_width)

    def first_mismatch(self) -> Optional[Node]:
        node_id = self.verification.first_mismatch
        return self.graph.nodes[node_id] if node_id is not None else None
