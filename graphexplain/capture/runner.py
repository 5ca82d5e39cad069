"""Running the user's script as ``python script.py args...`` would.

The script runs as ``__main__`` with its own ``sys.argv`` and its folder
first on ``sys.path``, inside a `Recorder` and an `Interceptor`; nothing it
computes or prints is changed. Problems with the script itself (missing,
unreadable, not Python) are raised as `ScriptError` before anything runs
(`script.read_script`).

An ending by ``sys.exit(...)`` is kept as python keeps it: a message is
printed to stderr at that moment, and the status (the number, 1 for a
message, 0 for None) is the run's `exit_code`.
"""

from __future__ import annotations

import os
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch

from .intercept import CallRecord, CallSummary, Interceptor, Selection
from .naming import names_from_namespace
from .optimizers import UpdateWatch
from .provenance import Recorder, stepping_aside
from .script import ScriptError, read_script  # noqa: F401  (ScriptError: for run_script's callers)
from .standalone import NotExplainable, capture_tensor

COMPLETED = "completed"
RAISED = "raised"
EXITED = "exited"  # sys.exit with a non-zero code


@dataclass
class ScriptRun:
    script: str
    argv: List[str]
    outcome: str
    calls: List[CallRecord] = field(default_factory=list)
    exit_code: int = 0
    traceback: Optional[str] = None  # the script's own traceback, when it raised
    ours: bool = False  # the error was raised inside graphexplain's own code, not the script's
    target: Optional[CallRecord] = None  # --target NAME: a tensor explained without backward
    target_problem: Optional[str] = None


_OURS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
         os.sep + os.path.join("torch", "overrides.py"))  # the recorder's dispatch
_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _detour(frame: traceback.FrameSummary) -> bool:
    """A frame only there because the recorder is active: ours, torch's
    dispatch to it, and the torch line that hands a call to that dispatch
    (``return handle_torch_function(...)`` in Tensor.backward), which plain
    python never runs."""
    if frame.filename.startswith(_OURS[0]) or frame.filename.endswith(_OURS[1]):
        return True
    return frame.filename.startswith(_TORCH) and "handle_torch_function(" in (frame.line or "")


_HANDING_ON = ("original(", "func(", "apply(cls", "wrapper(")  # our lines that hand the script's call to torch


def _raised_by_us(error: BaseException) -> bool:
    """Whether the error began in graphexplain's own code (a bug of ours, to
    be shown as one) rather than in the script or in torch: the innermost
    frame outside torch is ours, and is not a line that only hands the
    script's own call on to torch. The errors graphexplain raises on purpose
    for the script (ExplainError) are the script's."""
    from .standalone import NotExplainable

    if isinstance(error, NotExplainable):
        return False
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.startswith(_TORCH):
            continue
        ours = frame.filename.startswith(_OURS[0])
        return ours and not any(call in (frame.line or "") for call in _HANDING_ON)
    return False


def _script_traceback(error: BaseException, path: str, ours: bool = False) -> str:
    """The traceback as plain python would print it: from the script's own
    first frame on, without graphexplain's frames in between; whole, when
    the error is graphexplain's own (`ours`, from `_raised_by_us`)."""
    if ours:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    frames = traceback.extract_tb(error.__traceback__)
    real = os.path.realpath(path)
    start = next((i for i, f in enumerate(frames) if os.path.realpath(f.filename) == real), 0)
    kept = [f for f in frames[start:] if not _detour(f)]
    lines = ["Traceback (most recent call last):\n"] if kept else []
    lines += traceback.StackSummary.from_list(kept).format()
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines)


def run_script(path: str, args: Sequence[str] = (), selection: Selection = Selection(),
               target: Optional[str] = None) -> ScriptRun:
    """Run `path` with `args` and return every backward call it made.

        run = run_script("examples/autograd_mean.py")
        run.calls[0].graph     # the graph behind z.backward()
    """
    code = read_script(path)
    main = types.ModuleType("__main__")
    # python makes a script's __file__ absolute (3.9+); sources keep the path as typed
    main.__dict__.update({"__file__": os.path.abspath(path), "__builtins__": __builtins__, "__cached__": None})
    saved = sys.argv, list(sys.path), sys.modules.get("__main__")
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    sys.modules["__main__"] = main
    recorder = Recorder()
    interceptor = Interceptor(recorder, selection)
    interceptor.watch = recorder.watch = UpdateWatch(recorder.finder, recorder)
    run = ScriptRun(path, [path, *args], COMPLETED)
    try:
        with recorder, interceptor, interceptor.watch:
            exec(code, main.__dict__)
    except SystemExit as stop:
        run.exit_code = exit_status(stop)
        if run.exit_code != 0:
            run.outcome = EXITED
    except BaseException as error:  # the script's own failure, reported after what was captured
        run.outcome = RAISED
        run.exit_code = 1
        run.ours = _raised_by_us(error)
        run.traceback = _script_traceback(error, path, run.ours)
    finally:
        sys.argv, sys.path[:] = saved[0], saved[1]
        if saved[2] is not None:
            sys.modules["__main__"] = saved[2]
        sys.stdout.flush()
    run.calls = interceptor.calls
    if target is not None:
        _capture_target(run, main.__dict__, target, recorder)
    return run


def exit_status(stop: SystemExit) -> int:
    """The status python gives ``sys.exit(code)``, printing a message as it
    does: None is 0, a number is itself, anything else is printed to stderr
    and is 1.

        sys.exit("fatal: bad config")   # prints the message; status 1
    """
    code = stop.code
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    sys.stdout.flush()  # the script's output stays in the order it was written
    sys.stderr.write(f"{code}\n")
    sys.stderr.flush()
    return 1


def _capture_target(run: ScriptRun, namespace: dict, target: str, recorder: Recorder) -> None:
    """Explain the tensor the script left in the variable `target`."""
    tensor = namespace.get(target)
    if not isinstance(tensor, torch.Tensor):
        known = sorted(k for k, v in namespace.items() if isinstance(v, torch.Tensor) and not k.startswith("_"))
        what = "no variable" if target not in namespace else f"a {type(tensor).__name__}, not a tensor,"
        run.target_problem = (f"--target {target}: the script left {what} named {target!r}. "
                              f"Tensors it left: {', '.join(known) or 'none'}.")
        return
    names = names_from_namespace(namespace)
    try:
        graph, observed = capture_tensor(tensor, None, names, recorder, f"--target {target}")
    except NotExplainable as problem:
        run.target_problem = f"--target {target}: {problem}"
        return
    run.target = CallRecord(0, "target", f"--target {target}", None,
                            CallSummary(target, None), graph, observed=observed)
