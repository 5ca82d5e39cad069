"""What a backward call differentiates: the part of the grad_fn graph that
torch runs for it, in backward order.

`Subgraph` is worked out from the roots and the call's inputs before the
real backward runs; `snapshot.PendingCall` copies its vertices into a
`model.Graph`. Vertices are torch's grad_fn nodes, and a `Captured` for
each input that is not a leaf.

Note [what the call differentiates]
torch runs only the nodes that lead to an input of the call (for backward()
without `inputs` every leaf is one, and it runs every node), and asks a
node only for the gradients of the operands that lead to one. The Graph is
that part and nothing else: a branch that leads only to other leaves (a
network's weights under autograd.grad(u, x)) is cut, and the operand it fed
is kept as one no gradient flows to (requires_grad False), not listed as a
constant.

Note [a non-leaf input is drawn as a leaf]
For ``torch.autograd.grad(y, [h])`` with h = x.sin() * 2, torch does not run
h's MulBackward0: it captures the gradient arriving at h's gradient edge
(MulBackward0, output 0) and returns it. So a `Captured` vertex stands for
that edge: the consumers of h feed it, and in the Graph it is an
AccumulateGrad node (the row that keeps what arrives, unchanged) named h,
whose Leaf says what produced h. Only when h's producer also leads to
another input does the Captured vertex feed it on, as torch then runs it
too. Under ``backward(inputs=[h])`` torch keeps h's gradient in h.grad (it
calls h.retain_grad()).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import torch


def gradient_edge(tensor) -> Tuple[Any, int]:
    """(node, output index) that a tensor's gradient flows into."""
    if tensor.grad_fn is not None:
        return tensor.grad_fn, tensor.output_nr
    edge = torch.autograd.graph.get_gradient_edge(tensor)
    return edge.node, edge.output_nr


def input_edge(item) -> Tuple[Any, int]:
    """The gradient edge of an input of the call: a tensor, or a GradientEdge itself."""
    if isinstance(item, torch.autograd.graph.GradientEdge):
        return item.node, item.output_nr
    return gradient_edge(item)


def is_accumulator(node) -> bool:
    return type(node).__name__ == "AccumulateGrad"


def topological(starts: Sequence[Any], children: Callable[[Any], List[Any]]) -> List[Any]:
    """Every vertex reachable from `starts` through `children`, each before
    every vertex it leads to (Kahn's algorithm in discovery order, so the
    order is the same on every run)."""
    consumers_left: Dict[int, int] = {}
    seen: Dict[int, Any] = {}
    stack = list(starts)
    for vertex in starts:
        seen.setdefault(id(vertex), vertex)
    while stack:
        vertex = stack.pop()
        for child in children(vertex):
            consumers_left[id(child)] = consumers_left.get(id(child), 0) + 1
            if id(child) not in seen:
                seen[id(child)] = child
                stack.append(child)
    order, queue = [], []
    for vertex in starts:
        if consumers_left.get(id(vertex), 0) == 0 and all(v is not vertex for v in queue):
            queue.append(vertex)
    while queue:
        vertex = queue.pop(0)
        order.append(vertex)
        for child in children(vertex):
            consumers_left[id(child)] -= 1
            if consumers_left[id(child)] == 0:
                queue.append(child)
    return order


def backward_order(starts: Sequence[Any], stops: Sequence[Any] = ()) -> List[Any]:
    """Reachable nodes, each before every node that feeds it; the walk goes
    no further than the nodes in `stops`."""
    stop_ids = {id(node) for node in stops}
    return topological(starts, lambda node: [] if id(node) in stop_ids else
                       [child for child, _ in node.next_functions if child is not None])


class Captured:
    """The gradient edge of a non-leaf input (Note [a non-leaf input is drawn
    as a leaf]): `tensor` is the input (or a GradientEdge), (`node`,
    `output_nr`) the edge."""

    def __init__(self, tensor, node, output_nr: int):
        self.tensor, self.node, self.output_nr = tensor, node, output_nr


class Subgraph:
    """The vertices torch runs for one call (Note [what the call differentiates]).

        part = Subgraph(root_edges, input_edges, inputs)
        part.vertices      # in backward order, roots first
        part.edge(node, nr)  # where a gradient edge leads in this call
    """

    def __init__(self, root_edges: Sequence[Tuple[Any, int]], input_edges: Sequence[Tuple[Any, int]],
                 inputs: Sequence[Any], everything: Sequence[Any], every_node: bool = False):
        wanted = {(id(node), nr) for node, nr in input_edges}
        self._input_nodes = {id(node) for node, _ in input_edges}
        self.captured: Dict[Tuple[int, int], Captured] = {}
        for tensor, (node, nr) in zip(inputs, input_edges):
            if not is_accumulator(node) and (id(node), nr) not in self.captured:
                self.captured[(id(node), nr)] = Captured(tensor, node, nr)
        self.needed: Set[int] = set()  # ids of the nodes torch runs (but leaves)
        for node in reversed(everything):  # producers first
            if is_accumulator(node):
                continue
            if every_node or any(child is not None and ((id(child), nr) in wanted or id(child) in self.needed)
                                 for child, nr in node.next_functions):
                self.needed.add(id(node))
        self.root_vertices = [self.edge(node, nr) for node, nr in root_edges]
        starts = list(dict.fromkeys(vertex for vertex, _ in self.root_vertices if vertex is not None))
        self.vertices = topological(starts, lambda vertex: [child for child, _ in self.children(vertex)
                                                            if child is not None])
        self.index = {id(vertex): i for i, vertex in enumerate(self.vertices)}

    def edge(self, node, nr: int) -> Tuple[Optional[Any], int]:
        """The vertex a gradient edge leads to in this call, and its output;
        (None, nr) for an edge on a cut branch or no edge at all."""
        if node is None:
            return None, nr
        if (id(node), nr) in self.captured:
            return self.captured[(id(node), nr)], 0
        if is_accumulator(node):
            return (node, nr) if id(node) in self._input_nodes else (None, nr)
        return (node, nr) if id(node) in self.needed else (None, nr)

    def children(self, vertex) -> List[Tuple[Optional[Any], int]]:
        """(vertex, output) for each edge of `vertex`, in next_functions order."""
        if isinstance(vertex, Captured):
            node = vertex.node
            return [(node, vertex.output_nr)] if id(node) in self.needed else []
        return [self.edge(child, nr) for child, nr in vertex.next_functions]

    def input_vertex(self, node, nr: int):
        """The vertex that stands for an input, or None for an unused input."""
        vertex, _ = self.edge(node, nr)
        return vertex if vertex is not None and id(vertex) in self.index else None
