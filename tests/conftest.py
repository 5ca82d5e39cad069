"""Shared fixtures: running commands in subprocesses, and the command line
in-process.

Every subprocess pays for ``import torch`` (seconds on a small machine), so
a module starts the runs it needs together, up front, through `launch`, and
each test then waits for its own run. The pool is as wide as the machine.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# tests/scripts holds scripts for `graphexplain trace` to run, not tests;
# --doctest-modules would otherwise import (that is, run) them.
collect_ignore = ["scripts", "golden"]

# The derivation cache (derive/disk_cache.py) of this test session, in a
# folder of its own: no test reads a user's cache or leaves entries in it.
# Set here, before any test runs, so every subprocess inherits it too.
os.environ["GRAPHEXPLAIN_CACHE"] = tempfile.mkdtemp(prefix="graphexplain-test-cache-")
atexit.register(shutil.rmtree, os.environ["GRAPHEXPLAIN_CACHE"], True)

WORKERS = max(2, min(8, os.cpu_count() or 2))
RUN_TIMEOUT = 300  # seconds; a hung run fails its test instead of the whole session


@dataclass(frozen=True)
class Run:
    """A finished subprocess: its exit code and decoded output."""

    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def subprocess_env() -> Dict[str, str]:
    """The environment of every subprocess: UTF-8 output at 80 columns, no
    colour, stdout buffered as a user's would be, and this checkout
    importable even if it is not installed."""
    env = dict(os.environ)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "PYTHONSTARTUP", "PYTHONUNBUFFERED"):
        env.pop(name, None)
    env.update(PYTHONIOENCODING="utf-8", COLUMNS="80", LINES="50", NO_COLOR="1",
               PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_command(args: Sequence, cwd) -> Run:
    done = subprocess.run([str(a) for a in args], cwd=str(cwd), env=subprocess_env(),
                          capture_output=True, timeout=RUN_TIMEOUT)
    return Run(tuple(str(a) for a in args), done.returncode,
               done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))


class Launcher:
    """Starts commands on a shared pool; each call returns a Future of a `Run`."""

    def __init__(self, pool: ThreadPoolExecutor):
        self.pool = pool

    def python(self, *args, cwd) -> "Future[Run]":
        """`python ARGS...` with the interpreter running the tests."""
        return self.pool.submit(run_command, [sys.executable, *args], cwd)

    def graphexplain(self, *args, cwd) -> "Future[Run]":
        """`python -m graphexplain ARGS...`."""
        return self.python("-m", "graphexplain", *args, cwd=cwd)


@pytest.fixture(scope="session")
def launch():
    """``launch.graphexplain("trace", script, cwd=...)`` starts a run; ``.result()`` waits."""
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="subprocess") as pool:
        yield Launcher(pool)


@pytest.fixture
def graphexplain_main(tmp_path, monkeypatch, capsys):
    """``graphexplain_main(*args)`` runs ``graphexplain.cli.main(args)`` (what
    `python -m graphexplain` calls) in-process, in tmp_path, and returns the
    finished `Run`: for runs where a new process would only add the cost of
    importing torch, or that must change this process (PATH, the rule table)."""
    from graphexplain import cli

    monkeypatch.chdir(tmp_path)

    def run(*args) -> Run:
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as stop:  # argparse: --help, bad options
            code = stop.code
        output = capsys.readouterr()
        return Run(("graphexplain", *map(str, args)), code, output.out, output.err)

    return run
