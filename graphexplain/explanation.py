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

from dataclasses import dataclass, field, fields, replace
from typing import Dict, List, Optional

import numpy as np

from .blas import one_thread
from .derive import complete, derive, derive_node, jacobians
from .model import Graph, Node
from .observed import NOTHING, Observed
from .digest import RELEASED_FROM, Digest, digested, numbers
from .results import Derivation, LeafDerivation, NodeDerivation, NodeVerification, Verification
from .verify import Walk, verify


# Note [a value let go after its last node]
# A node's values (its operands' and its outputs') are read by that node's
# derivation and check alone, and a tensor's value is shared by the node
# that made it and the nodes that use it: once the last of those nodes is
# derived and verified, the command line needs no more of a big value than
# what the reports show of it. The graph is frozen data, but this copy of it
# is the command line's own (Explanation.of with `lean`), so each such
# Value's array is swapped for its Digest there, in place, and the 32 MB of
# a 2000×2000 value go before the next node's arrays are made.
def _last_uses(graph: Graph) -> Dict[int, list]:
    """node id → the big Values whose arrays no node after it reads."""
    last: Dict[int, tuple] = {}  # id(array) → (last node, the Values that hold it)
    def note(value, node_id):
        if value is None or not isinstance(value.data, np.ndarray) or value.data.size < RELEASED_FROM:
            return
        at, holders = last.get(id(value.data), (node_id, []))
        holders.append(value)
        last[id(value.data)] = (max(at, node_id), holders)
    for node in graph.nodes:
        for value in node.outputs:
            note(value, node.id)
        for operand in node.operands:
            note(operand.value, node.id)
    for leaf in graph.leaves:
        note(leaf.value, leaf.node)
    for root in graph.roots:
        note(root.value, root.node)
    release: Dict[int, list] = {}
    for at, holders in last.values():
        release.setdefault(at, []).append(holders)
    return release


def _let_go(groups) -> None:
    for holders in groups:  # the Values that share one array
        digest = Digest.of(holders[0].data)
        for value in holders:
            object.__setattr__(value, "data", digest)  # Note [a value let go after its last node]


def _shown(data):
    """torch's number as the API gives every number: float64 (kept float32, Note [torch's numbers in their
    own dtype] in capture/snapshot.py)."""
    return data if data is None or isinstance(data, Digest) else numbers(data)


def lightened(result):
    """A NodeDerivation or LeafDerivation with each big array (and those of
    its steps and local gradients) kept as a Digest (Note [a big array's last use])."""
    changes = {}
    for item in fields(result):
        value = getattr(result, item.name)
        if isinstance(value, tuple) and value and hasattr(value[0], "__dataclass_fields__"):
            lighter = tuple(lightened(part) for part in value)
        else:
            lighter = digested(value)
        if lighter is not value:
            changes[item.name] = lighter
    return replace(result, **changes) if changes else result


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
    def of(cls, graph: Graph, observed: Optional[Observed] = None, index: int = 1,
           lean: bool = False) -> "Explanation":
        """Derive from the graph alone, then verify against torch's numbers
        (Note [independence of the derived side] in observed.py). `lean`:
        each node is verified as soon as it is derived, and what it holds of
        digest.RELEASED_FROM elements or more is kept as a `Digest`, the numbers
        the reports show of it (Note [a big array's last use] in digest.py)."""
        observed = observed if observed is not None else NOTHING
        with one_thread():  # Note [one BLAS thread] in blas.py
            graph = complete(graph)
            if not lean:
                derivation = derive(graph)
                found = jacobians(graph)
                verification = verify(graph, derivation, observed, local_step=derive_node, jacobians=found)
                return cls(graph, derivation, verification, index, found, observed)
            found = jacobians(graph)
            walk = Walk(graph, observed, derive_node, found)
            release = _last_uses(graph)

            def keep(derived: NodeDerivation, leaves: Dict[int, LeafDerivation]):
                # the derivation is complete before torch's numbers are read, and goes on unchanged by them
                verified = walk.visit(graph.nodes[derived.node], derived)
                for position, leaf in leaves.items():
                    walk.leaf(position, leaf)
                if verified.local is not None:
                    walk.nodes[derived.node] = replace(verified, local=lightened(verified.local))
                walk.derived[derived.node] = kept = lightened(derived)  # (the walk reads only its words later)
                _let_go(release.pop(derived.node, ()))
                return kept, {position: lightened(leaf) for position, leaf in leaves.items()}

            derivation = derive(graph, keep=keep)
            verification = walk.verification()
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
            LeafResult(leaf.name, derived.grad, _shown(self.observed.leaf(position).grad), derived.symbolic,
                       verified.status)
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
