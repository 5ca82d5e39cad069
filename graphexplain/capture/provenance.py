"""Where each node came from: the line of code, its operands, its output.

A `Recorder` is a `TorchFunctionMode` active while the user's script runs.
It calls every torch function exactly as asked, and afterwards notes on the
output's grad_fn node (``grad_fn.metadata``, which lives and dies with the
node) the source line and expression, the operands, and a detached alias of
the output. It never changes an argument or a result.

Note [why provenance lives in grad_fn.metadata]
A grad_fn cannot be weakly referenced, and keying a table by it would keep
every graph of a training loop alive. The node's own metadata dict is freed
with the node, so recording costs nothing once a graph is gone.

Note [the recorder steps aside]
While Dynamo traces a torch.compile'd function it inlines every active
torch function mode, and anything it cannot trace (``sys._getframe``,
``os.path.realpath``) breaks the graph: the function would run eagerly, and
compute differently, only because graphexplain was there. So every entry
point (the mode and the Function.apply wrapper) first asks
`stepping_aside`, which Dynamo evaluates to True at trace time, leaving the
traced body a bare ``func(*args)``. Inside functorch transforms (grad, vmap,
jacrev) the tensors are functorch's wrappers and the graphs torch's private
ones, which graphexplain never explains, so it records nothing there either.
A compiled region shows up as the node torch makes for it at run time
(CompiledFunctionBackward), at the compiled function's line, with no
symbolic rule.

Note [modules from the stack, not from hooks]
Which module an op ran in is read from the stack when the op is recorded:
the innermost ``Module._call_impl`` frame. Global module hooks would say
the same, but they are visible to the script: torch.compile(module) warns
about them (an error under ``warnings.simplefilter("error")``), and they
fire, through Dynamo, inside compiled code.
"""

from __future__ import annotations

import ast
import functools
import io
import linecache
import os
import re
import sys
import sysconfig
import tokenize
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch.autograd.function import Function
from torch.overrides import TorchFunctionMode

from ..model import Source
from . import view_writes

KEY = "graphexplain"
ORIGIN = "graphexplain.origin"  # on a node an earlier call's backward made: an `Origin`
FUNCTION = "graphexplain.function"  # on a custom autograd.Function's node: its `FunctionCall`
_INTERNAL_WALK_LIMIT = 64  # nodes made inside one call (F.linear makes two)
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z_0-9]*)\s*(?::[^=]+)?=(?!=)\s*(.+?)\s*(#.*)?$")


@dataclass(slots=True)  # one per recorded op: slots make it cheaper to create
class Provenance:
    source: Optional[Source]
    assigned: Optional[str]  # `z` for the op that is all of `z = y * y * 2`'s right side
    operands: Tuple[Any, ...] = ()  # the call's tensor and number arguments, in order
    outputs: Dict[int, Tuple[torch.Tensor, int]] = field(default_factory=dict)
    module: Any = None  # weakref to the innermost nn.Module running, if any
    direct: bool = True  # False for nodes made inside the call (F.linear's TBackward0)
    function: str = ""
    live: Dict[int, Any] = field(default_factory=dict)  # output nr → weakref to the tensor itself (its hooks)
    inside: bool = False  # run by library code the user's line called (a module's forward): one op of several


@dataclass(frozen=True)
class Origin:
    """Which gradients a node made by a backward with create_graph=True
    serves: `gradients` are "∂u/∂x" or "w.grad"; `top` for the node whose
    output is the (one) gradient, returned by the call or left in .grad, else
    a node on the way, which several gradients of the call may share."""

    gradients: Tuple[str, ...]
    call: int
    top: bool

    @property
    def words(self) -> str:
        if not self.top:
            return f"made by call {self.call}'s backward, for {', '.join(self.gradients)}"
        if self.gradients[0].endswith(".grad"):
            return f"{self.gradients[0]} as call {self.call} left it"
        return f"{self.gradients[0]}, returned by call {self.call}"


@dataclass(frozen=True)
class FunctionCall:
    """How a custom autograd.Function was applied: its class and arguments as
    they were at the call. A tensor is kept as a detached alias with its
    ``_version`` then, so a later in-place change is seen, not copied
    (capture/recapture.py runs the forward again from these)."""

    function: Any  # the Function subclass
    arguments: Tuple[Any, ...]  # a tensor as (alias, version); anything else as it was
    keywords: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, function, args, kwargs) -> "FunctionCall":
        def kept(argument):
            return (argument.detach(), argument._version) if isinstance(argument, torch.Tensor) else argument
        return cls(function, tuple(kept(a) for a in args), {k: kept(v) for k, v in kwargs.items()})


_functorch_level = torch._C._functorch.maybe_current_level  # None outside grad, vmap, jacrev, ...


def stepping_aside() -> bool:
    """True inside Dynamo tracing and inside functorch transforms, where the
    recorder must do nothing but call torch (Note [the recorder steps aside]).
    Ask it before reading any of the recorder's state, which Dynamo would
    otherwise guard on (and recompile when it changes)."""
    return torch.compiler.is_compiling() or _functorch_level() is not None


_CALL_MODULE = torch.nn.Module._call_impl.__code__


def running_module(frame):
    """A weak reference to the innermost nn.Module whose call is on the stack
    above `frame`, or None (Note [modules from the stack, not from hooks])."""
    while frame is not None:
        if frame.f_code is _CALL_MODULE:
            module = frame.f_locals.get("self")
            return weakref.ref(module) if isinstance(module, torch.nn.Module) else None
        frame = frame.f_back
    return None


def _internal_roots() -> Tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__))}
    roots |= {paths.get(key) for key in ("stdlib", "purelib", "platlib") if paths.get(key)}
    return tuple(sorted(os.path.realpath(root) + os.sep for root in roots if root))


class SourceFinder:
    """Finds the innermost frame of the user's own code and the exact
    expression it is evaluating (Python 3.11's instruction positions)."""

    def __init__(self):
        self._internal: Dict[Any, bool] = {}
        self._roots = _internal_roots()
        self._positions: Dict[Any, List] = {}
        self._sources: Dict[Any, Tuple[Source, Optional[str]]] = {}

    def is_internal(self, code) -> bool:
        known = self._internal.get(code)
        if known is None:
            filename = code.co_filename
            known = filename.startswith("<") or os.path.realpath(filename).startswith(self._roots)
            self._internal[code] = known
        return known

    def user_frame(self, frame):
        while frame is not None and self.is_internal(frame.f_code):
            frame = frame.f_back
        return frame

    def source(self, frame) -> Optional[Source]:
        return self.source_and_name(frame)[0]

    def source_and_name(self, frame) -> Tuple[Optional[Source], Optional[str]]:
        """The Source of the instruction the frame is running and the name
        it assigns; cached, since a training loop runs the same
        instructions again and again."""
        if frame is None:
            return None, None
        key = (frame.f_code, frame.f_lasti)
        found = self._sources.get(key)
        if found is None:
            source = self._source(frame)
            found = self._sources[key] = (source, assigned_name(source))
        return found

    def _source(self, frame) -> Source:
        code = frame.f_code
        line = frame.f_lineno
        text = linecache.getline(code.co_filename, line).rstrip("\n")
        return Source(code.co_filename, line, without_comment(text), self._expression(frame, text))

    def _expression(self, frame, text: str) -> Optional[str]:
        code = frame.f_code
        if not hasattr(code, "co_positions"):
            return None  # Python < 3.11: the line alone
        positions = self._positions.get(code)
        if positions is None:
            positions = self._positions[code] = list(code.co_positions())
        index = frame.f_lasti // 2
        if index >= len(positions):
            return None
        start_line, end_line, start, end = positions[index]
        if start_line != frame.f_lineno or end_line != start_line or start is None or end is None:
            return None
        # Columns are byte offsets into the UTF-8 line.
        return text.encode("utf-8")[start:end].decode("utf-8", "replace").strip() or None


MULTI_LINE_LIMIT = 20  # lines of one call read back whole; a longer one is shown by its first line


def call_text(frame, source: Optional[Source]) -> Optional[str]:
    """The whole expression the frame is evaluating, on one line, where it
    spans several (`torch.autograd.grad(outputs=y,` and the lines after it):
    the backward call's title in the walkthrough and the JSON. None where
    the interpreter cannot say, or the text does not parse."""
    if source is None:
        return None
    if source.expr:
        return source.expr
    if frame is None or not hasattr(frame.f_code, "co_positions"):
        return None
    return _spanning_call(frame.f_code, frame.f_lasti)


@functools.lru_cache(maxsize=256)  # a training loop's backward call: the same instruction each step
def _spanning_call(code, lasti: int) -> Optional[str]:
    positions = list(code.co_positions())
    index = lasti // 2
    if index >= len(positions):
        return None
    start_line, end_line, start, end = positions[index]
    if None in (start_line, end_line, start, end) or not 0 < end_line - start_line < MULTI_LINE_LIMIT:
        return None
    lines = [linecache.getline(code.co_filename, n).rstrip("\n").encode("utf-8")
             for n in range(start_line, end_line + 1)]
    lines[0], lines[-1] = lines[0][start:], lines[-1][:end]  # columns are byte offsets
    text = b"\n".join(lines).decode("utf-8", "replace")
    try:  # one line, without the comments and the line breaks inside the brackets
        return ast.unparse(ast.parse(text, mode="eval"))
    except (SyntaxError, ValueError):
        return None


def without_comment(line: str) -> str:
    """The line's code without a trailing # comment (a # inside a string stays)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return line.strip()
    for token in tokens:
        if token.type == tokenize.COMMENT:
            return line[:token.start[1]].strip()
    return line.strip()


def assigned_name(source: Optional[Source]) -> Optional[str]:
    """`z` when the expression is the whole right side of `z = ...`."""
    if source is None or source.expr is None:
        return None
    match = _ASSIGNMENT.match(source.code)
    if match and match.group(2).strip() == source.expr:
        return match.group(1)
    return None


def _tensors(result) -> List[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        return [item for item in result if isinstance(item, torch.Tensor)]
    return []


def _operand(argument):
    if isinstance(argument, torch.Tensor):
        return argument.detach() if argument.requires_grad else argument
    if isinstance(argument, (int, float)) and not isinstance(argument, bool):
        return argument
    return None


class Recorder(TorchFunctionMode):
    """Records provenance for every op while active.

        with Recorder():
            y = x * 2      # y.grad_fn.metadata["graphexplain"] now says where
    """

    def __init__(self):
        super().__init__()
        self.finder = SourceFinder()
        self.constant_reasons: Dict[int, Tuple[Any, str]] = {}
        self.paused = False  # set while graphexplain itself calls torch
        self.watch = None  # capture/optimizers.UpdateWatch: sees in-place updates after an explained call
        self._original_apply = None
        self._depth = 0  # how many `with` blocks of this recorder are open
        self._off = False  # taken off torch's mode stack before the end (Note [the recorder steps off])

    # --- entering and leaving: only the outermost `with` installs and restores ---
    def __enter__(self):
        self._depth += 1
        if self._depth > 1:  # `with r: with r:` records once and restores once, at the end
            return self
        self._wrap_function_apply()
        return super().__enter__()

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth > 0:
            return None
        if self._original_apply is not None:
            Function.apply = self._original_apply
            self._original_apply = None
        if self._off:  # already off the stack: popping again would take someone else's mode
            self._off = False
            return None
        return super().__exit__(*exc)

    # Note [the recorder steps off]
    # Once no later backward call is explained (--call first, after the first)
    # and the optimizer watch of the last explained call is disarmed, nothing
    # the recorder would see is used, yet every op of the script still went
    # through its __torch_function__: about 300 an iteration of a small LSTM
    # loop, 6 µs each, over a third of what tracing 50000 steps cost. It
    # then leaves torch's mode stack, if it is on top of it in this thread
    # (a mode the script pushed since stays, and so does the recorder under
    # it), and `__exit__` does not pop it a second time.
    def step_off(self) -> None:
        if self._off or self._depth == 0:
            return
        try:
            size = torch._C._len_torch_function_stack()
            if size and torch._C._get_function_stack_at(size - 1) is self:
                torch._C._pop_torch_function_stack()
                self._off = True
        except Exception:  # a torch without these internals: the recorder stays on, paused
            pass

    def _wrap_function_apply(self) -> None:
        """A custom autograd.Function's apply() does not pass through torch
        function modes; wrapped, its node gets its own line and name instead
        of the line of whatever uses it next."""
        self._original_apply = Function.__dict__["apply"]
        apply = self._original_apply.__func__
        recorder = self

        def recorded_apply(cls, *args, **kwargs):
            call = None
            if not stepping_aside() and not recorder.paused:
                try:  # before the call: the arguments as the forward receives them
                    call = FunctionCall.of(cls, args, kwargs)
                except Exception:
                    pass
            result = apply(cls, *args, **kwargs)
            if not stepping_aside() and not recorder.paused:
                try:
                    recorder._record(cls, args, kwargs, result, sys._getframe(1))
                    recorder._note_function(call, result)
                except Exception:  # provenance is a nicety; the script's run is not
                    pass
            return result

        Function.apply = classmethod(recorded_apply)

    @staticmethod
    def _note_function(call: Optional[FunctionCall], result) -> None:
        """Keep the call on the Function's node, for the forward's re-run."""
        for tensor in _tensors(result):
            node = tensor.grad_fn
            if call is not None and node is not None and hasattr(node, "_forward_cls"):
                node.metadata.setdefault(FUNCTION, call)

    # --- the mode itself ----------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # stepping_aside() first: Dynamo would guard on the watch's state (Note [the recorder steps aside]).
        # Asked once an op, not once a stage: every op of the script comes through here.
        if stepping_aside():
            return func(*args, **kwargs)
        before = self._before_view_write(func, args)
        watched = None if self.watch is None else self.watch.before_op(func, args, kwargs)
        result = func(*args, **kwargs)
        if watched is not None:
            self.watch.after_op(watched, result)
        if self.paused:
            return result
        try:
            self._record(func, args, kwargs, result)
        except Exception:  # provenance is a nicety; the script's run is not
            pass
        self._note_view_write(func, args, kwargs, result, before)
        return result

    # --- writes into views (Note [a write into a view] in capture/view_writes.py) ---
    def _before_view_write(self, func, args):
        if self.paused:  # (stepping_aside() asked by the caller)
            return None
        try:
            return view_writes.before_write(func, args)
        except Exception:  # provenance is a nicety; the script's run is not
            return None

    def _note_view_write(self, func, args, kwargs, result, before) -> None:
        paused, self.paused = self.paused, True  # the replays and twins are graphexplain's own calls
        try:
            view_writes.note(func, args, kwargs, result, before)
        except Exception:  # provenance is a nicety; the script's run is not
            pass
        finally:
            self.paused = paused
        try:
            if view_writes.is_setitem(func):
                self._record_setitem(args, sys._getframe(2))
        except Exception:  # provenance is a nicety; the script's run is not
            pass

    def _record_setitem(self, args, caller) -> None:
        """``x[key] = v`` returns None, so `_record` sees no output: the
        CopySlices node it made on x's base gets its line here, and the
        base's numbers after the write as its output."""
        base = view_writes.base_of(args[0])
        node = base.grad_fn if isinstance(base, torch.Tensor) else None
        if node is None or type(node).__name__ != "CopySlices" or KEY in node.metadata:
            return
        source, _ = self.finder.source_and_name(self.finder.user_frame(caller))
        operands = tuple(o for o in map(_operand, (args[0], args[2])) if o is not None)
        record = Provenance(source, None, operands, {0: (base.detach(), base._version)}, running_module(caller),
                            True, "__setitem__", {0: weakref.ref(base)})
        node.metadata[KEY] = record
        self._mark_inner_nodes(node, source, record.module, "__setitem__")

    def _record(self, func, args, kwargs, result, caller=None) -> None:
        outputs = _tensors(result)
        if not outputs:
            return
        if not torch.is_grad_enabled() or func in (torch.Tensor.detach, torch.Tensor.requires_grad_):
            self._note_constants(func, args, outputs)
            return
        made = [(t, node) for t in outputs for node in (t.grad_fn,) if node is not None]  # grad_fn read once
        if not made:
            self._inherit_constant_reason(args, outputs)
            return
        caller = caller if caller is not None else sys._getframe(2)
        user = self.finder.user_frame(caller)
        source, assigned = self.finder.source_and_name(user)
        module = running_module(caller)
        operands = tuple(o for o in map(_operand, (*args, *kwargs.values()) if kwargs else args) if o is not None)
        name = getattr(func, "__name__", None) or str(func)  # (str(func) only when needed: it is not free)
        for tensor, node in made:
            record = node.metadata.get(KEY)
            if record is None or not record.direct:
                record = Provenance(source, assigned, operands, {}, module, True, name, inside=user is not caller)
                node.metadata[KEY] = record
            nr = getattr(tensor, "output_nr", 0)
            record.outputs.setdefault(nr, (tensor.detach(), tensor._version))
            record.live.setdefault(nr, weakref.ref(tensor))
            self._mark_inner_nodes(node, source, module, name)

    def _mark_inner_nodes(self, node, source, module, name) -> None:
        """Nodes the call made on the way (F.linear's TBackward0) share its
        source line; they have no record of their own yet."""
        pending = [next_node for next_node, _ in node.next_functions if next_node is not None]
        for _ in range(_INTERNAL_WALK_LIMIT):
            if not pending:
                return
            inner = pending.pop()
            if type(inner).__name__ == "AccumulateGrad" or KEY in inner.metadata or ORIGIN in inner.metadata:
                continue  # (a node made by a backward with create_graph=True is not this call's; a leaf's
                # AccumulateGrad is asked first, since reading .metadata makes a dict on every leaf node)
            inner.metadata[KEY] = Provenance(source, None, (), {}, module, False, name)
            pending.extend(n for n, _ in inner.next_functions if n is not None)

    def _note_constants(self, func, args, outputs) -> None:
        """Why a tensor is cut off from the graph, for the walkthrough."""
        if func is torch.Tensor.detach:
            reason = "detached with .detach()"
        elif func is torch.Tensor.requires_grad_:
            reason = "switched off with requires_grad_(False)"
            if outputs[0].requires_grad:  # requires_grad_(True): no longer cut off
                self.constant_reasons.pop(id(outputs[0]), None)
        elif any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            reason = "computed under torch.no_grad()"
        else:
            self._inherit_constant_reason(args, outputs)
            return
        self._remember(outputs, reason)

    def _inherit_constant_reason(self, args, outputs) -> None:
        """`b = a * 2` after `a.requires_grad_(False)`: b is cut off because a is."""
        if not self.constant_reasons:  # the common case, every op on plain data: nothing to inherit
            return
        for argument in args:
            if isinstance(argument, torch.Tensor):
                reason = self.constant_reason(argument)
                if reason is not None:
                    self._remember(outputs, f"computed from a tensor {reason}")
                    return

    def _remember(self, outputs, reason: str) -> None:
        for tensor in outputs:
            if not tensor.requires_grad:
                key = id(tensor)
                self.constant_reasons[key] = (
                    weakref.ref(tensor, lambda _, k=key: self.constant_reasons.pop(k, None)), reason)

    def constant_reason(self, tensor) -> Optional[str]:
        entry = self.constant_reasons.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None
