"""The catalogue: what `graphexplain trace` does with scripts and options a
new user might try, good and bad (issue 8). Each case is a real
``python -m graphexplain trace ...`` run in a folder of its own, and asserts
the exit code, the message, and that no line of the output is a traceback
frame inside graphexplain. All the runs start together, on the shared pool,
when the first case asks; cases with the same script, arguments and files
share one run (each python process pays for ``import torch``).

A case that needs a part of graphexplain not fixed yet is marked
xfail(strict=True) with the reason, so that it turns green, and must be
unmarked, when that part is fixed.

The last tests run in-process: `recording()` entered twice, `explain()`
refusals, and how a failure inside graphexplain itself is shown.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import pytest

TESTS = Path(__file__).resolve().parent
PACKAGE = str(TESTS.parent / "graphexplain") + os.sep
OURS_IN_A_TRACEBACK = re.compile(r'File "' + re.escape(PACKAGE))
RAN = "SCRIPT RAN"  # printed by SIMPLE: a usage error must stop before it

SIMPLE = f"""\
import torch
print({RAN!r})
w = torch.tensor([1.0, 2.0], requires_grad=True)
loss = (w * 3).sum()
loss.backward()
"""


@dataclass(frozen=True)
class Case:
    args: Tuple[str, ...]  # after `trace`; the case's script is script.py
    code: Union[int, Tuple[int, ...]]  # the exit code (or the codes that are right)
    says: Tuple[str, ...] = ()  # in the output, with whitespace folded
    script: Optional[str] = SIMPLE
    files: Dict[str, str] = field(default_factory=dict)  # made first; a name ending in / is a folder
    runs: bool = True  # False: a usage error, refused before the script starts
    check: Optional[Callable] = None  # more checks: check(folder, run)
    not_yet: Optional[str] = None  # xfail(strict=True) reason: the part of graphexplain still to fix


def dot(*args) -> Tuple[str, ...]:
    """A traced run that writes only the DOT source (no graphviz call needed)."""
    return ("--format", "dot", *args)


# --- checks beyond exit code and message ---------------------------------------------


def left_untouched(name: str, text: str):
    def check(folder: Path, run):
        assert (folder / name).read_text() == text
    return check


def stderr_line(line: str):
    def check(folder: Path, run):
        assert line in run.stderr.splitlines(), run.stderr
    return check


def written_where_it_started(folder: Path, run):
    assert json.loads((folder / "result.json").read_text())["status"] == "verified"
    assert (folder / "graphexplain-out" / "call-1.dot").exists()
    assert (folder / "elsewhere" / "result.json").read_text() == USERS_JSON
    assert (folder / "elsewhere" / "graphexplain-out" / "call-1.dot").read_text() == USERS_DOT


def markup_paths_written(folder: Path, run):
    assert (folder / "[/x]" / "call-1.dot").exists()
    assert json.loads((folder / "[bold]r.json").read_text())["exit_code"] == 0


def backslash_kept(folder: Path, run):
    source = (folder / "[/x]" / "call-1.dot").read_text(encoding="utf-8")
    assert r'len(\"\\N{BULLET}\")' in source  # an escaped backslash, not graphviz's \N
    if shutil.which("dot"):
        picture = (folder / "[/x]" / "call-1.svg").read_text(encoding="utf-8")
        assert r"len(&quot;\N{BULLET}&quot;)" in picture


def other_pictures_still_made(folder: Path, run):
    failures = [line for line in run.stderr.splitlines() if line.startswith("graphexplain: not drawn")]
    assert len(failures) == 1, run.stderr
    if shutil.which("dot"):
        assert (folder / "graphexplain-out" / "call-1.svg").exists()
        assert "graphexplain-out/call-1.svg" in run.stdout


def no_dynamo_warnings(folder: Path, run):
    assert "_dynamo" not in run.stderr and "Warning" not in run.stderr, run.stderr


def call_status(index: int, status: str):
    def check(folder: Path, run):
        calls = json.loads((folder / "result.json").read_text(encoding="utf-8"))["backward_calls"]
        assert calls[index - 1]["status"] == status, calls[index - 1]
    return check


USERS_JSON = '{"mine": 1}\n'
USERS_DOT = "a picture of the user's own\n"

# the arguments and script of runs that several cases share
AS_PYTHON = dict(args=dot("script.py", "--epochs", "3", "-q"), script="""\
import os, sys
import torch
from helper import double
print("argv:", sys.argv)
print("absolute:", os.path.isabs(__file__), os.path.basename(__file__))
if __name__ == "__main__":
    print("main ran")
    w = torch.ones(2, requires_grad=True)
    double(w).sum().backward()
""")
HELPER = {"helper.py": "def double(t):\n    print('doubled by helper.py')\n    return t * 2\n"}
NUMBERS = dict(args=dot("--call", "all", "--json", "result.json", "script.py"), script="""\
import torch
x = torch.tensor([1.0, float("nan"), float("inf")], requires_grad=True)
(x * 2).sum().backward()
half = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float16, requires_grad=True)
(half * half).sum().backward()
brain = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16, requires_grad=True)
(brain * brain).sum().backward()
w = torch.tensor([0.5, 1.5, 2.5], requires_grad=True)
counts, index = torch.arange(3), torch.tensor([2, 0])
(w * counts)[index].sum().backward()
""")
GRAPHS = dict(args=dot("--call", "all", "--json", "result.json", "script.py"), script="""\
import torch
w = torch.tensor([1.0, 2.0], requires_grad=True)
loss = (w * w).sum()
loss.backward(retain_graph=True)
loss.backward()
x = torch.tensor(3.0, requires_grad=True)
y = x ** 3
(dy,) = torch.autograd.grad(y, x, create_graph=True)
dy.backward()
""")
COMPLEX_AND_SPARSE = dict(args=dot("--call", "all", "--json", "result.json", "script.py"), script="""\
import torch
z = torch.tensor([1+2j, 3-1j], requires_grad=True)
loss = (z * z.conj()).real.sum()
loss.backward()
s = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0, 2.0]), (2, 2), requires_grad=True)
loss = torch.sparse.sum(s * 3)
loss.backward()
""")
MARKUP = dict(args=("--out", "[/x]", "--json", "[bold]r.json", "--format", "dot,svg", "script.py"), script="""\
import torch
model = torch.nn.ModuleDict({"[bold]": torch.nn.Linear(2, 1)})
inputs = {"[/x]": torch.ones(1, 2)}
loss = (model["[bold]"](inputs["[/x]"]) * len("\\N{BULLET}")).sum()
loss.backward()
""")

CASES: Dict[str, Case] = {
    # --- bad usage: exit 2, one message, the script never starts ---------------------
    "missing file": Case(("missing.py",), 2, ("There is no file at 'missing.py'",), runs=False),
    "missing file under a [/x] folder": Case(("[/x]/missing.py",), 2, ("no file at '[/x]/missing.py'",), runs=False),
    "a folder, not a script": Case(("a_folder",), 2, ("'a_folder' is a folder, not a Python script",),
                                   files={"a_folder/": ""}, runs=False),
    "syntax error": Case(("script.py",), 2, ("is not valid Python", "at line 3"),
                         script="import torch\nx = torch.ones(2)\ny = x * * 2\n", runs=False),
    "--out /proc/x": Case(("--out", "/proc/x", "script.py"), 2,
                          ("--out '/proc/x' cannot be made: '/proc' cannot be written into",), runs=False),
    '--out ""': Case(("--out", "", "script.py"), 2, ("--out was given an empty path",), runs=False),
    '--json ""': Case(("--json", "", "script.py"), 2, ("--json was given an empty path",), runs=False),
    "--json in a folder that does not exist": Case(
        ("--json", "/nonexistent/dir/r.json", "script.py"), 2,
        ("cannot be written: the folder '/nonexistent/dir' does not exist",), runs=False),
    "--force --json A_FOLDER": Case(("--force", "--json", "SOME_DIR", "script.py"), 2,
                                    ("--json 'SOME_DIR' is a folder, not a file",),
                                    files={"SOME_DIR/": ""}, runs=False),
    "--json the user's file": Case(("--json", "result.json", "script.py"), 2,
                                   ("'result.json' already exists and is not a graphexplain result",),
                                   files={"result.json": USERS_JSON}, runs=False,
                                   check=left_untouched("result.json", USERS_JSON)),
    "--out the user's folder": Case(("--out", "results", "script.py"), 2,
                                    ("The folder 'results' already holds files that graphexplain did not write",),
                                    files={"results/notes.txt": "mine\n"}, runs=False,
                                    check=left_untouched("results/notes.txt", "mine\n")),
    "--width 0 missing.py": Case(("--width", "0", "missing.py"), 2, ("--width: must be at least 40 columns",),
                                 runs=False),
    "--width 0": Case(("--width", "0", "script.py"), 2, ("--width: must be at least 40 columns",), runs=False),
    "--call 0": Case(("--call", "0", "script.py"), 2, ("--call takes first, last, all or a call number",),
                     runs=False),

    # --- the script's own ending ------------------------------------------------------
    "raise before backward": Case(dot("script.py"), 3, ("after 0 backward call(s)", "ValueError: bad input"),
                                  script="import torch\nraise ValueError('bad input')\n"),
    "raise after backward": Case(dot("script.py"), 3, ("after 1 backward call(s)", "ValueError: after"),
                                 script=SIMPLE + "raise ValueError('after')\n"),
    "KeyboardInterrupt": Case(dot("script.py"), 3, ("after 1 backward call(s)", "KeyboardInterrupt"),
                              script=SIMPLE + "raise KeyboardInterrupt\n"),
    'sys.exit("fatal: bad config")': Case(
        dot("script.py"), 1, ("exited with code 1 after 1 backward call(s)",),
        script=SIMPLE + "import sys\nsys.exit('fatal: bad config')\n", check=stderr_line("fatal: bad config")),
    "sys.exit(7)": Case(dot("script.py"), 7, ("exited with code 7", "graphexplain exits with 7 too"),
                        script=SIMPLE + "import sys\nsys.exit(7)\n"),
    "sys.exit(0)": Case(dot("script.py"), 0, ("✓ verified — 1 backward call",),
                        script=SIMPLE + "import sys\nsys.exit(0)\n"),
    "never calls backward": Case(dot("script.py"), 4, ("finished without calling .backward()",),
                                 script="import torch\nprint(torch.ones(2) * 2)\n"),

    # --- scripts that run as under python ---------------------------------------------
    "__main__ guard": Case(**AS_PYTHON, code=0, says=("main ran", "✓ verified — 1 backward call"), files=HELPER),
    "sibling import": Case(**AS_PYTHON, code=0, says=("doubled by helper.py",), files=HELPER),
    "argv": Case(**AS_PYTHON, code=0, says=("argv: ['script.py', '--epochs', '3', '-q']",), files=HELPER),
    "__file__": Case(**AS_PYTHON, code=0, says=("absolute: True script.py",), files=HELPER),
    "NaN and inf": Case(**NUMBERS, code=0, check=call_status(1, "verified")),
    "float16": Case(**NUMBERS, code=0, check=call_status(2, "verified")),
    "bfloat16": Case(**NUMBERS, code=0, check=call_status(3, "verified")),
    "integer tensors": Case(**NUMBERS, code=0, check=call_status(4, "verified")),
    "retain_graph": Case(**GRAPHS, code=0, says=("4 backward calls, 4 explained",), check=call_status(2, "verified")),
    "create_graph": Case(**GRAPHS, code=0, says=("4 backward calls, 4 explained",), check=call_status(4, "verified")),
    "complex tensors": Case(**COMPLEX_AND_SPARSE, code=5, says=("? incomplete",), check=call_status(1, "verified")),
    "sparse tensors": Case(**COMPLEX_AND_SPARSE, code=5, says=("? incomplete",), check=call_status(2, "no-rule")),

    # --- paths fixed before the run, printed as typed --------------------------------
    "os.chdir after backward": Case(
        dot("--json", "result.json", "script.py"), 0, ("json: result.json",),
        script=SIMPLE + "import os\nos.chdir('elsewhere')\n",
        files={"elsewhere/result.json": USERS_JSON, "elsewhere/graphexplain-out/call-1.dot": USERS_DOT},
        check=written_where_it_started),
    "[/x] and [bold] in paths": Case(**MARKUP, code=0, says=("pictures: [/x]/call-1.dot", "json: [bold]r.json"),
                                      check=markup_paths_written),
    "[bold] and [/x] in names": Case(**MARKUP, code=0,
                                     says=('model["[bold]"](inputs["[/x]"])', "model.[bold] (Linear)")),
    r'"\N{BULLET}" in the code': Case(**MARKUP, code=0, says=('len("\\N{BULLET}")',), check=backslash_kept),
    "one picture cannot be written": Case(
        ("--format", "dot,svg", "script.py"), 0, ("not drawn: graphexplain-out/call-1.dot", "✓ verified"),
        files={"graphexplain-out/.graphexplain": "", "graphexplain-out/call-1.dot/": ""},
        check=other_pictures_still_made),

    # --- compiled code and function transforms ----------------------------------------
    "torch.compile, UserWarnings as errors": Case(
        ("script.py",), 5, ("CompiledFunctionBackward", "no symbolic rule: CompiledFunctionBackward",
                            "compiled (OptimizedModule)"), script=(
            "import warnings\nimport torch\nwarnings.filterwarnings('error', category=UserWarning)\n\n"
            "@torch.compile\ndef f(x, w):\n    return torch.sin(x * w).sum()\n\n"
            "x = torch.randn(5, requires_grad=True)\nw = torch.randn(5, requires_grad=True)\n"
            "compiled = torch.compile(torch.nn.Linear(5, 1))\n"
            "loss = f(x, w) + compiled(x).sum()\nloss.backward()\n"), check=no_dynamo_warnings),
    "vmap(grad) alone is no backward call": Case(dot("script.py"), 4, ("finished without calling .backward()",),
                                                 script=(
        "import torch\nfrom torch.func import grad, vmap\n"
        "print(vmap(grad(lambda x: (x.sin() * x).sum()))(torch.randn(4, 3)).shape)\n")),

    # --- meta tensors, threads, explain() inside the script (capture/intercept.py) --------
    "meta tensors": Case(dot("script.py"), (0, 5), ("(3, 4) meta",), script=(
        "import torch\nx = torch.empty(3, 4, device='meta', requires_grad=True)\n"
        "(x * 2).sum().backward()\nprint(tuple(x.grad.shape), x.grad.device)\n"),),
    "16 threads, one backward each": Case(dot("script.py"), 0, ("16 backward calls, 1 explained",), script=(
        "import threading, time\nimport torch\nbarrier = threading.Barrier(16)\n"
        "leaves = [torch.full((2,), float(i), requires_grad=True) for i in range(16)]\n\n"
        "def slow(grad):\n    time.sleep(0.05)\n    return grad\n\n"
        "def work(leaf):\n    y = leaf * 2\n    y.register_hook(slow)\n    barrier.wait()\n"
        "    y.sum().backward()\n\n"
        "threads = [threading.Thread(target=work, args=(leaf,)) for leaf in leaves]\n"
        "for t in threads:\n    t.start()\nfor t in threads:\n    t.join()\n"),),
    "explain() inside the script": Case(dot("script.py"), 0, ("1 backward call, 1 explained",), script=(
        "import torch, graphexplain\nw = torch.tensor([1.0, 2.0], requires_grad=True)\n"
        "loss = (w * w).sum()\ngraphexplain.explain(loss)\nloss.backward()\n"),),
}


def make_files(folder: Path, case: Case) -> None:
    if case.script is not None:
        (folder / "script.py").write_text(case.script, encoding="utf-8")
    for name, text in case.files.items():
        path = folder / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def _run_key(case: Case):
    return case.args, case.script, tuple(sorted(case.files.items()))


@pytest.fixture(scope="module")
def catalogue(launch, tmp_path_factory):
    """name → (folder, Future of the run); every run starts at once."""
    runs, started = {}, {}
    for name, case in CASES.items():
        key = _run_key(case)
        if key not in runs:
            folder = tmp_path_factory.mktemp(f"run{len(runs)}")
            make_files(folder, case)
            runs[key] = (folder, launch.graphexplain("trace", *case.args, cwd=folder))
        started[name] = runs[key]
    return started


def _param(name: str):
    case = CASES[name]
    marks = [pytest.mark.xfail(strict=True, reason=case.not_yet)] if case.not_yet else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(name) for name in CASES])
def test_case(catalogue, name):
    case = CASES[name]
    folder, future = catalogue[name]
    run = future.result()
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    assert run.returncode in codes, run.output
    folded = " ".join(run.output.split())
    for words in case.says:
        assert " ".join(words.split()) in folded, (words, run.output)
    ours = [line for line in run.output.splitlines() if OURS_IN_A_TRACEBACK.search(line)]
    assert not ours, f"a traceback through graphexplain's own code: {ours}"
    if not case.runs:
        assert RAN not in run.stdout and "graphexplain ═" not in run.stdout, run.output
        assert "Traceback" not in run.output
    if case.check is not None:
        case.check(folder, run)


# --- the library, in-process ----------------------------------------------------------


def test_recording_entered_twice_restores_everything_when_the_outermost_exits():
    import torch
    from torch.autograd.function import Function
    from torch.nn.modules import module as nn_module

    import graphexplain

    def state():
        return (Function.__dict__["apply"], len(nn_module._global_forward_pre_hooks),
                len(nn_module._global_forward_hooks), torch._C._len_torch_function_stack())

    before = state()
    recorder = graphexplain.recording()
    with recorder:
        inside = state()
        with recorder:
            assert state() == inside  # entered again: nothing installed twice
            y = torch.ones(2, requires_grad=True) * 2
        assert state() == inside  # the inner exit restores nothing yet
        z = y * 3
    assert state() == before
    assert "graphexplain" in y.grad_fn.metadata and "graphexplain" in z.grad_fn.metadata


def test_explain_with_a_wrong_shape_grad_output_says_so():
    import torch

    import graphexplain

    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    with pytest.raises(graphexplain.ExplainError, match=r"grad_output has shape \(2,\), but y has shape \(3,\)"):
        graphexplain.explain(y, torch.ones(2))


def test_explain_of_a_freed_graph_says_so():
    import torch

    import graphexplain

    x = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(graphexplain.ExplainError, match="already used by an earlier backward call"):
        graphexplain.explain(loss)


def test_a_failure_inside_graphexplain_is_shown_as_ours(graphexplain_main, monkeypatch, tmp_path):
    """A bug of graphexplain's must not read as the user's: it is named as
    graphexplain's, with its whole traceback."""
    from graphexplain.capture import intercept

    def broken(*args):  # fails inside graphexplain's own code: `in` on None, in plain_words
        return intercept.plain_words(None, None)

    monkeypatch.setattr(intercept.Interceptor, "_summary", staticmethod(broken))
    (tmp_path / "script.py").write_text(SIMPLE, encoding="utf-8")
    run = graphexplain_main("trace", "--format", "dot", "script.py")
    assert run.returncode == 3, run.output
    assert "this is a bug in graphexplain, not in the script" in " ".join(run.stderr.split())
    frame = r'File "' + re.escape(PACKAGE) + r'capture[/\\]intercept\.py", line \d+, in plain_words'
    assert re.search(frame, run.stderr), run.stderr


def test_a_torch_error_is_the_scripts_own():
    from graphexplain.capture.runner import run_script

    run = run_script(str(TESTS / "scripts" / "backward_twice.py"))
    assert run.traceback and not run.ours
