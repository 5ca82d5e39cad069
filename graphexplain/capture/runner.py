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

from .intercept import CallRecord, Interceptor, Selection
from .provenance import Recorder

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


def _script_traceback(error: BaseException, path: str) -> str:
    """The traceback from the script's own first frame on: none of ours."""
    tb = error.__traceback__
    real = os.path.realpath(path)
    while tb is not None and os.path.realpath(tb.tb_frame.f_code.co_filename) != real:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb or error.__traceback__))


def run_script(path: str, args: Sequence[str] = (), selection: Selection = Selection()) -> ScriptRun:
    """Run `path` with `args` and return every backward call it made.

        run = run_script("examples/autograd_mean.py")
        run.calls[0].graph     # the graph behind z.backward()
    """
    code = read_script(path)
    main = types.ModuleType("__main__")
    main.__dict__.update({"__file__": path, "__builtins__": __builtins__, "__cached__": None})
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
    return run
