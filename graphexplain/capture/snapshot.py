"""The graph behind a backward call, copied out of torch into `model.Graph`.

`PendingCall` is made just before the real backward runs: it takes the part
of the grad_fn graph the call differentiates (`subgraph.Subgraph`), copies
every value a node needs (saved tensors are freed by the backward pass), and
registers a hook on each node that copies the gradients torch passes in and
out. After the real backward, `finish()` removes the hooks and returns the
immutable Graph.

Note [why saved tensors may be None]
torch saves only what a node's own backward formula needs: for ``y * 2``,
MulBackward0 keeps ``other`` (the 2) but not ``self``, since no gradient
flows to the 2. The operand's value then comes from the node that produced
it, or from the call the recorder saw.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from ..notation import is_number
from ..model import Constant, Graph, Hook, Leaf, Node, Operand, Root, Source, Unused, Value, frozen_array
from ..observed import LeafGradients, NodeGradients, Observed
from ..rules import lookup
from ..rules.kinds import Composite
from .naming import Names, composed_name, expression_name
from .provenance import KEY, ORIGIN, Origin, Provenance, Recorder
from .composites import composite_inner
from .positions import recorded as position_map_params
from .recapture import function_inner, is_function
from .view_writes import VIEW_WRITE
from .subgraph import Captured, Subgraph, backward_order, gradient_edge, input_edge, is_accumulator


class _Copies:
    """Note [one copy per tensor]
    One call reads the same tensor many times: a leaf is the AccumulateGrad
    node's value and an operand of the op that uses it, the gradient torch
    passes out of one node is the one passed into the next. Each read made
    a float64 copy, and on a 2000×2000 matmul those copies were most of the
    memory graphexplain took. Within one call a tensor is copied once: the
    copy is kept by the tensor's identity and version (an in-place write
    makes a new copy), through a weak reference, so no tensor lives longer
    (AccumulateGrad still steals an unshared gradient) and an id reused by
    a new tensor finds its entry dead.

    A big tensor read through two Python objects (a hook's argument, then
    the leaf's .grad: torch wraps the one gradient twice) is found by its
    storage (Note [the same numbers, read twice])."""

    def __init__(self):
        self._seen: Dict[int, Tuple[Any, int, Optional[np.ndarray]]] = {}
        self._stored: Dict[Tuple, np.ndarray] = {}  # big tensors by where their numbers lie

    def __call__(self, tensor, convert, any_dtype: bool = False) -> Optional[np.ndarray]:
        try:
            version = tensor._version
            entry = self._seen.get(id(tensor))
            if entry is not None and entry[0]() is tensor and entry[1] == version and _wanted(entry[2], any_dtype):
                return entry[2]
            reference = weakref.ref(tensor)
        except Exception:  # inference tensors keep no version
            return convert(tensor)
        place = _place(tensor)
        array = self._stored.get(place) if place is not None else None
        if array is None or not _wanted(array, any_dtype) or not _holds_numbers(tensor, array):
            array = convert(tensor)
            if place is not None and isinstance(array, np.ndarray):
                self._stored[place] = array
        self._seen[id(tensor)] = (reference, version, array)
        return array

    @contextlib.contextmanager
    def active(self):
        token = _COPIES.set(self)
        try:
            yield
        finally:
            _COPIES.reset(token)


_COPIES: ContextVar[Optional[_Copies]] = ContextVar("graphexplain_copies", default=None)


def _wanted(array: Optional[np.ndarray], any_dtype: bool) -> bool:
    """Whether a kept copy serves the read: a value needs float64 numbers, torch's number any dtype."""
    return any_dtype or array is None or array.dtype.kind != "f" or array.dtype == np.float64


# Note [the same numbers, read twice]
# On a 2000×2000 product torch hands each operand's gradient to the node's
# hook, then keeps it as the leaf's .grad, and Python sees two objects:
# the copy kept by identity was made again, 16 MB each, at the run's peak.
# A big tensor's copy is also kept by where its numbers lie (data pointer,
# shape, strides, dtype); found there, it is taken only if it holds the
# tensor's numbers bit for bit, compared block by block. A freed gradient
# whose memory a new one reuses then holds other numbers and gets its own
# copy; one that holds the same numbers has, to the bit, the copy it would
# have got. Small tensors are not worth the comparison.
_BIG = 1 << 16  # elements


def _place(tensor) -> Optional[Tuple]:
    """Where a big, plain, contiguous CPU or device tensor keeps its numbers; None for any other."""
    try:
        if tensor.numel() < _BIG or tensor.layout != torch.strided or tensor.is_complex() or \
                not tensor.is_contiguous() or tensor._is_zerotensor() or tensor.device.type == "meta":
            return None
        return tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype, str(tensor.device)
    except Exception:  # functorch wrappers, freed storage
        return None


def _holds_numbers(tensor, array: np.ndarray) -> bool:
    """Whether `array` is, bit for bit, `tensor` converted to its dtype."""
    if not isinstance(array, np.ndarray) or array.shape != tuple(tensor.shape) or not array.flags.c_contiguous:
        return False
    flat, kept = tensor.detach().reshape(-1), array.reshape(-1)
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(kept.dtype.itemsize)
    if bits is None:
        return False
    step = 1 << 18
    for start in range(0, kept.size, step):
        ours = kept[start:start + step]
        theirs = flat[start:start + step].to("cpu").numpy().astype(kept.dtype, copy=False)
        if not np.array_equal(ours.view(bits), theirs.view(bits)):
            return False
    return True


def to_numpy(tensor) -> Optional[np.ndarray]:
    """A float64 copy of a tensor on the CPU, or None if it cannot be read."""
    if not isinstance(tensor, torch.Tensor):
        return None
    copies = _COPIES.get()
    return copies(tensor, _to_numpy) if copies is not None else _to_numpy(tensor)


def _to_numpy(tensor) -> Optional[np.ndarray]:
    try:
        tensor = tensor.detach()
        if tensor._is_zerotensor():  # torch's storage-free zeros (sgn's gradient of a real input)
            return frozen_array(np.zeros(tuple(tensor.shape)))
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        if tensor.is_complex():  # kept whole: Note [complex gradients] in derive/complex.py
            return _frozen_copy(tensor.resolve_conj().resolve_neg(), torch.complex128)
        return _frozen_copy(tensor, torch.float64)
    except Exception:  # meta tensors, quantized tensors, freed storage
        return None


def _frozen_copy(tensor, dtype) -> np.ndarray:
    """`tensor` as a read-only numpy array of `dtype`, copied once: a tensor
    converted by ``.to`` is already a copy nobody else holds, and copying it
    again cost a second full array for every big tensor (docs/performance.md).
    An expanded tensor (Note [expanded tensors copied once])
    keeps its stride-0 dims as a broadcast view."""
    expanded = _expanded_dims(tensor)
    if expanded:
        compact = tensor
        for dim in expanded:
            compact = compact.narrow(dim, 0, 1)
        return np.broadcast_to(_frozen_copy(compact, dtype), tuple(tensor.shape))  # read-only
    converted = tensor.to("cpu", dtype)
    array = converted.numpy()
    if converted is tensor or not array.flags.c_contiguous:  # shared with the tensor, or strided
        array = np.array(array, copy=True, order="C")
    array.flags.writeable = False
    return array


# Note [expanded tensors copied once]
# torch passes the gradient of a mean or a sum on as the upstream expanded
# over the reduced elements: a stride-0 view of one number. Copied as it is
# shown, it became a full float64 array (32 MB for 2000×2000); copied as
# what it holds and broadcast back, it is one number. numpy's broadcast
# view reads the same at every index, and is read-only as a copy must be.
def _expanded_dims(tensor) -> Tuple[int, ...]:
    """The dims along which `tensor` repeats one slice (stride 0, size > 1)."""
    try:
        if tensor.layout != torch.strided or tensor.numel() < 2:
            return ()
        return tuple(d for d, (n, stride) in enumerate(zip(tensor.shape, tensor.stride())) if stride == 0 and n > 1)
    except Exception:  # a tensor without strides (nested, meta)
        return ()


def torch_number(tensor) -> Optional[np.ndarray]:
    """A gradient torch computed, as verification will read it. Every number
    of torch's backward passes through here (tests/test_independence.py
    scales them all, and no derived number may move). A float32 gradient
    is kept in float32 (Note [torch's numbers in their own dtype])."""
    if not isinstance(tensor, torch.Tensor):
        return None
    if tensor.dtype != torch.float32:
        return to_numpy(tensor)
    copies = _COPIES.get()
    return copies(tensor, _own_dtype, any_dtype=True) if copies is not None else _own_dtype(tensor)


# Note [torch's numbers in their own dtype]
# Torch's gradients are read by verification alone, which compares them
# with float64 derived numbers; a float32 number converts to float64
# exactly, so it is kept as torch made it, half the memory, and converted
# where it is compared (block by block, Note [a big check, block by block])
# or shown (model.numbers). Values the derivation computes with stay
# float64: a tensor copied as a value first is not copied again.
def _own_dtype(tensor) -> Optional[np.ndarray]:
    try:
        tensor = tensor.detach()
        if tensor._is_zerotensor() or tensor.layout != torch.strided:
            return _to_numpy(tensor)
        return _frozen_copy(tensor, torch.float32)
    except Exception:  # meta tensors, freed storage
        return None


def index_or_numbers(tensor) -> Optional[np.ndarray]:
    """A saved tensor a row reads as a parameter: an index or a mask keeps
    its int64 or bool dtype (a routing row indexes with it), any other
    tensor is read as float64 numbers."""
    if tensor.dtype == torch.bool or not (tensor.is_floating_point() or tensor.is_complex()):
        try:
            return tensor.detach().to("cpu").numpy().astype(bool if tensor.dtype == torch.bool else np.int64)
        except Exception:  # meta tensors, freed storage
            return None
    return to_numpy(tensor)


def kept_grad(tensor):
    """A tensor's .grad; None, without torch's warning, for a non-leaf that
    keeps none (it keeps one after retain_grad(), or backward(inputs=[it]))."""
    if not isinstance(tensor, torch.Tensor) or not (tensor.is_leaf or tensor.retains_grad):
        return None
    return tensor.grad


def value_of(tensor) -> Optional[Value]:
    if not isinstance(tensor, torch.Tensor):
        if isinstance(tensor, (int, float)) and not isinstance(tensor, bool):
            return Value.of(float(tensor), dtype=type(tensor).__name__)
        return None
    return Value(tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""), to_numpy(tensor),
                 str(tensor.device))


def hooks_of(tensor) -> Tuple[Hook, ...]:
    """The user's hooks on a tensor's gradient (``tensor.register_hook``),
    each with where its function was written."""
    try:
        registered = list((tensor._backward_hooks or {}).values())
    except Exception:
        return ()
    hooks = []
    for function in registered:
        code = getattr(function, "__code__", None)
        where = f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}" if code is not None else ""
        hooks.append(Hook("tensor hook", where))
    return tuple(hooks)


def _plain(value: Any) -> Any:
    """A saved non-tensor argument as plain Python: SymInts become ints, and
    negative ints come back negative (Note [saved ints read back unsigned]
    in derive/arguments.py), so the JSON says dim=-1."""
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, torch.Tensor):  # one of a list of saved tensors (index's `indices`)
        return index_or_numbers(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 2 ** 63:
        return value - 2 ** 64
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    try:
        return int(value)
    except Exception:
        return str(value)


def _saved(node) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """The node's saved attributes, split into parameters and tensors."""
    params: Dict[str, Any] = {}
    tensors: Dict[str, torch.Tensor] = {}
    for attribute in dir(node):
        if not attribute.startswith("_saved_"):
            continue
        try:
            saved = getattr(node, attribute)
        except Exception:  # freed by an earlier backward without retain_graph
            continue
        name = attribute[len("_saved_"):]
        if isinstance(saved, torch.Tensor):
            tensors[name] = saved
        else:
            params[name] = _plain(saved)
    return params, tensors


def _number_label(value) -> str:
    """`2` for 2 and 2.0 alike (torch keeps a Python 2 as a float tensor)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


@dataclass(frozen=True)
class CallOptions:
    """The arguments of a call that change what torch returns for an input."""

    allow_unused: bool = False
    materialize_grads: bool = False


class NothingReached(ValueError):
    """The call's outputs lead to none of its inputs: there is no graph to explain."""


class PendingCall:
    """One backward call, between its capture and the end of the real backward:
    the vertices of its `Subgraph`, copied into `model.Node`s."""

    def __init__(self, roots: Sequence[torch.Tensor], grad_outputs: Sequence[Optional[torch.Tensor]],
                 names: Names, recorder: Optional[Recorder], call: str, call_source: Optional[Source],
                 inputs: Optional[Sequence[torch.Tensor]] = None, accumulates: bool = True,
                 input_edges: Optional[Sequence[Tuple[Any, int]]] = None, options: CallOptions = CallOptions(),
                 depth: int = 0):
        self._copies = _Copies()  # Note [one copy per tensor]
        with self._copies.active():
            self._capture(roots, grad_outputs, names, recorder, call, call_source, inputs, accumulates,
                          input_edges, options, depth)

    def _capture(self, roots, grad_outputs, names, recorder, call, call_source, inputs, accumulates,
                 input_edges, options, depth) -> None:
        self.names = names
        self.depth = depth  # how many Functions' forwards this call's graph is inside (capture/recapture.py)
        self.recorder = recorder
        self.call = call
        self.call_source = call_source
        self.accumulates = accumulates
        self.options = options
        self.root_tensors = [root for root in roots if isinstance(root, torch.Tensor)]
        root_edges = [gradient_edge(root) for root in roots]
        everything = backward_order([node for node, _ in root_edges])
        self.everything = everything  # the graph as it was before the call (kept alive for intercept.py)
        every_node = inputs is None  # backward() without inputs: torch runs every node behind the roots
        if every_node:
            input_edges = [(node, 0) for node in everything if is_accumulator(node)]
            inputs = [node.variable for node, _ in input_edges]
        elif input_edges is None:  # (given when known: get_gradient_edge fails on sparse leaves)
            input_edges = [input_edge(t) for t in inputs]
        self.inputs = list(inputs)
        self.input_edges = list(input_edges)
        self.part = Subgraph(root_edges, self.input_edges, self.inputs, everything, every_node)
        self.raw, self.index, self.root_vertices = self.part.vertices, self.part.index, self.part.root_vertices
        if not self.raw:
            raise NothingReached("no output of the call leads to any of its inputs, so torch computed "
                                 "no gradient at all")
        self.torch_upstream: Dict[int, Tuple] = {}
        self.torch_downstream: Dict[int, Tuple] = {}
        self.captured_upstream: Dict[int, Optional[np.ndarray]] = {}  # node id → what reached a Captured
        self._hooks = []
        self._cut: Set[Tuple[int, int]] = set()  # (node id, operand index) of operands on a cut branch

        self.node_names = self._name_nodes()
        self.nodes = [self._vertex_node(i, vertex) for i, vertex in enumerate(self.raw)]
        self.roots = [
            Root(self.index[id(vertex)], nr, self._root_name(root, vertex), value_of(root), self._seed(root, grad))
            for root, grad, (vertex, nr) in zip(roots, grad_outputs, self.root_vertices) if vertex is not None
        ]
        # The inputs the graph reaches, each once, in the call's order; the others are unused.
        self.leaf_edges, self.leaf_tensors, self.unused_tensors = [], [], []
        for position, (tensor, (node, nr)) in enumerate(zip(self.inputs, self.input_edges)):
            vertex = self.part.input_vertex(node, nr)
            if vertex is None:
                self.unused_tensors.append((position, tensor))
            elif all(v is not vertex for v, _ in self.leaf_edges):
                self.leaf_edges.append((vertex, 0))
                self.leaf_tensors.append(tensor)
        self.grad_before = [self._grad_of(t) if accumulates else None for t in self.leaf_tensors]
        self.constants = self._constants()

    @staticmethod
    def _grad_of(tensor) -> Optional[np.ndarray]:
        return to_numpy(kept_grad(tensor))

    # --- names ---------------------------------------------------------------
    def _record(self, node) -> Optional[Provenance]:
        try:
            return node.metadata.get(KEY)
        except Exception:
            return None

    def _name_nodes(self) -> List[str]:
        """Each node's name: the variable that holds its output now, else the
        variable its line assigned (unless that name now means another
        node, as `z` does after `z = z.mean()`), else its source expression.
        A non-leaf input is called what the script calls it."""
        names: List[str] = [""] * len(self.raw)
        for i, vertex in enumerate(self.raw):
            if isinstance(vertex, Captured):
                names[i] = self.names.tensor(vertex.tensor)
            elif is_accumulator(vertex):
                names[i] = self.names.tensor(vertex.variable) or f"leaf{i}"
            else:
                names[i] = self.names.node(vertex)
        taken = set(names)
        records = [None if isinstance(vertex, Captured) else self._record(vertex) for vertex in self.raw]
        results = self._expression_results(records)
        for i, record in enumerate(records):
            if names[i] or record is None or not record.direct:
                continue
            if record.assigned and record.assigned not in taken:
                names[i] = record.assigned
                taken.add(record.assigned)
            elif record.source is not None and record.source.expr and i in results:
                names[i] = expression_name(record.source.expr)
        # Nodes made inside a call (F.linear's transpose) are named after what
        # they apply to; their producers come later in backward order.
        plain = [bool(name) for name in names]  # named by the script, not composed here
        for i in reversed(range(len(self.raw))):
            if names[i]:
                continue
            vertex = self.raw[i]
            if isinstance(vertex, Captured):
                names[i] = self._label(vertex.node)
                continue
            if self._origin_of(vertex) is not None:
                names[i] = self._backward_made_name(vertex)
                continue
            inputs = [n for n, _ in vertex.next_functions if n is not None]
            inner = [names[self.index[id(n)]] if id(n) in self.index else self._label(n) for n in inputs]
            inner_plain = [plain[self.index[id(n)]] if id(n) in self.index else self._named(n) for n in inputs]
            rule = lookup(type(vertex).__name__)
            verb = _short_op(type(vertex).__name__)
            names[i] = composed_name(verb, inner, inner_plain, i + 1) if inner else (rule.title if rule else verb)
        return names

    # Note [one name for a call that runs several ops]
    # A line such as `out = self.layer2(out)` runs every op of the
    # Sequential (conv, batch norm, relu, pool) inside torch's code, and each
    # op's source is that one call. Named all by the expression, four nodes
    # were `self.layer2(out)`, and each formula named its input after
    # itself. The expression's name goes to the op whose output is the
    # call's result: among the ops run inside the same call site, one that no
    # other of them consumes. The others get the composed name (`relu#9`), as
    # the ops F.linear makes on the way do. A loop that runs the site again
    # with no other op between joins its calls into one group; those steps
    # are then composed names too, never a wrong one.
    def _expression_results(self, records) -> Set[int]:
        """The nodes that may take their source expression's name (Note [one name for a call that runs
        several ops]): every node but those run inside a call site whose result is another node."""
        groups: Dict[int, List[int]] = {}
        for i, record in enumerate(records):
            if record is not None and record.inside and record.source is not None:
                groups.setdefault(id(record.source), []).append(i)
        keep = set(range(len(records)))
        shared = [set(members) for members in groups.values() if len(members) > 1]
        if not shared:
            return keep
        group_of = {i: k for k, members in enumerate(shared) for i in members}
        for j, vertex in enumerate(self.raw):  # j consumes what its next_functions produce
            if j not in group_of or isinstance(vertex, Captured):
                continue
            for producer, _ in vertex.next_functions:
                i = self.index.get(id(producer)) if producer is not None else None
                if i is not None and group_of.get(i) == group_of[j]:
                    keep.discard(i)
        return keep

    def _label(self, node, depth: int = 0) -> str:
        """What to call a node outside the call's graph (a cut branch, the
        op that made a non-leaf input), for the operand it feeds."""
        if is_accumulator(node):
            return self.names.tensor(node.variable) or "leaf"
        name = self._named(node)
        if name:
            return name
        if self._origin_of(node) is not None:
            return self._backward_made_name(node)
        inputs = [n for n, _ in node.next_functions if n is not None] if depth < 2 else []
        verb = _short_op(type(node).__name__)
        return composed_name(verb, [self._label(n, depth + 1) for n in inputs],
                             [bool(self._named(n)) for n in inputs], None) if inputs else verb

    def _named(self, node) -> str:
        """The script's own name for a node outside the call's graph, or ""."""
        if is_accumulator(node):
            return self.names.tensor(node.variable) or "leaf"
        record = self._record(node)
        name = self.names.node(node)
        if not name and record is not None and record.direct:
            name = record.assigned or (expression_name(record.source.expr) if record.source is not None
                                       and record.source.expr else "")
        return name

    def _root_name(self, root, vertex) -> str:
        return self.names.tensor(root) or self.node_names[self.index[id(vertex)]]

    def _module(self, record: Optional[Provenance]) -> Optional[str]:
        if record is None or record.module is None:
            return None
        module = record.module()
        if module is None:
            return None
        qualified = self.names.modules.get(id(module))
        kind = type(module).__name__
        return f"{qualified} ({kind})" if qualified else kind

    # --- nodes ---------------------------------------------------------------
    def _output_value(self, node, nr: int) -> Optional[Value]:
        """The node's output number `nr`: its numbers when the recorder kept
        them, else at least its shape and dtype."""
        if type(node).__name__ == "AccumulateGrad":
            return value_of(node.variable)
        record = self._record(node)
        if record is not None and nr in record.outputs:
            tensor, version = record.outputs[nr]
            if tensor._version == version:  # not modified in place since
                return value_of(tensor)
        try:
            meta = node._input_metadata[nr]  # what the backward expects: the output's shape
            return Value(tuple(meta.shape), str(meta.dtype).replace("torch.", ""), None, str(meta.device))
        except Exception:
            return None

    @staticmethod
    def _output_count(node, record) -> int:
        try:
            return len(node._input_metadata)
        except Exception:
            return 1 + max(record.outputs, default=0) if record is not None else 1

    def _vertex_node(self, i: int, vertex) -> Node:
        return self._captured_node(i, vertex) if isinstance(vertex, Captured) else self._node(i, vertex)

    def _captured_node(self, i: int, vertex: Captured) -> Node:
        """The node that stands for a non-leaf input (Note [a non-leaf input
        is drawn as a leaf]): what arrives is the input's gradient, passed on
        unchanged to the op that made it when that op leads to another input."""
        name = self.node_names[i]
        value = self._input_value(vertex.tensor, vertex.node, vertex.output_nr)
        producer = self.index.get(id(vertex.node))
        operand = Operand("self", name, value, producer, vertex.output_nr if producer is not None else 0, True)
        record = self._record(vertex.node)
        hooks = hooks_of(vertex.tensor) if isinstance(vertex.tensor, torch.Tensor) else ()
        return Node(i, "AccumulateGrad", name, (operand,), (value,), source=record.source if record else None,
                    hooks=hooks, origin=self._origin(vertex.node))

    def _input_value(self, tensor, node, nr: int) -> Optional[Value]:
        if isinstance(tensor, torch.Tensor):
            return value_of(tensor)
        return self._output_value(node, nr)  # a GradientEdge input: its shape at least

    @staticmethod
    def _origin_of(node) -> Optional[Origin]:
        """Which earlier call's gradient a node belongs to, when a backward with
        create_graph=True made it (capture/intercept.py notes it)."""
        try:
            origin = node.metadata.get(ORIGIN)
        except Exception:
            return None
        return origin if isinstance(origin, Origin) else None

    def _origin(self, node) -> Optional[str]:
        origin = self._origin_of(node)
        return origin.words if origin is not None else None

    def _backward_made_name(self, node) -> str:
        """A node of an earlier backward nobody named: "∂u/∂x" for the one
        that made the gradient, "mm in ∂u/∂x" for one on the way to it (to
        several: "mm in call 1's backward")."""
        origin, verb = self._origin_of(node), _short_op(type(node).__name__)
        if origin.top:
            return origin.gradients[0]
        return f"{verb} in {origin.gradients[0]}" if len(origin.gradients) == 1 else \
            f"{verb} in call {origin.call}'s backward"

    def _produced_by(self, vertex: Captured) -> str:
        """"MulBackward0, h = x.sin() * 2 (train.py:4)": the op behind a non-leaf input."""
        words = type(vertex.node).__name__
        record = self._record(vertex.node)
        source = record.source if record is not None else None
        if source is not None:
            words += f", {source.code.strip()} ({os.path.basename(source.file)}:{source.line})"
        origin = self._origin(vertex.node)
        return words + (f"; {origin}" if origin else "")

    def _node(self, i: int, node) -> Node:
        op = type(node).__name__
        record = self._record(node)
        params, saved = _saved(node)
        rule = lookup(op)
        if op == "AccumulateGrad":
            value = value_of(node.variable)
            operands = (Operand("self", self.node_names[i], value, None, 0, True),)
            return Node(i, op, self.node_names[i], operands, (value,), hooks=hooks_of(node.variable))
        edges = node.next_functions
        words = rule.inputs if rule is not None and len(rule.inputs) == len(edges) else \
            tuple(f"input{k}" for k in range(len(edges)))
        words = _view_write_words(node, words)
        positions = (rule.inputs + rule.params) if rule is not None else words
        record_operands = record.operands if record is not None and record.direct else ()
        if not self._aligned(record_operands, edges):
            record_operands = ()  # the call's arguments are not the node's (F.linear → addmm)
        operands = []
        for k, ((producer, nr), word) in enumerate(zip(edges, words)):
            operand = self._operand(word, producer, nr, saved, record_operands,
                                    positions.index(word) if word in positions else k)
            if producer is not None and operand.producer is None:
                self._cut.add((i, k))
            operands.append(operand)
        if rule is not None:
            self._fill_params(rule, params, saved, record_operands)
            if "self_geometry" in rule.params:
                params["self_geometry"] = self._geometry(*edges[0]) if edges else None
        params.update(_view_write_params(node))
        outputs = tuple(self._output_value(node, nr) for nr in range(self._output_count(node, record)))
        if outputs and (outputs[0] is None or not outputs[0].known) and "result" in saved:
            outputs = (value_of(saved["result"]),) + outputs[1:]
        params.update(position_map_params(rule, params, [o.value.shape if o.value else None for o in operands],
                                          [o.shape if o else None for o in outputs], self.recorder))
        source = record.source if record is not None else None
        # hooks sit on the tensors themselves: the recorder's live ones, the frame's, the roots
        hooked = [ref() for ref in record.live.values()] if record is not None else []
        hooked += self.names.hooked.get(id(node), []) + [root for root in self.root_tensors if root.grad_fn is node]
        hooked = [tensor for tensor in hooked if tensor is not None]
        hooks = tuple(dict.fromkeys(hook for tensor in hooked for hook in hooks_of(tensor)))
        inner = self._inner(node) if is_function(node) or isinstance(lookup(op), Composite) else None
        return Node(i, op, self.node_names[i], tuple(operands), outputs, params, source,
                    self._module(record), hooks, self._origin(node), inner)

    def _inner(self, node):
        """A custom Function's forward (or a fused kernel's, written out: a
        `Composite` row), run again as a graph of its own; never the
        script's problem when it cannot be."""
        rule = lookup(type(node).__name__)
        try:
            if isinstance(rule, Composite):
                return composite_inner(node, rule, self.recorder, self.depth)
            return function_inner(node, self.recorder, self.depth)
        except Exception as error:  # noqa: BLE001 - the user's forward may fail in any way
            from ..model import InnerForward
            owner = getattr(getattr(node, "_forward_cls", None), "__name__", "Function")
            title = rule.title if isinstance(rule, Composite) else f"{owner} (custom Function)"
            return InnerForward(title, None, owner=owner,
                                reason=f"its forward could not be run again ({type(error).__name__}: {error})")

    def _geometry(self, producer, nr: int) -> Optional[Tuple[int, Tuple[int, ...]]]:
        """(storage offset, strides) of the tensor behind an edge: where its
        elements lie in its storage, which as_strided reads. Known for a leaf,
        and for an op's output the recorder kept; torch's node keeps neither."""
        tensor = producer.variable if type(producer).__name__ == "AccumulateGrad" else None
        record = self._record(producer) if producer is not None and tensor is None else None
        if record is not None and nr in record.outputs and record.outputs[nr][0]._version == record.outputs[nr][1]:
            tensor = record.outputs[nr][0]
        if tensor is None:
            return None
        return int(tensor.storage_offset()), tuple(int(s) for s in tensor.stride())

    def _aligned(self, record_operands, edges) -> bool:
        """Whether the call's arguments line up with the node's operands:
        every operand fed by a node has a tensor argument of its shape."""
        for position, (producer, nr) in enumerate(edges):
            if producer is None:
                continue
            if position >= len(record_operands) or not isinstance(record_operands[position], torch.Tensor):
                return False
            expected = self._output_value(producer, nr)
            if expected is not None and tuple(record_operands[position].shape) != expected.shape:
                return False
        return True

    @staticmethod
    def _fill_params(rule, params, saved, record_operands) -> None:
        """Number arguments the row treats as parameters (the 2 in ``2 - x``):
        saved on the node when torch needs them, else as the call had them."""
        order = rule.inputs + rule.params
        for name in rule.params:
            if params.get(name) is not None:
                continue
            if name in saved:
                params[name] = index_or_numbers(saved[name])
                continue
            at = order.index(name)
            if at < len(record_operands) and isinstance(record_operands[at], (int, float)):
                params[name] = record_operands[at]

    def _operand(self, word, producer, nr, saved, record_operands, position) -> Operand:
        recorded = record_operands[position] if position < len(record_operands) else None
        if producer is not None:
            vertex, vertex_nr = self.part.edge(producer, nr)
            producer_id = self.index.get(id(vertex)) if vertex is not None else None
            value = value_of(saved[word]) if word in saved else None
            if value is None or not value.known:
                produced = self._output_value(producer, nr)
                if isinstance(vertex, Captured):
                    produced = self._input_value(vertex.tensor, producer, nr)
                value = produced if produced is not None and (value is None or produced.known) else value
            if producer_id is None:  # on a cut branch (Note [what the call differentiates])
                return Operand(word, self._label(producer), value, None, 0, False)
            return Operand(word, self.node_names[producer_id], value, producer_id, vertex_nr, True)
        # A constant: a number, or a tensor cut off from the graph.
        value = value_of(saved[word]) if word in saved else value_of(recorded)
        label = _number_label(recorded)
        if word in saved:
            label = self.names.tensor(saved[word]) or label
        if isinstance(recorded, torch.Tensor):
            label = label or self.names.tensor(recorded)
        if not label and value is not None and value.known:
            label = _number_label(float(value.data.reshape(-1)[0])) if value.numel == 1 else \
                f"constant{value.shape}"
        label = label or word
        return Operand(word, label, value, None, 0, False)

    def _seed(self, root: torch.Tensor, grad: Optional[torch.Tensor]) -> np.ndarray:
        if grad is None:
            return np.ones(tuple(root.shape))
        return to_numpy(grad)

    def _constants(self) -> Tuple[Constant, ...]:
        """Tensors without a gradient that feed the graph, and why."""
        shapes: Dict[str, Tuple[int, ...]] = {}
        users: Dict[str, List[int]] = {}
        for node in self.nodes:
            for k, operand in enumerate(node.operands):
                if operand.requires_grad or operand.producer is not None or operand.value is None:
                    continue
                if (node.id, k) in self._cut:
                    continue  # it requires grad, but this call asks for none through it
                if is_number(operand.label):
                    continue  # a plain number in the code
                shapes.setdefault(operand.label, operand.value.shape)
                users.setdefault(operand.label, []).append(node.id)
        return tuple(
            Constant(label, shape, self._constant_reason(label) or "does not require grad", tuple(users[label]))
            for label, shape in shapes.items())

    def _constant_reason(self, label: str) -> Optional[str]:
        if self.recorder is None:
            return None
        for node in self.raw:
            record = None if isinstance(node, Captured) else self._record(node)
            for operand in (record.operands if record is not None else ()):
                if isinstance(operand, torch.Tensor) and self.names.tensor(operand) == label:
                    return self.recorder.constant_reason(operand)
        return None

    # --- torch's numbers -------------------------------------------------------
    def register_hooks(self) -> None:
        for i, vertex in enumerate(self.raw):
            try:
                if isinstance(vertex, Captured):
                    if self.accumulates:  # backward(inputs=[h]) runs h's producer: see what reaches it
                        self._hooks.append(vertex.node.register_prehook(self._captured_hook(i, vertex.output_nr)))
                    continue  # under autograd.grad torch returns it (finish)
                self._hooks.append(vertex.register_hook(self._hook(i)))
            except Exception:
                pass  # a node that takes no hooks is shown unchecked

    def _hook(self, i: int):
        def record_gradients(grad_inputs, grad_outputs):
            with self._copies.active():
                self.torch_downstream[i] = tuple(torch_number(g) for g in grad_inputs)
                self.torch_upstream[i] = tuple(torch_number(g) for g in grad_outputs)
        return record_gradients

    def _captured_hook(self, i: int, output_nr: int):
        def record_gradient(grad_outputs):
            if output_nr < len(grad_outputs):
                with self._copies.active():
                    self.captured_upstream[i] = torch_number(grad_outputs[output_nr])
        return record_gradient

    def remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def finish(self, results: Optional[Sequence[Optional[torch.Tensor]]] = None) -> Tuple[Graph, Observed]:
        """The Graph, and torch's numbers for it apart (Note [independence of
        the derived side] in observed.py). `results` are the return values of
        torch.autograd.grad, one per input."""
        self.remove_hooks()
        with self._copies.active():
            return self._finish(results)

    def _finish(self, results) -> Tuple[Graph, Observed]:
        returned: Dict[int, Optional[np.ndarray]] = {}  # vertex id → what torch returned for it
        if results is not None:
            for (node, nr), result in zip(self.input_edges, results):
                vertex = self.part.input_vertex(node, nr)
                if vertex is not None and id(vertex) not in returned:
                    returned[id(vertex)] = torch_number(result)
        arrived: Dict[int, Optional[np.ndarray]] = {}  # node id → torch's gradient at it
        gradients = []
        for i, vertex in enumerate(self.raw):
            upstream = self.torch_upstream.get(i, ())
            if not upstream and id(vertex) in returned:
                upstream = (returned[id(vertex)],)
            if not upstream and i in self.captured_upstream:
                upstream = (self.captured_upstream[i],)
            arrived[i] = upstream[0] if upstream else None
            gradients.append(NodeGradients(upstream, self.torch_downstream.get(i, ())))
        leaves, observed_leaves = [], []
        for (vertex, _), tensor, before in zip(self.leaf_edges, self.leaf_tensors, self.grad_before):
            i = self.index[id(vertex)]
            after = _same_numbers(self._grad_after(tensor), arrived[i]) if self.accumulates else None
            produced_by = self._produced_by(vertex) if isinstance(vertex, Captured) else None
            leaves.append(Leaf(i, self.node_names[i], self.nodes[i].output, before, self.accumulates, produced_by))
            observed_leaves.append(LeafGradients(arrived[i], after))
        graph = Graph(tuple(self.nodes), tuple(self.roots), tuple(leaves), self.call, self.call_source,
                      self.constants, self._unused())
        return graph, Observed(tuple(gradients), tuple(observed_leaves))

    @staticmethod
    def _grad_after(tensor) -> Optional[np.ndarray]:
        return torch_number(kept_grad(tensor))

    def _unused(self) -> Tuple[Unused, ...]:
        """The inputs no root leads to, and what torch gives them."""
        if self.accumulates:
            returned = "its .grad is left as it was"
        elif self.options.materialize_grads:
            returned = "torch returned zeros for it (materialize_grads=True)"
        else:
            returned = "torch returned None for it (allow_unused=True)"
        unused = []
        for position, tensor in self.unused_tensors:
            name = self.names.tensor(tensor) if isinstance(tensor, torch.Tensor) else ""
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else ()
            unused.append(Unused(name or f"input {position + 1}", shape, returned))
        return tuple(unused)


def _same_numbers(copy: Optional[np.ndarray], earlier: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """`earlier` where `copy` holds exactly its numbers, else `copy`: a leaf's
    .grad after a first backward is the gradient that arrived at it, and
    keeping both copies cost a second full array per leaf."""
    if copy is None or earlier is None or copy is earlier or copy.shape != earlier.shape or \
            copy.dtype != earlier.dtype:
        return copy
    same = np.array_equal(copy, earlier) and all(np.array_equal(np.signbit(mine), np.signbit(theirs)) for mine, theirs in
                                                 _real_parts(copy, earlier))
    return earlier if same else copy  # nan ≠ nan: a copy with a nan stays its own; -0.0 is told from 0.0


def _real_parts(copy: np.ndarray, earlier: np.ndarray):
    """The pairs whose signs tell -0.0 from 0.0: real and imaginary parts of a complex gradient."""
    if np.iscomplexobj(copy):
        return ((copy.real, earlier.real), (copy.imag, earlier.imag))
    return ((copy, earlier),)


def _view_write(node):
    try:
        return node.metadata.get(VIEW_WRITE) if type(node).__name__ == "CopySlices" else None
    except Exception:
        return None


def _view_write_params(node) -> Dict[str, Any]:
    """A CopySlices node's view and the fn it wraps, as the recorder noted
    them (Note [a write into a view] in capture/view_writes.py), as plain
    data: the view's as_strided geometry in its base, fn's node name, what
    fn saved, and the view's numbers before and after the write."""
    if type(node).__name__ == "AsStridedBackward0":
        return _as_strided_of_a_written_base(node)
    write = _view_write(node)
    if write is None:
        return {}
    params: Dict[str, Any] = {
        "size": tuple(write.size), "stride": tuple(write.stride), "storage_offset": int(write.storage_offset),
        "base_geometry": (0, tuple(write.base_strides)),
        "view_before": to_numpy(write.before), "view_after": to_numpy(write.after),
    }
    if write.twin is not None:
        wrapped_params, wrapped_saved = _saved(write.twin)
        params["wrapped"] = type(write.twin).__name__
        params["wrapped_params"] = wrapped_params
        params["wrapped_saved"] = {name: index_or_numbers(tensor) for name, tensor in wrapped_saved.items()}
    return params


def _as_strided_of_a_written_base(node) -> Dict[str, Any]:
    """A view of a base written in place is read again by torch as
    as_strided of the base's new node, CopySlices; where the base lies in
    its storage is what the write noted (the base itself has moved on)."""
    edges = node.next_functions
    write = _view_write(edges[0][0]) if edges else None
    if write is None:
        return {}
    return {"self_geometry": (int(write.base_offset), tuple(write.base_strides))}


def _view_write_words(node, words: Tuple[str, ...]) -> Tuple[str, ...]:
    """A CopySlices node's operands: the base (self), then fn's other
    inputs, in the words of fn's row."""
    write = _view_write(node)
    rule = lookup(type(write.twin).__name__) if write is not None and write.twin is not None else None
    if rule is None or len(rule.inputs) != len(words):
        return words
    return ("self",) + tuple(rule.inputs[1:])


_SHORT = {
    "TBackward0": "t", "ViewBackward0": "view", "ExpandBackward0": "expand",
    "AddmmBackward0": "addmm", "MmBackward0": "mm", "UnsqueezeBackward0": "unsqueeze",
}


def _short_op(op: str) -> str:
    if op in _SHORT:
        return _SHORT[op]
    base = op[:-len("Backward0")] if op.endswith("Backward0") else op.rstrip("0123456789")
    base = base[:-len("Backward")] if base.endswith("Backward") else base
    return base.lower() or op
