"""Reading the user's script before anything runs: a light module (no
torch), so that a missing file or a syntax error is reported at once.

    >>> try:
    ...     read_script("no_such_script.py")
    ... except ScriptError as problem:
    ...     print(str(problem).split(". ")[0])
    There is no file at 'no_such_script.py'
"""

from __future__ import annotations

import os


class ScriptError(Exception):
    """The script could not be run at all; the message says why, for a person."""


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
