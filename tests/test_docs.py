"""The docs are executed: generated pages are current, every documented
command runs, every command has --help, the README's two commands exist."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTED = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _commands(path: Path):
    """`$ graphexplain ...` lines of ```console blocks."""
    text = path.read_text(encoding="utf-8")
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ graphexplain ") or line.startswith("$ python -m graphexplain "):
                yield line[2:].split("#")[0].strip()


COMMANDS = sorted({(path.name, command) for path in DOCUMENTED for command in _commands(path)
                   if "[options]" not in command and "SCRIPT" not in command})


def test_generated_docs_are_current():
    done = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


@pytest.mark.parametrize("where,command", COMMANDS)
def test_documented_command_runs(where, command, tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    words = command.split()
    if words[0] == "python":
        words = words[3:]  # python -m graphexplain ...
    else:
        words = words[1:]
    done = subprocess.run([sys.executable, "-m", "graphexplain", *words], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"{where}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.mark.parametrize("script", ["-m graphexplain", "-m graphexplain trace", "docs/generate.py",
                                    "benchmarks/coverage.py", "benchmarks/overhead.py"])
def test_every_command_has_help(script):
    done = subprocess.run([sys.executable, *script.split(), "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage" in done.stdout.lower(), done.stderr


def test_coverage_page_matches_the_measured_json():
    spec = importlib.util.spec_from_file_location("yardstick", REPO / "benchmarks" / "coverage.py")
    yardstick = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(yardstick)
    measured = json.loads((REPO / "benchmarks" / "coverage.json").read_text(encoding="utf-8"))
    page = (REPO / "docs" / "coverage.md").read_text(encoding="utf-8")
    assert page == yardstick.markdown(measured), "run: python benchmarks/coverage.py --markdown docs/coverage.md"


def _python_blocks(path: Path):
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


# Pages whose ```python blocks are whole programs (rules.md's are fragments of rows).
EXECUTED_PAGES = ("verification.md", "functions.md")
PYTHON_BLOCKS = [(path.name, index) for path in DOCUMENTED if path.name in EXECUTED_PAGES
                 for index, _ in enumerate(_python_blocks(path))]


@pytest.mark.parametrize("where,index", PYTHON_BLOCKS)
def test_documented_python_runs(where, index):
    """Each ```python block of docs/ runs, and its asserts hold."""
    path = next(path for path in DOCUMENTED if path.name == where)
    exec(compile(_python_blocks(path)[index], f"{where} block {index + 1}", "exec"), {"__name__": "__docs__"})
