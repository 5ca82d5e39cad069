"""The captured autograd graph as plain, immutable data.

This module is the contract between the stages: capture builds a `Graph`,
derivation and verification read it, renderers draw it. It imports neither
torch, sympy, graphviz nor rich (a test checks `sys.modules`), so a Graph
can be built by hand in a test and every later stage works on it.

Numbers are numpy float64 arrays, frozen (``writeable=False``), so nothing
downstream can change what was captured.

    >>> v = Value.of([1.0, 2.0], dtype="float32")
    >>> v.shape, v.numel
    ((2,), 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Mapping, Optional, Tuple

import numpy as np


def numbers(data) -> np.ndarray:
    """`data` as float64, or complex128 where it is complex: the two kinds
    of number every stage computes with."""
    array = np.asarray(data)
    return array.astype(np.complex128 if np.iscomplexobj(array) else np.float64, copy=False)


def largest_magnitude(array) -> float:
    """max |element|, without an array of magnitudes for real numbers (a big
    gradient's copy, at the run's peak); 0 for none.

    >>> largest_magnitude(np.array([-3.0, 2.0])), largest_magnitude(np.array([]))
    (3.0, 0.0)
    """
    array = np.asarray(array)
    if array.dtype.kind != "f" or not array.size:
        return float(np.max(np.abs(array), initial=0.0))
    return float(np.maximum(np.max(array), -np.min(array)))


def row_blocks(shape: Tuple[int, ...], block: int):
    """Slices along the first dim of an array of `shape`, about `block`
    elements each: a big array handled piece by piece, each piece a view
    whatever the strides (a flat reshape of a transposed array copies it)."""
    rows = max(1, block // max(1, int(np.prod(shape[1:], dtype=np.int64))))
    return [slice(start, start + rows) for start in range(0, shape[0], rows)]


def frozen_array(data) -> np.ndarray:
    """A float64 (complex128 for complex data) copy of `data` that cannot be
    written to."""
    array = numbers(np.array(data, copy=True))
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Value:
    """A snapshot of one tensor: its shape, torch dtype name and float64 data.

    `data` is None when the number could not be read (a freed saved tensor,
    a tensor modified in place after the op that made it).
    """

    shape: Tuple[int, ...]
    dtype: str
    data: Optional[np.ndarray] = field(default=None, compare=False)
    device: str = "cpu"
    # computed by the row's forward in float64 (derive/replay.py), not torch's own rounded number
    replayed: bool = field(default=False, compare=False)

    @classmethod
    def of(cls, data, dtype: str = "float64", device: str = "cpu") -> "Value":
        array = frozen_array(data)
        return cls(tuple(array.shape), dtype, array, device)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def known(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class Source:
    """Where an op was written: the file, the line, the line's code, and the
    exact sub-expression when the interpreter can say (Python >= 3.11)."""

    file: str
    line: int
    code: str
    expr: Optional[str] = None

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Operand:
    """One operand of a node, in the order of ``grad_fn.next_functions``.

    `producer` is the id of the node whose output feeds this operand, or None
    for a constant (a tensor that does not require grad, a Python number), for
    the variable behind a leaf, and for an operand on a branch the call does
    not differentiate (autograd.grad(u, x) and a layer's weight); only the
    constants and that last kind have `requires_grad` False.
    """

    name: str  # the rule's word for it: "self", "other", "mat1", ...
    label: str  # the user's word for it: "y", "2", "w", "y * y"
    value: Optional[Value]
    producer: Optional[int] = None
    producer_output: int = 0
    requires_grad: bool = True


@dataclass(frozen=True)
class Hook:
    """A user's hook on a gradient the node receives (``tensor.register_hook``
    on its output, ``grad_fn.register_hook``/``register_prehook``): it may
    change the gradient torch passes on, which no rule can know."""

    kind: str  # "tensor hook", "node hook", "node pre-hook"
    location: str = ""  # "train.py:12", where it was registered, when recorded


@dataclass(frozen=True)
class Node:
    """One grad_fn node. Torch's own gradients for it are not here but in
    `graphexplain.observed` (Note [independence of the derived side])."""

    id: int
    op: str  # grad_fn type name: "MulBackward0"
    name: str  # user's name of the output, or the source expression
    operands: Tuple[Operand, ...]
    outputs: Tuple[Optional[Value], ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    source: Optional[Source] = None
    module: Optional[str] = None  # "model.lin (Linear)"
    hooks: Tuple[Hook, ...] = ()
    # For a node an earlier call's backward made (create_graph=True), which
    # gradient it is: "∂u/∂x, returned by call 1". The nodes below it are
    # that call's backward ops (the double-backward nodes).
    origin: Optional[str] = None
    # For a node whose backward is hand-written (a custom autograd.Function):
    # its forward, run again by graphexplain, as a graph of its own.
    inner: Optional["InnerForward"] = None

    @property
    def is_leaf(self) -> bool:
        return self.op == "AccumulateGrad"

    @property
    def output(self) -> Optional[Value]:
        return self.outputs[0] if self.outputs else None


@dataclass(frozen=True)
class Leaf:
    """A tensor the gradient is wanted for: a `requires_grad` leaf under
    ``.backward()``, or one of the ``inputs`` of ``torch.autograd.grad``.

    `grad_before` is ``.grad`` before the call (None if it was None): the
    state the call starts from. What torch made of it is in `observed`.
    """

    node: int
    name: str
    value: Value
    grad_before: Optional[np.ndarray] = None
    accumulates: bool = True  # False under torch.autograd.grad: .grad untouched
    # For an input that is not a leaf (`h = x.sin()`): the op that made it,
    # then where, "SinBackward0, h = x.sin() (train.py:4)". Its node stands
    # for the gradient torch captures at h, not for that op (Note [a non-leaf
    # input is drawn as a leaf] in capture/subgraph.py).
    produced_by: Optional[str] = None


@dataclass(frozen=True)
class Root:
    """An output the backward call starts from, with the gradient it was
    seeded with (ones for a scalar `loss.backward()`, `v` for `z.backward(v)`)."""

    node: int
    output: int
    name: str
    value: Value
    grad_output: np.ndarray


@dataclass(frozen=True)
class Constant:
    """A tensor the user cut off from the graph (detach, no_grad,
    requires_grad=False) that still feeds an op in it."""

    name: str
    shape: Tuple[int, ...]
    reason: str
    used_by: Tuple[int, ...]

    @property
    def shown_shape(self) -> Tuple[int, ...] | None:
        """The shape to print after the name: none where the name is the shape
        already (`constant(8, 64, 128)`, what a tensor no variable names is called)."""
        return None if self.name.endswith(str(tuple(self.shape))) else self.shape


@dataclass(frozen=True)
class Unused:
    """An input of the call that none of its outputs depends on: torch
    computes nothing for it. `returned` says what the script gets for it:
    None under ``allow_unused=True``, zeros under ``materialize_grads=True``,
    an untouched .grad under ``backward(inputs=...)``."""

    name: str
    shape: Tuple[int, ...]
    returned: str  # "torch returned None for it (allow_unused=True)"


@dataclass(frozen=True)
class Graph:
    """The graph behind one backward call: the part of torch's graph that
    the call differentiates, from the roots down to the leaves it asked for,
    nothing that leads elsewhere. Node ids are positions in `nodes`, which
    is in backward order: every node comes before the nodes that feed it,
    roots first."""

    nodes: Tuple[Node, ...]
    roots: Tuple[Root, ...]
    leaves: Tuple[Leaf, ...]
    call: str = "backward()"  # how the script asked: "z.backward()"
    call_source: Optional[Source] = None
    constants: Tuple[Constant, ...] = ()
    unused: Tuple[Unused, ...] = ()  # inputs no output depends on (allow_unused)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def consumers(self, node_id: int) -> Tuple[Tuple[int, int], ...]:
        """(consumer id, operand index) for every operand fed by `node_id`."""
        return self._consumer_map.get(node_id, ())

    @cached_property
    def _consumer_map(self) -> Mapping[int, Tuple[Tuple[int, int], ...]]:
        # One pass over the graph, kept: asked per node, a scan each time was
        # quadratic (21 s on a chain of 10k nodes).
        found: dict = {}
        for consumer in self.nodes:
            for index, operand in enumerate(consumer.operands):
                if operand.producer is not None:
                    found.setdefault(operand.producer, []).append((consumer.id, index))
        return {producer: tuple(pairs) for producer, pairs in found.items()}

    def leaf_for(self, node_id: int) -> Optional[Leaf]:
        return next((leaf for leaf in self.leaves if leaf.node == node_id), None)


@dataclass(frozen=True)
class InnerForward:
    """A node's forward, run again on float64 copies of the node's inputs
    and captured as a `Graph` of its own (capture/recapture.py): the
    derivation differentiates that graph, so a hand-written backward (a
    custom autograd.Function's) is checked against its own forward.

    `inputs` has one entry per operand of the node: the index in
    ``graph.leaves`` of the copy that stands for it, None for an operand the
    forward never uses. `outputs` has one per output of the node: the index
    in ``graph.roots``, None for an output that is not differentiable. Where
    the forward could not be re-run, `graph` is None and `reason` says why,
    in one sentence.
    """

    title: str  # "Cube (custom Function)"
    graph: Optional[Graph] = None
    inputs: Tuple[Optional[int], ...] = ()
    outputs: Tuple[Optional[int], ...] = ()
    reason: str = ""
    intentional: Optional[str] = None  # the class's graphexplain_intentional: why its gradient is a surrogate
    owner: str = ""  # "Cube": whose forward this is
    written_out: bool = False  # a fused kernel's forward written out (a `Composite` row), not a Function's

    @property
    def forward_words(self) -> str:
        """How the walkthrough names the forward that was run again."""
        return f"{self.owner}, the kernel written out," if self.written_out else f"{self.owner}.forward"


@dataclass(frozen=True, eq=False)  # (numbers compared by identity, as Value.data)
class PositionMap:
    """Where each output element of a routing node came from, as torch's own
    *forward* says (capture/positions.py runs it on positions): output
    element outputs[e] holds weights[e]·(input element inputs[e]), flat
    positions among all the node's outputs and all its inputs, one after
    another; `weights` is None where every edge is a plain copy. With
    `planes` > 1 the edges are those of one plane (the last dims, of
    `input_plane` and `output_plane` elements), the same for every plane
    before them (pools and interpolation treat each (batch, channel) alike).
    Capture records it in ``Node.params[PositionMap.PARAM]``; derive reads
    it as plain numbers, never torch's backward.

        >>> PositionMap(np.array([0, 1]), np.array([1, 0]), None, ((2,),)).planes
        1
    """

    PARAM: ClassVar[str] = "position_map"

    outputs: np.ndarray
    inputs: np.ndarray
    weights: Optional[np.ndarray]
    output_shapes: Tuple[Tuple[int, ...], ...]
    planes: int = 1
    input_plane: int = 0
    output_plane: int = 0
