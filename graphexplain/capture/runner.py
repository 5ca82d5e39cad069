"""Running the user's script as ``python script.py args...`` would.

The script runs as ``__main__`` with its own ``sys.argv`` and its folder
first on ``sys.path``, inside a `Recorder` and an `Interceptor`; nothing it
computes or prints is changed. Problems with the script itself (missing,
unreadable, not Python) are raised as `ScriptError` before anything runs.
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
from .provenance import Recorder
from .standalone import NotExplainable, capture_tensor

COMPLETED = "completed"
RAISED = "raised"
EXITED = "exited"  # sys.exit with a non-zero code


class ScriptError(Exception):
    """The script could not be run at all; the message says why, for a person."""


@dataclass
class ScriptRun:
    script: str
    argv: List[str]
    outcome: str
    calls: List[CallRecord] = field(default_factory=list)
    exit_code: int = 0
    traceback: Optional[str] = None  # the script's own traceback, when it raised
    target: Optional[CallRecord] = None  # --target NAME: a tensor explained without backward
    target_problem: Optional[str] = None


def read_script(path: str):
    """The script's compiled code, or a ScriptError saying what is wrong."""
    if not os.path.exists(path):
        raise ScriptError(f"There is no file at {path!r}. Check the path; it is taken relative "
                          f"to the current folder ({os.getcwd()}).")
    if os.path.isdir(path):
        raise ScriptError(f"{path!r} is a folder, not a Python script. Give the path of a .py file.")
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as error:
        raise ScriptError(f"Cannot read {path!r}: {error.strerror or error}. Check that the file "
                          "is readable by you.") from None
    try:
        return compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as error:
        where = f"line {error.lineno}" if error.lineno else "somewhere"
        text = (error.text or "").strip()
        shown = f": {text}" if text else ""
        raise ScriptError(f"{path!r} is not valid Python: {error.msg} at {where}{shown}. "
                          "Fix the script so that `python` can run it, then trace it again.") from None
    except ValueError as error:  # null bytes: not a text file at all
        raise ScriptError(f"{path!r} is not a Python script ({error}).") from None


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


def _script_traceback(error: BaseException, path: str) -> str:
    """The traceback as plain python would print it: from the script's own
    first frame on, without graphexplain's frames in between."""
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
    run = ScriptRun(path, [path, *args], COMPLETED)
    try:
        with recorder, interceptor:
            exec(code, main.__dict__)
    except SystemExit as stop:
        code_ = stop.code
        if code_ not in (None, 0):
            run.outcome = EXITED
            run.exit_code = code_ if isinstance(code_, int) else 1
    except BaseException as error:  # the script's own failure, reported after what was captured
        run.outcome = RAISED
        run.exit_code = 1
        run.traceback = _script_traceback(error, path)
    finally:
        sys.argv, sys.path[:] = saved[0], saved[1]
        if saved[2] is not None:
            sys.modules["__main__"] = saved[2]
        sys.stdout.flush()
    run.calls = interceptor.calls
    if target is not None:
        _capture_target(run, main.__dict__, target, recorder)
    return run


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
