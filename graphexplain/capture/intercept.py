"""Catching the script's backward calls.

While an `Interceptor` is active, ``Tensor.backward``, ``torch.autograd.backward``
and ``torch.autograd.grad`` are wrapped: the wrapper captures the graph
behind the call (a `PendingCall`), lets the *real* call run exactly as the
script asked, with the same arguments, and returns its result untouched.
An error torch raises is recorded with a plain-words explanation and then
raised again, unchanged, for the script to see.
"""

from __future__ import annotations

import ast
import bisect
import inspect
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..model import Graph, Source
from ..notation import shorten
from ..observed import Observed
from .naming import Names, names_in_frame
from .provenance import KEY, ORIGIN, Origin, Recorder, SourceFinder, call_text, stepping_aside
from .snapshot import CallOptions, NothingReached, PendingCall, kept_grad
from .subgraph import backward_order, gradient_edge


@dataclass(frozen=True)
class Selection:
    """Which backward calls are explained in full: "first" (the default),
    "last", "all", or a call number counted from 1."""

    which: str = "first"

    def wants(self, index: int) -> bool:
        if self.which in ("all", "last"):
            return True
        if self.which == "first":
            return index == 1
        return index == int(self.which)

    def may_want_after(self, index: int) -> bool:
        if self.which in ("all", "last"):
            return True
        return (1 if self.which == "first" else int(self.which)) > index

    @classmethod
    def parse(cls, text: str) -> "Selection":
        text = str(text).strip().lower()
        if text in ("first", "last", "all") or (text.isdigit() and int(text) >= 1):
            return cls(text)
        raise ValueError(f"--call takes first, last, all or a call number from 1, not {text!r}")


@dataclass(frozen=True)
class CallSummary:
    """One line's worth of a call: enough to list it without explaining it."""

    root: str
    root_value: Optional[float]  # the loss, when the root is a single number
    leaf_norms: Tuple[Tuple[str, float], ...] = ()


@dataclass
class CallRecord:
    index: int
    kind: str  # "backward" or "grad"
    call: str
    source: Optional[Source]
    summary: CallSummary
    graph: Optional[Graph] = None
    error: Optional[str] = None  # torch's message, when the call raised
    explanation: Optional[str] = None  # that message in plain words
    capture_problem: Optional[str] = None  # why the call was not captured
    capture_failed: bool = False  # ... because graphexplain's capture itself failed (not torch's nothing to do)
    observed: Optional[Observed] = None  # torch's numbers for `graph`
    updates: List = field(default_factory=list)  # updates.Update: what the script did to the leaves after it


# torch's error messages, in plain words. Substring → explanation.
PLAIN_WORDS = {
    "grad can be implicitly created only for scalar outputs":
        "{root} has shape {shape}, not a single number, so backward() does not know how "
        "to weigh its {numel} elements. Either reduce it to a scalar first ({root}.sum(), "
        "{root}.mean()), or pass a gradient of the same shape, {root}.backward(v): torch then "
        "computes the vector-Jacobian product vᵀ·J, and each leaf's .grad is that product.",
    "does not require grad and does not have a grad_fn":
        "{root} is not connected to any tensor with requires_grad=True (it was made from "
        "constants, under torch.no_grad(), or from a detached tensor), so there is no graph to "
        "run backward through.",
    "Trying to backward through the graph a second time":
        "This graph was already used by an earlier backward call, which freed the values it "
        "saved. Pass retain_graph=True to the first call, or rebuild the graph (run the forward "
        "pass again) before the second.",
    "modified by an inplace operation":
        "A tensor the backward pass needs was changed in place after the forward pass used it. "
        "Use an out-of-place op (x = x + 1 instead of x += 1) or clone it first.",
}


def _readable(tensor) -> bool:
    """Whether a tensor has numbers to read (a meta tensor has none)."""
    return isinstance(tensor, torch.Tensor) and tensor.device.type != "meta" and tensor.layout == torch.strided


def _number(tensor) -> Optional[float]:
    """A one-element tensor's number for a listing, or None where it has none."""
    if not _readable(tensor):
        return None
    try:
        return float(tensor.detach().reshape(()).item())
    except Exception:  # a tensor torch refuses to read (functorch wrappers, freed storage)
        return None


_OURS = threading.local()


@contextmanager
def ours():
    """Inside it, this thread's backward calls are graphexplain's own
    (explain() asks torch.autograd.grad for torch's numbers): not counted.
    A flag rather than the unwrapped function, because a torch-function
    mode (the recorder) dispatches to whatever torch.autograd.grad is now."""
    before = getattr(_OURS, "active", False)
    _OURS.active = True
    try:
        yield
    finally:
        _OURS.active = before


# Note [calls inside torch's transforms]
# torch.func.grad and vmap call torch.autograd.grad on their own wrapped
# tensors, and torch.compile's AOTAutograd calls it on fake tensors while it
# traces: those calls are torch's, not the script's, and reading their
# tensors would change or break them. They go straight to torch, uncounted
# (the recorder steps aside likewise: Note [the recorder steps aside]).
def _transformed(roots) -> bool:
    if stepping_aside():
        return True
    functorch = getattr(torch._C, "_functorch", None)
    wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
    return wrapped is not None and any(isinstance(r, torch.Tensor) and wrapped(r) for r in roots)


def plain_words(message: str, root: Optional[torch.Tensor], name: str = "") -> Optional[str]:
    """torch's error `message` about backward on `root`, in plain words."""
    for fragment, explanation in PLAIN_WORDS.items():
        if fragment in message:
            shape = tuple(root.shape) if isinstance(root, torch.Tensor) else ()
            numel = root.numel() if isinstance(root, torch.Tensor) else 0
            return explanation.format(root=name or "the output", shape=shape, numel=numel)
    return None


@dataclass(frozen=True)
class Request:
    """What a backward call asks torch for, read from its arguments."""

    kind: str  # "backward" or "grad"
    roots: List
    grad_outputs: List
    inputs: Optional[List]  # None: every leaf (backward() without inputs)
    create_graph: bool = False
    options: CallOptions = CallOptions()
    batched: bool = False  # is_grads_batched=True


BATCHED = ("is_grads_batched=True: torch runs the backward once for each row of grad_outputs, under "
           "vmap, and its per-node numbers are batched tensors graphexplain cannot read yet, so this "
           "call is listed, not explained. Loop over the rows (one torch.autograd.grad per row) to have "
           "each explained.")


def _problem_words(error: BaseException) -> str:
    return str(error) if isinstance(error, NothingReached) else f"{type(error).__name__}: {error}"


def _as_list(tensors) -> List:
    if tensors is None:
        return []
    if isinstance(tensors, torch.Tensor) or isinstance(tensors, torch.autograd.graph.GradientEdge):
        return [tensors]
    return list(tensors)


class Interceptor:
    """Wraps torch's three backward entry points while active."""

    def __init__(self, recorder: Optional[Recorder] = None, selection: Selection = Selection()):
        self.recorder = recorder
        self.selection = selection
        self.finder = recorder.finder if recorder is not None else SourceFinder()
        self._last_kept: Optional[CallRecord] = None  # under --call last: the one call whose graph is kept
        self.calls: List[CallRecord] = []
        # Note [backward calls from threads]: each thread may be inside one of
        # our wrappers (Tensor.backward calls autograd.backward) on its own, so
        # `busy` is per thread; the call count, the list of calls and the
        # recorder's pause are shared, so they change under the lock.
        self._local = threading.local()
        self._lock = threading.RLock()
        self._count = 0
        self._capturing = 0  # calls inside _intercept now, in any thread
        self._done_recording = False  # nothing later is explained: recording stays off
        self._originals = {}
        self._leaf_names: Dict[int, Tuple[torch.Tensor, str]] = {}  # id → (leaf, name), for listings
        self.watch = None  # capture/optimizers.UpdateWatch, armed after each explained call

    def __enter__(self) -> "Interceptor":
        tensor_backward = torch.Tensor.backward
        autograd_backward = torch.autograd.backward
        autograd_grad = torch.autograd.grad
        self._originals = {
            (torch.Tensor, "backward"): tensor_backward,
            (torch.autograd, "backward"): autograd_backward,
            (torch.autograd, "grad"): autograd_grad,
        }
        torch.Tensor.backward = self._wrap(tensor_backward, self._tensor_backward)
        torch.autograd.backward = self._wrap(autograd_backward, self._autograd_backward)
        torch.autograd.grad = self._wrap(autograd_grad, self._autograd_grad)
        return self

    def __exit__(self, *exc) -> None:
        for (owner, name), original in self._originals.items():
            setattr(owner, name, original)
        self._originals = {}

    def _wrap(self, original: Callable, describe: Callable) -> Callable:
        signature = inspect.signature(original)
        interceptor = self

        def wrapper(*args, **kwargs):
            # Tensor.backward calling autograd.backward, or graphexplain's own call (explain())
            if getattr(interceptor._local, "busy", False) or getattr(_OURS, "active", False):
                return original(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            request = describe(bound.arguments)
            if _transformed(request.roots):  # Note [calls inside torch's transforms]
                return original(*args, **kwargs)
            return interceptor._intercept(original, args, kwargs, request)

        wrapper.__wrapped__ = original
        wrapper.__doc__ = original.__doc__
        wrapper.__name__ = original.__name__
        return wrapper

    # Each reads the call's arguments into a `Request`.
    @staticmethod
    def _tensor_backward(arguments):
        return Request("backward", [arguments["self"]], [arguments.get("gradient")],
                       _as_list(arguments.get("inputs")) or None, bool(arguments.get("create_graph")))

    @staticmethod
    def _autograd_backward(arguments):
        roots = _as_list(arguments["tensors"])
        grads = _as_list(arguments.get("grad_tensors") or arguments.get("grad_variables"))
        return Request("backward", roots, grads + [None] * (len(roots) - len(grads)),
                       _as_list(arguments.get("inputs")) or None, bool(arguments.get("create_graph")))

    @staticmethod
    def _autograd_grad(arguments):
        roots = _as_list(arguments["outputs"])
        grads = _as_list(arguments.get("grad_outputs"))
        options = CallOptions(bool(arguments.get("allow_unused")), bool(arguments.get("materialize_grads")))
        return Request("grad", roots, grads + [None] * (len(roots) - len(grads)), _as_list(arguments["inputs"]),
                       bool(arguments.get("create_graph")), options, bool(arguments.get("is_grads_batched")))

    def _intercept(self, original, args, kwargs, request: "Request"):
        kind, roots, grads, inputs = request.kind, request.roots, request.grad_outputs, request.inputs
        with self._lock:
            self._count += 1
            index = self._count
            self._capturing += 1
            self._pause()
        if self.watch is not None:
            self.watch.disarm()  # the updates after the previous call end here
        if self._done_recording and self.recorder is not None:
            self.recorder.step_off()  # Note [the recorder steps off] in provenance.py
        frame = self.finder.user_frame(sys._getframe(2))
        source = self.finder.source(frame)
        call = (call_text(frame, source) or source.code) if source is not None else f"{kind}()"
        pending, problem, failed = None, None, False
        self._local.busy = True
        try:
            explain = self.selection.wants(index) and all(isinstance(r, torch.Tensor) for r in roots)
            if explain and request.batched:
                explain, problem = False, BATCHED
            names = names_in_frame(frame) if explain else None
            if explain:
                try:
                    pending = PendingCall(roots, grads, names, self.recorder, call, source, inputs,
                                          accumulates=kind == "backward", options=request.options)
                    pending.register_hooks()
                except Exception as error:  # never let our capture break the script
                    pending, problem, failed = None, _problem_words(error), not isinstance(error, NothingReached)
            walk = pending.everything if pending is not None else self._walk(roots)
            leaves = [node.variable for node in walk if type(node).__name__ == "AccumulateGrad"] \
                if pending is None else None
            if names is None:  # (autograd.grad's inputs are named as its roots are: they head its listed norms)
                names = self._names_for_listing(frame, [*roots, *(inputs if kind == "grad" and inputs else ())],
                                                leaves)
            try:
                result = original(*args, **kwargs)
            except BaseException as error:
                if pending is not None:
                    pending.remove_hooks()
                root = roots[0] if roots and isinstance(roots[0], torch.Tensor) else None
                self._add(CallRecord(
                    index, kind, call, source, self._summary(roots, [], names), None, str(error),
                    plain_words(str(error), root, names.tensor(root) if root is not None else ""), problem))
                raise
            graph, observed = None, None
            if pending is not None:
                try:
                    graph, observed = pending.finish(result if kind == "grad" else None)
                except Exception as error:
                    problem, failed = _problem_words(error), not isinstance(error, NothingReached)
            leaf_tensors = pending.leaf_tensors if pending is not None else \
                (inputs if inputs is not None and kind == "backward" else leaves)
            if request.create_graph and self.selection.may_want_after(index):
                try:
                    self._mark_origins(index, request, result, leaf_tensors, names, {id(node) for node in walk})
                except Exception:  # a nicety for a later call; never the script's problem
                    pass
            returned = (inputs, result) if kind == "grad" and inputs is not None else None
            summary = self._summary(roots, leaf_tensors, names, call, returned)
            record = CallRecord(index, kind, call, source, summary,
                                graph, capture_problem=problem, capture_failed=failed, observed=observed)
            self._add(record)
            if self.watch is not None and graph is not None:
                self.watch.arm(record.updates, leaf_tensors, names)
            if not self.selection.may_want_after(index):
                self._done_recording = True  # nothing later is explained: stop recording, keep the loop fast
            return result
        finally:
            with self._lock:
                self._capturing -= 1
                self._pause()
            self._local.busy = False

    def _add(self, record: CallRecord) -> None:
        """Keep the call, in call order whatever thread finishes first."""
        with self._lock:
            if self.selection.which == "last" and record.graph is not None:
                kept = self._last_kept
                if kept is not None and kept.index > record.index:
                    record.graph = record.observed = None  # a later call finished first: it is the last
                else:
                    if kept is not None:
                        kept.graph = kept.observed = None  # only the last one is kept
                    self._last_kept = record
            # in call order whatever thread finishes first; nearly always it goes at the end, and
            # sorting the whole list at every call made a 50000-step loop quadratic (1.25e9 keys)
            if not self.calls or self.calls[-1].index < record.index:
                self.calls.append(record)
            else:
                bisect.insort(self.calls, record, key=lambda r: r.index)

    @staticmethod
    def _mark_origins(index: int, request: "Request", result, leaf_tensors, names: Names, before) -> None:
        """Under create_graph=True the gradients the call made carry a graph of
        its backward ops. Note on each of those nodes which gradient it makes,
        so that a later call through them can say so. `before` holds the ids of
        the nodes the graph had before the call, which are not the backward's.
        (The note lives in grad_fn.metadata and dies with the node: Note [why
        provenance lives in grad_fn.metadata] in provenance.py.)"""
        if request.kind == "grad":
            root = ", ".join(names.tensor(r) or "output" for r in request.roots if isinstance(r, torch.Tensor))
            root = f"({root})" if len(request.roots) > 1 else root
            made = [(f"∂{root}/∂{names.tensor(t) or f'input {k + 1}'}", gradient)
                    for k, (t, gradient) in enumerate(zip(request.inputs, result or ()))]
        else:
            made = [(f"{names.tensor(t) or 'a leaf'}.grad", kept_grad(t)) for t in leaf_tensors or ()]
        tops: Dict[int, str] = {}  # node id → the gradient it outputs
        serves: Dict[int, Tuple[object, List[str]]] = {}  # node id → (node, the gradients it serves)
        for gradient_name, gradient in made:
            top = getattr(gradient, "grad_fn", None) if isinstance(gradient, torch.Tensor) else None
            pending = [top]
            while pending:
                node = pending.pop()
                if node is None or id(node) in before or type(node).__name__ == "AccumulateGrad":
                    continue
                try:
                    if KEY in node.metadata or ORIGIN in node.metadata:
                        continue  # a forward op of the script's, or an earlier call's backward
                except Exception:  # a node without metadata: nothing to note
                    continue
                gradients = serves.setdefault(id(node), (node, []))[1]
                if gradient_name in gradients:
                    continue
                gradients.append(gradient_name)
                if node is top:
                    tops.setdefault(id(node), gradient_name)
                pending.extend(child for child, _ in node.next_functions)
        for key, (node, gradients) in serves.items():
            top = key in tops
            node.metadata[ORIGIN] = Origin((tops[key],) if top else tuple(gradients), index, top)

    @staticmethod
    def _walk(roots) -> List:
        """The nodes behind the roots, for a call that is not explained: a
        walk over the graph, nothing copied."""
        try:
            return backward_order([gradient_edge(r)[0] for r in roots if isinstance(r, torch.Tensor)])
        except Exception:
            return []

    def _pause(self) -> None:
        """No provenance recorded for our own torch calls, nor once nothing
        later is explained (called under the lock)."""
        if self.recorder is not None:
            self.recorder.paused = self._capturing > 0 or self._done_recording

    def _names_for_listing(self, frame, roots, leaves) -> Names:
        """Names for a call that is only listed, kept cheap for training
        loops: the root's name by a look at the frame's variables, the
        leaves' names read in full only when a leaf is new (a loop's
        parameters come back every step)."""
        names = Names()
        scopes = [frame.f_locals, frame.f_globals] if frame is not None else []
        for root in roots:
            for scope in scopes:
                name = next((k for k, v in scope.items() if v is root), None)
                if name:
                    names.tensors[id(root)] = name
                    break
        if any(self._leaf_names.get(id(leaf), (None,))[0] is not leaf for leaf in leaves):
            full = names_in_frame(frame)
            self._leaf_names = {id(leaf): (leaf, full.tensor(leaf)) for leaf in leaves}
        names.tensors.update({key: name for key, (_, name) in self._leaf_names.items() if name})
        return names

    @staticmethod
    def _summary(roots, leaf_tensors, names, call: str = "", returned=None) -> CallSummary:
        """`returned`: autograd.grad's (inputs, gradients), whose norms stand for the
        leaves' (it leaves .grad alone)."""
        root = roots[0] if roots and isinstance(roots[0], torch.Tensor) else None
        value = _number(root) if root is not None and root.numel() == 1 else None
        norms = []
        if returned is not None:
            pairs = [(names.tensor(x) or f"input {k + 1}", g) for k, (x, g) in enumerate(zip(*returned))]
        else:
            pairs = [(names.tensor(t) or f"leaf {k + 1}", t.grad) for k, t in enumerate(leaf_tensors)
                     if kept_grad(t) is not None]
        for name, gradient in pairs:
            norm = _norm(gradient) if isinstance(gradient, torch.Tensor) and _readable(gradient) else None
            if norm is not None:
                norms.append((name, norm))
        root_name = (names.tensor(root) or names.node(root.grad_fn)) if root is not None else ""
        return CallSummary(root_name or root_words(call) or "output", value, tuple(norms))


def root_words(call: str) -> str:
    """What the call's text names as its root, for a root no variable names:
    `dydx[0]` in `torch.autograd.grad(outputs=dydx[0], inputs=x)`, `out.sum()`
    in `out.sum().backward()`; "" where the text does not say.

        >>> root_words("torch.autograd.grad(outputs=dydx[0], inputs=x)")
        'dydx[0]'
        >>> root_words("model(x).sum().backward(retain_graph=True)")
        'model(x).sum()'
    """
    try:
        tree = ast.parse(call.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return ""
    if not isinstance(tree, ast.Call):
        return ""
    function = tree.func
    owner = getattr(function, "value", None)
    module = isinstance(owner, ast.Attribute) and owner.attr == "autograd" or \
        isinstance(owner, ast.Name) and owner.id == "autograd"  # torch.autograd.backward(loss): a function
    if isinstance(function, ast.Attribute) and function.attr == "backward" and not module:
        root = owner  # loss.backward(v): the tensor it is called on
    else:
        given = {keyword.arg: keyword.value for keyword in tree.keywords}
        root = tree.args[0] if tree.args else given.get("outputs", given.get("tensors"))
    if isinstance(root, (ast.Tuple, ast.List)) and root.elts:
        root = root.elts[0]
    return shorten(ast.unparse(root)) if root is not None else ""


def _norm(gradient: torch.Tensor) -> Optional[float]:
    """The gradient's 2-norm, in float64 a block at a time: a float64 copy of a
    whole 2000×2000 gradient (32 MB) was the capture's peak memory."""
    try:
        blocks = gradient.detach().reshape(-1).split(1 << 18)
        norms = torch.tensor([float(torch.linalg.vector_norm(_widened(block))) for block in blocks],
                             dtype=torch.float64)
        return float(torch.linalg.vector_norm(norms))  # the norm of the blocks' norms: one block's is its own
    except Exception:  # a tensor torch refuses to read (functorch wrappers, freed storage)
        return None


def _widened(tensor: torch.Tensor) -> torch.Tensor:
    """float64, or complex128 for a complex tensor: `.double()` of a complex
    gradient would drop its imaginary part, with a warning on the user's stderr."""
    return tensor.to(torch.complex128) if tensor.is_complex() else tensor.double()
