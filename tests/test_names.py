"""Names and labels stay short in recurrent graphs, a failing `dot` is one
line and never a traceback, and a long training loop's calls are listed as
a summary (Note [bounded labels] in graphexplain/notation.py).

The recurrent scripts (tests/scripts/) are real ``python -m graphexplain``
runs, started together; the dot failures call the CLI in-process, with a
fake `dot` first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import torch

from graphexplain.notation import LABEL_WIDTH, shorten, stands_in

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SCRIPTS = TESTS / "scripts"
AUTOGRAD_MEAN = REPO / "examples" / "autograd_mean.py"
WIDTH = 100
RECURRENT = ["rnn_loop_20", "gru_20", "lstmcell_loop_20"]
# Every node drawn and every step printed (--depth all --full), so that every label is walked.
RUNS = {name: ["trace", "--no-color", "--width", str(WIDTH), "--format", "dot", "--out", "out", "--depth", "all",
               "--full", "--json", "result.json", SCRIPTS / f"{name}.py"] for name in RECURRENT + ["gru_5"]}
RUNS["loop_300"] = ["trace", "--quiet", "--format", "dot", "--json", "result.json", SCRIPTS / "loop_300.py"]
RUNS["loop_300_last"] = ["trace", "--quiet", "--format", "dot", "--call", "last", SCRIPTS / "loop_300.py"]


@pytest.fixture(scope="module")
def traced(launch, tmp_path_factory):
    """``traced(name)`` → (folder, run) of that script's trace, all started together."""
    started = {}
    for name, args in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        started[name] = (folder, launch.graphexplain(*args, cwd=folder))

    def result(name):
        folder, future = started[name]
        return folder, future.result()

    return result


# --- the bound --------------------------------------------------------------------------

def test_shorten_cuts_with_an_ellipsis_and_keeps_short_text():
    assert shorten("x * y") == "x * y"
    cut = shorten("a + " * 40)
    assert len(cut) <= LABEL_WIDTH and cut.endswith("…") and stands_in(cut)


def test_a_composed_name_never_nests_another():
    from graphexplain.capture.naming import composed_name

    assert composed_name("t", ["model.weight"], [True], 7) == "t(model.weight)"
    assert composed_name("add", ["mul#3", "x"], [False, True], 2) == "add#2"
    assert composed_name("cat", ["x"] * 40, [True] * 40, 9) == "cat#9"  # would not fit
    assert composed_name("cat", ["x"] * 40, [True] * 40, None) == "cat"  # outside the call's graph


def _dot_labels(source: str):
    """Every node, edge, cluster and graph label of a DOT source, unescaped enough to measure."""
    return [match.group(1) for match in re.finditer(r'label="((?:[^"\\]|\\.)*)"', source, re.S)]


def _json_names(data, key=""):
    """Every string under a key that is or ends with "name" (node, operand, leaf, root names)."""
    if isinstance(data, dict):
        for k, value in data.items():
            yield from _json_names(value, k)
    elif isinstance(data, list):
        for value in data:
            yield from _json_names(value, key)
    elif isinstance(data, str) and key.endswith("name"):
        yield data


@pytest.mark.parametrize("name", RECURRENT)
def test_every_label_of_a_recurrent_graph_is_bounded(traced, name):
    folder, run = traced(name)
    assert run.returncode in (0, 5), run.output
    assert "Traceback" not in run.output
    source = (folder / "out" / "call-1.dot").read_text(encoding="utf-8")
    labels = _dot_labels(source)
    assert labels
    for label in labels:  # the name line within the bound, the others (numbers, words) within two
        first, *rest = label.split("\n")
        assert len(first) <= LABEL_WIDTH, first
        assert all(len(line) <= 2 * LABEL_WIDTH for line in rest), label
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    names = list(_json_names(data))
    assert len(names) > 100
    assert max(len(n) for n in names) <= LABEL_WIDTH, max(names, key=len)
    nodes = data["backward_calls"][0]["nodes"]
    for node in nodes:  # formulas are made of bounded names, a few per op
        assert len(node["forward_named"] or "") <= 4 * LABEL_WIDTH, node["forward_named"]
    for line in run.stdout.splitlines():
        assert len(line) <= WIDTH, line
    titles = re.findall(r"^\d+\. (.+?)  \w+Backward\d", run.stdout, re.M)
    assert len(titles) == len([n for n in nodes if n["op"] != "AccumulateGrad"])
    assert max(len(title) for title in titles) <= LABEL_WIDTH
    assert len(run.stdout) < 2_000_000  # linear in the graph, not exponential


def test_stand_in_names_get_a_legend(traced):
    folder, run = traced("gru_20")
    source = (folder / "out" / "call-1.dot").read_text(encoding="utf-8")
    assert "op#N: the op of step N, which no variable names" in source
    assert re.search(r"in gru\(x\) \(gru_20\.py:\d+\)", source)
    assert "a name like mul#12 is the op of step 12" in " ".join(run.stdout.split())


def test_five_step_gru_traces_with_a_small_picture(traced):
    folder, run = traced("gru_5")
    assert run.returncode in (0, 5), run.output
    assert "Traceback" not in run.output
    assert (folder / "out" / "call-1.dot").stat().st_size < 200_000
    assert json.loads((folder / "result.json").read_text(encoding="utf-8"))["exit_code"] == run.returncode


def test_a_huge_expression_is_cut_and_still_drawn(graphexplain_main, tmp_path):
    numbers = ", ".join(f"{k}.0" for k in range(3000))  # one line of about 20,000 characters
    script = tmp_path / "huge.py"
    script.write_text("import torch\nx = torch.ones(3000, requires_grad=True)\n"
                      f"loss = (x * torch.tensor([{numbers}])).sum()\nloss.backward()\n", encoding="utf-8")
    formats = "dot,svg" if shutil.which("dot") else "dot"
    run = graphexplain_main("trace", "--quiet", "--format", formats, "--json", "r.json", script)
    assert run.returncode == 0, run.output
    assert "not drawn" not in run.stderr and "Traceback" not in run.output
    source = (tmp_path / "graphexplain-out" / "call-1.dot").read_text(encoding="utf-8")
    assert len(source) < 5000
    assert all(len(label.split("\n")[0]) <= LABEL_WIDTH for label in _dot_labels(source))
    names = list(_json_names(json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))))
    assert any(name.endswith("…") for name in names) and max(map(len, names)) <= LABEL_WIDTH


# --- a failing dot ------------------------------------------------------------------------

FAKE_DOTS = {
    "refuses": 'cat > /dev/null\necho "Error: label longer than 16384?" >&2\nexit 1\n',
    "exits non-zero": "cat > /dev/null\nexit 3\n",
    "crashes": "cat > /dev/null\nkill -SEGV $$\n",
    "closes its input": "exec 0<&-\nexit 0\n",  # a BrokenPipeError for whoever writes to it
    "hangs": "exec sleep 30\n",
}
SAYS = {"refuses": "refused the graph (exit code 1): Error: label longer than 16384?",
        "exits non-zero": "refused the graph (exit code 3)", "crashes": "crashed (SIGSEGV)",
        "closes its input": "ended without drawing anything", "hangs": "took longer than 1 s and was stopped"}


@pytest.mark.parametrize("how", list(FAKE_DOTS))
def test_a_failing_dot_is_one_line_naming_the_dot_file(how, graphexplain_main, tmp_path, monkeypatch):
    from graphexplain.render import dot

    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "dot"
    fake.write_text("#!/bin/sh\n" + FAKE_DOTS[how], encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(dot, "DOT_TIMEOUT", 1)
    run = graphexplain_main("trace", "--quiet", "--format", "png,svg", "--json", "r.json", AUTOGRAD_MEAN)
    assert run.returncode == 0, run.output  # the verification's code, not a picture problem's
    assert "Traceback" not in run.output
    messages = [line for line in run.stderr.split("graphexplain: ") if line.strip()]
    assert len(messages) == 1, run.stderr
    message = " ".join(messages[0].split())
    assert message.startswith("not drawn: graphexplain-out/call-1.png, graphexplain-out/call-1.svg:")
    assert SAYS[how] in message
    assert message.endswith("The DOT source is in graphexplain-out/call-1.dot.")
    out = tmp_path / "graphexplain-out"
    assert sorted(p.name for p in out.iterdir()) == [".graphexplain", "call-1.dot"]
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["status"] == "verified"


def test_a_dot_that_stops_reading_a_big_graph_is_a_render_error(tmp_path, monkeypatch):
    from graphexplain.render.dot import RenderError, _draw

    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\nexec 0<&-\nsleep 0.2\nexit 0\n", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    big = "digraph {\n" + 'a [label="x"]\n' * 100_000 + "}\n"  # more than a pipe holds
    with pytest.raises(RenderError) as stopped:
        _draw(big, "png")
    assert "\n" not in str(stopped.value) and "`dot`" in str(stopped.value)


@pytest.mark.skipif(not shutil.which("dot"), reason="graphviz's dot is not installed")
def test_the_real_dot_refusing_a_huge_label_is_a_render_error():
    from graphexplain.render.dot import RenderError, _draw

    with pytest.raises(RenderError) as refused:
        _draw('digraph { a [label="' + "x" * 20000 + '"] }', "svg")
    assert "\n" not in str(refused.value) and "`dot`" in str(refused.value)


# --- many calls ---------------------------------------------------------------------------

def _listing_rows(stdout: str):
    return re.findall(r"^\s+(\d+)\s+loss\s", stdout, re.M)


def test_a_long_loop_lists_a_summary_of_its_calls(traced):
    folder, run = traced("loop_300")
    assert run.returncode == 0, run.output
    # --quiet: the explained call 1 has its row too, since its walkthrough is not printed
    title = "Backward calls (--quiet prints no walkthrough; explain another with --call N)"
    assert title in " ".join(run.stdout.split())
    assert _listing_rows(run.stdout) == ["1", "2", "3", "63", "122", "182", "241", "300"]
    assert run.stdout.count("more calls …") == 5
    assert "… 59 more calls …" in run.stdout
    assert re.search(r"^\s+300\s+loss\s+[\d.e-]+\s+‖b‖=[\d.e-]+, ‖a‖=[\d.e-]+", run.stdout, re.M)
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    calls = data["backward_calls"]
    assert [call["index"] for call in calls] == list(range(1, 301))  # the JSON keeps every call
    assert "nodes" in calls[0] and all("leaf_grad_norms" in call for call in calls[1:])


def test_call_last_explains_the_last_and_summarises_the_others(traced):
    folder, run = traced("loop_300_last")
    assert run.returncode == 0, run.output
    assert "Backward call 300" not in run.stdout  # --quiet
    rows = _listing_rows(run.stdout)
    assert rows[:3] == ["1", "2", "3"] and rows[-1] == "300" and len(rows) == 8  # 300: explained, --quiet
    assert re.search(r"^\s+300\s+loss\s.*✓ verified", run.stdout, re.M)


def test_a_few_calls_are_listed_in_full():
    from graphexplain.render.terminal import LISTED_IN_FULL, listed_positions

    assert listed_positions(LISTED_IN_FULL) == list(range(LISTED_IN_FULL))
    many = listed_positions(LISTED_IN_FULL + 1)
    assert many[0] == 0 and many[-1] == LISTED_IN_FULL and len(many) < LISTED_IN_FULL + 1
    assert listed_positions(1) == [0]


def _batch():
    return (torch.randn(2, 3),)  # made where no variable names it: graphexplain calls it by its shape


def test_a_constant_called_by_its_shape_says_the_shape_once():
    import graphexplain
    batch, w = _batch(), torch.ones(2, 3, requires_grad=True)
    with graphexplain.recording():
        loss = (w * batch[0]).sum()
    explanation = graphexplain.explain(loss)
    (constant,) = explanation.graph.constants
    assert constant.name == "constant(2, 3)" and constant.shown_shape is None
    assert "constant constant(2, 3): does not require grad" in str(explanation)
    assert "constant <code>constant(2, 3)</code>: does not require grad" in explanation.to_html()
    assert "constant(2, 3)\nconstant: does not require grad" in explanation.to_dot()
    from graphexplain.model import Constant
    assert Constant("mask", (2, 3), "detached", (0,)).shown_shape == (2, 3)  # a name that is not the shape keeps it


def test_the_ops_of_one_sequential_call_are_not_all_named_after_it():
    """Note [one name for a call that runs several ops] in capture/snapshot.py."""
    import graphexplain
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.Tanh())
    x = torch.randn(5, 3)
    with graphexplain.recording():
        loss = model(x).sum()
    explanation = graphexplain.explain(loss)
    named = [step.node for step in explanation.steps if step.node.name == "model(x)"]
    assert [node.op for node in named] == ["TanhBackward0"]  # the op whose output is the call's result
    for step in explanation.steps:
        if not step.node.is_leaf:  # (a leaf's AccumulateGrad is its variable's own name)
            assert step.node.name not in {operand.label for operand in step.node.operands}, step.node.name
    assert explanation.status == "verified"
