"""A node's forward, run again under capture: the graph behind a hand-written backward.

A custom ``torch.autograd.Function`` brings its own backward, which no row
of the rule table describes. But its forward is ordinary torch code, and
that is the definition of what the backward must compute. So at capture
time graphexplain runs the forward again, on float64 copies of the inputs
the Function was called with (kept by the recorder: `FunctionCall`), with
grad enabled and under a recorder of its own, and keeps the graph torch
builds as an `InnerForward` on the node. The derivation differentiates that
graph; verification compares the result with what the hand-written backward
returned. `rerun` is the general mechanism (any torch callable on a node's
inputs); `function_inner` applies it to a custom Function's node.

Note [the re-run leaves the script as it was]
The forward runs on copies, never on the script's tensors; the random
number generators (torch's, numpy's, Python's) are saved before and put
back after, so a forward that draws (dropout) changes nothing the script
draws later; the script's recorder is paused and the run is marked as ours
(intercept.ours), so a backward call inside it counts as none of the
script's. A forward that draws gives other numbers the second time: its
outputs are compared with the ones the script got, and where they differ,
the node is left underived rather than checked against another mask.
"""

from __future__ import annotations

import inspect
import random
from contextlib import contextmanager
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..model import Graph, InnerForward, Value
from ..precision import epsilon
from .naming import Names
from .provenance import FUNCTION, KEY, FunctionCall, Recorder

MAX_DEPTH = 4  # a Function inside a Function inside ...: inner graphs this deep, no deeper
_LEAVING = ("numpy", "item", "tolist", "__float__", "__int__", "__index__", "__array__")


class CannotRerun(Exception):
    """The forward cannot be run again and followed; the message says why, in one sentence."""


def is_function(node) -> bool:
    """Whether a grad_fn node is a custom autograd.Function's (`CubeBackward`)."""
    return isinstance(node, torch.autograd.function.BackwardCFunction) and hasattr(node, "_forward_cls")


class _Watching(Recorder):
    """The recorder of the re-run: provenance as usual, and a note of every
    call that takes numbers out of torch from a tensor torch is following
    (``.item()``, ``.numpy()``), after which the graph is not the forward."""

    def __init__(self):
        super().__init__()
        self.left_torch: List[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _LEAVING and args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            self.left_torch.append(name)
        return super().__torch_function__(func, types, args, kwargs)


@contextmanager
def _script_state_kept(paused: Optional[Recorder]):
    """Note [the re-run leaves the script as it was]."""
    from .intercept import ours  # (intercept imports snapshot, which imports this module)

    torch_state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    was_paused = paused.paused if paused is not None else False
    if paused is not None:
        paused.paused = True
    try:
        with ours(), torch.enable_grad():
            yield
    finally:
        torch.random.set_rng_state(torch_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        if paused is not None:
            paused.paused = was_paused


def _copy(tensor: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    """A float64 (complex128) copy on the tensor's device; other dtypes (an index) as they are."""
    copy = tensor.detach()
    if copy.is_complex():
        copy = copy.to(torch.complex128)
    elif copy.is_floating_point():
        copy = copy.to(torch.float64)
    copy = copy.clone()
    return copy.requires_grad_(requires_grad and (copy.is_floating_point() or copy.is_complex()))


def _outputs(result) -> List[Any]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _relabelled(graph: Graph, dtype: str) -> Graph:
    """The inner graph's values carry the dtype torch computed the node in
    (their numbers stay float64), so budgets count that dtype's rounding."""
    from dataclasses import replace

    def value(v: Optional[Value]) -> Optional[Value]:
        return replace(v, dtype=dtype) if v is not None and v.dtype in ("float64", "complex128") else v

    def operand(o):
        return replace(o, value=value(o.value))

    nodes = tuple(replace(n, operands=tuple(operand(o) for o in n.operands),
                          outputs=tuple(value(v) for v in n.outputs)) for n in graph.nodes)
    leaves = tuple(replace(leaf, value=value(leaf.value)) for leaf in graph.leaves)
    roots = tuple(replace(root, value=value(root.value)) for root in graph.roots)
    return replace(graph, nodes=nodes, leaves=leaves, roots=roots)


def _agrees(again: torch.Tensor, before: torch.Tensor) -> bool:
    if tuple(again.shape) != tuple(before.shape):
        return False
    if not (before.is_floating_point() or before.is_complex()):
        return bool(torch.equal(again.detach().to(before.dtype), before.detach().to("cpu")))
    ours_, theirs = again.detach().to("cpu", torch.complex128 if before.is_complex() else torch.float64), \
        before.detach().to("cpu", torch.complex128 if before.is_complex() else torch.float64)
    size = float(theirs.abs().max()) if theirs.numel() else 0.0
    tolerance = 64 * epsilon(str(before.dtype).replace("torch.", "")) * max(size, 1.0)
    return bool(torch.all(((ours_ - theirs).abs() <= tolerance) | (ours_ == theirs) | (ours_.isnan() & theirs.isnan())))


def rerun(forward: Callable[..., Any], inputs: Sequence[torch.Tensor], *, title: str,
          requires_grad: Optional[Sequence[bool]] = None, input_names: Sequence[str] = (),
          dtype: str = "float32", expected: Sequence[Optional[torch.Tensor]] = (),
          recorder: Optional[Recorder] = None, depth: int = 0, owner: str = "") -> InnerForward:
    """Run `forward` again on float64 copies of `inputs` and capture the graph
    it builds: its leaves are the copies, its roots the differentiable outputs.

        inner = rerun(lambda x: 0.5 * (5 * x ** 3 - 3 * x), [x], title="P3")
        inner.graph.nodes   # the forward's ops, roots first

    `requires_grad` (default: each input's own) says which copies are
    followed. `forward` may carry `non_differentiable`, the ids of outputs
    it marked so, after the call. `expected` are the outputs the script got,
    which the re-run must reproduce. Where the forward cannot be re-run and
    followed, the InnerForward has no graph and a one-sentence reason.
    """
    def refused(reason: str) -> InnerForward:
        return InnerForward(title, None, reason=reason, owner=owner)

    if depth > MAX_DEPTH:
        return refused(f"it runs inside {MAX_DEPTH} other Functions' forwards, deeper than graphexplain follows")
    wanted = list(requires_grad) if requires_grad is not None else [t.requires_grad for t in inputs]
    copies = [_copy(t, want) for t, want in zip(inputs, wanted)]
    versions = [c._version for c in copies]
    watching = _Watching()
    try:
        with _script_state_kept(recorder), watching:
            result = forward(*copies)
    except CannotRerun as problem:
        return refused(str(problem))
    except Exception as error:  # noqa: BLE001 - the user's forward may raise anything
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if "numpy()" in message or "requires grad" in message and "numpy" in message:
            return refused("its forward calls .numpy() on a tensor, taking the numbers out of torch, so the "
                           "graph it computes cannot be followed")
        return refused(f"its forward raised {type(error).__name__} when run again on float64 copies of its "
                       f"inputs: {message}"[:300])
    if watching.left_torch:
        return refused(f"its forward calls .{watching.left_torch[0].strip('_')}() on a tensor it differentiates, "
                       "taking the numbers out of torch, so the graph it computes is not the forward")
    if any(c._version != v for c, v in zip(copies, versions)):
        return refused("its forward changes an input in place, so it cannot be run again on the inputs it had")
    outputs = _outputs(result)
    marked = set(getattr(forward, "non_differentiable", ()) or ())
    differentiable = []
    for k, output in enumerate(outputs):
        before = expected[k] if k < len(expected) else None
        if isinstance(output, torch.Tensor) and before is not None and not _agrees(output, before):
            return refused(f"its forward, run again, gives other numbers for output {k + 1} than the script "
                           "got (random numbers, or state that changed since), so its graph is not the one "
                           "the backward saw")
        followed = isinstance(output, torch.Tensor) and (output.is_floating_point() or output.is_complex()) \
            and id(output) not in marked
        if followed and output.grad_fn is None and not output.requires_grad:
            if any(wanted):
                return refused(f"its forward returns output {k + 1} without a graph torch can follow (made from "
                               "numbers taken out of torch, or anew), so its derivative cannot be derived")
            followed = False
        differentiable.append(followed)
    roots = [o for o, followed in zip(outputs, differentiable) if followed]
    leaf_inputs = [c for c in copies if c.requires_grad]
    if not roots or not leaf_inputs:
        return InnerForward(title, None, reason="nothing it returns depends on an input that needs a gradient",
                            owner=owner)
    from .snapshot import NothingReached, PendingCall  # (snapshot imports this module)

    names = Names()
    for copy, name in zip(copies, input_names):
        if name:
            names.tensors[id(copy)] = name
    names._keep.extend(copies)
    try:
        with _script_state_kept(recorder):
            pending = PendingCall(roots, [None] * len(roots), names, watching, f"{title}.forward", None,
                                  leaf_inputs, accumulates=False, depth=depth + 1)
            graph, _ = pending.finish()
    except NothingReached:
        return refused("nothing it returns depends on an input that needs a gradient")
    reached = [vertex is not None for vertex, _ in pending.root_vertices]
    counter = 0
    # which root of the graph each output of the node is (roots the graph
    # could not reach are dropped by PendingCall)
    root_index = []
    position = 0
    for followed in differentiable:
        if not followed:
            root_index.append(None)
            continue
        root_index.append(counter if reached[position] else None)
        counter += reached[position]
        position += 1
    leaf_position = {id(t): k for k, t in enumerate(pending.leaf_tensors)}
    input_index = tuple(leaf_position.get(id(c)) if c.requires_grad else None for c in copies)
    return InnerForward(title, _relabelled(graph, dtype), input_index, tuple(root_index), owner=owner)


class _FunctionForward:
    """A custom Function's forward as a callable of its tensor arguments,
    with a stand-in ctx (old style) or after setup_context (torch >= 2.0)."""

    def __init__(self, call: FunctionCall, needs_input_grad: Tuple[bool, ...]):
        self.call = call
        self.needs_input_grad = needs_input_grad
        self.non_differentiable: Tuple[int, ...] = ()

    def __call__(self, *copies):
        supply = iter(copies)
        arguments = [next(supply) if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], torch.Tensor)
                     else a for a in self.call.arguments]
        keywords = dict(self.call.keywords)
        function = self.call.function
        ctx = StandInContext(self.needs_input_grad)
        if _has_setup_context(function):  # as torch's apply does: keywords and defaults bound to positions
            bound = inspect.signature(function.forward).bind(*arguments, **keywords)
            bound.apply_defaults()
            output = function.forward(*bound.args)
            function.setup_context(ctx, tuple(bound.args), output)
        else:
            output = function.forward(ctx, *arguments, **keywords)
        if ctx.dirty:
            raise CannotRerun("its forward changes an input in place (ctx.mark_dirty), so it cannot be run again "
                              "on the inputs it had")
        self.non_differentiable = tuple(id(t) for t in ctx.non_differentiable)
        return output


def _has_setup_context(function) -> bool:
    defined = getattr(torch.autograd.function, "_is_setup_context_defined", None)
    setup = getattr(function, "setup_context", None)
    return setup is not None and defined is not None and defined(setup)


class StandInContext:
    """What a forward may ask of its ctx, without torch's bookkeeping: saved
    tensors are only kept, marks only noted."""

    def __init__(self, needs_input_grad: Tuple[bool, ...] = ()):
        self.needs_input_grad = needs_input_grad
        self.to_save: Tuple[Any, ...] = ()
        self.dirty: Tuple[Any, ...] = ()
        self.non_differentiable: Tuple[Any, ...] = ()
        self.materialize_grads = True
        self.saved_for_forward: Tuple[Any, ...] = ()

    def save_for_backward(self, *tensors) -> None:
        self.to_save = tensors

    def save_for_forward(self, *tensors) -> None:
        self.saved_for_forward = tensors

    @property
    def saved_tensors(self) -> Tuple[Any, ...]:
        return self.to_save

    def mark_dirty(self, *tensors) -> None:
        self.dirty = self.dirty + tensors

    def mark_non_differentiable(self, *tensors) -> None:
        self.non_differentiable = self.non_differentiable + tensors

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value


def _parameter_names(function, old_style: bool) -> List[str]:
    """The forward's own names for its arguments (`x` in forward(ctx, x))."""
    try:
        parameters = list(inspect.signature(function.forward).parameters)
    except (TypeError, ValueError):
        return []
    return parameters[1:] if old_style else parameters


def function_inner(node, recorder: Optional[Recorder] = None, depth: int = 0) -> InnerForward:
    """The InnerForward of a custom Function's node, from the call the
    recorder kept on it; a reason where there is none or it cannot be re-run."""
    function = node._forward_cls
    owner = getattr(function, "__name__", "Function")
    title = f"{owner} (custom Function)"
    intentional = getattr(function, "graphexplain_intentional", None)
    module = getattr(function, "__module__", "") or ""
    if module == "torch" or module.startswith("torch."):  # checkpoint's, FSDP's: they run the script's code again
        return _with_intentional(InnerForward(title, None, owner=owner, reason=(
            f"it is torch's own Function ({module}), whose forward graphexplain does not run again")), intentional)
    try:
        call = node.metadata.get(FUNCTION)
    except Exception:
        call = None
    if not isinstance(call, FunctionCall):
        inner = InnerForward(title, None, reason="its forward was not seen being called (run the script under "
                             "graphexplain trace, or build the graph inside graphexplain.recording())", owner=owner)
        return _with_intentional(inner, intentional)
    tensors = [a for a in call.arguments if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], torch.Tensor)]
    if any(alias._version != version for alias, version in tensors) or \
            any(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], torch.Tensor) for v in call.keywords.values()):
        reason = "an input of it was changed in place after the call, so its forward cannot be run again on the " \
                 "numbers it had" if tensors else "it takes a tensor as a keyword argument, which is not followed"
        return _with_intentional(InnerForward(title, None, reason=reason, owner=owner), intentional)
    edges = node.next_functions
    requires_grad = [k < len(edges) and edges[k][0] is not None for k in range(len(tensors))]
    try:
        needs = tuple(bool(n) for n in node.needs_input_grad)
    except Exception:
        needs = ()
    record = node.metadata.get(KEY)
    expected: List[Optional[torch.Tensor]] = []
    if record is not None:
        for nr in range(len(node._input_metadata)):
            kept = record.outputs.get(nr)
            expected.append(kept[0] if kept is not None and kept[0]._version == kept[1] else None)
    dtype = str(expected[0].dtype).replace("torch.", "") if expected and expected[0] is not None else \
        str(tensors[0][0].dtype).replace("torch.", "") if tensors else "float32"
    old_style = not _has_setup_context(function)
    names = _parameter_names(function, old_style)
    tensor_names = [names[k] if k < len(names) else "" for k, a in enumerate(call.arguments)
                    if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], torch.Tensor)]
    inner = rerun(_FunctionForward(call, needs), [alias for alias, _ in tensors], title=title,
                  requires_grad=requires_grad, input_names=tensor_names, dtype=dtype,
                  expected=expected, recorder=recorder, depth=depth, owner=owner)
    return _with_intentional(inner, intentional)


def _with_intentional(inner: InnerForward, intentional) -> InnerForward:
    from dataclasses import replace

    return replace(inner, intentional=str(intentional)) if intentional else inner
