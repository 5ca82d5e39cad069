"""Many backward calls: the loop plot (`--out/loop.dot`, `.png`, render/loop_plot.py),
`--call all` folding the walkthroughs of a loop's repeated verified calls
into the loop table (Note [a loop's walkthroughs folded] in report.py), and
many pictures drawn by one `dot` (Note [one dot for many pictures])."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from graphexplain.render import dot, loop_plot
from graphexplain.render.loop_plot import CallPoint, PlotError, plot

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
HAS_DOT = shutil.which("dot") is not None

LOOP = """\
import torch
torch.manual_seed(0)
w = torch.randn(3, requires_grad=True)
x = torch.randn(4, 3)
for step in range(5):
    loss = ((x @ w).tanh() ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= 0.5 * w.grad
    w.grad = None
print("final", round(loss.item(), 4))
"""

# call 3's backward is wrong (×3 where the forward says ×2): a mismatch in the middle of a loop
WRONG_AT_THREE = """\
import torch

class Twice(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        Twice.calls += 1
        return grad * (3 if Twice.calls == 3 else 2)

w = torch.tensor([1.0, 2.0], requires_grad=True)
for step in range(5):
    loss = (Twice.apply(w) * w).sum()
    loss.backward()
    w.grad = None
"""

# a loop long enough for a plot (loop_plot.PLOTTED_FROM calls)
LONG_LOOP = LOOP.replace("range(5)", "range(13)")

# the script's own matplotlib: a style, a figure left open in pyplot, the Agg backend chosen
OWN_PLOT = """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
plt.rcParams["lines.linewidth"] = 7.0
figure = plt.figure(figsize=(3, 2))
plt.plot([1, 2, 3])
w = torch.ones(2, requires_grad=True)
for k in range(13):
    (w * w).sum().backward()
"""


def _script(tmp_path: Path, text: str, name: str = "script.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _walkthroughs(stdout: str):
    return [int(n) for n in re.findall(r"Backward call (\d+): ", stdout)]


def _table_calls(stdout: str):
    return {int(n): call for n, call in re.findall(r"^\s+(\d+)\s+loss\s.*✓ graph of call (\d+)", stdout, re.M)}


# --- the loop plot --------------------------------------------------------------------------

def _calls(count: int, leaves=("w", "b"), explained=(1,)):
    return [CallPoint(k, 10.0 ** (-k / 4), tuple((name, 1.0 / (k + position)) for position, name in enumerate(leaves)),
                      k in explained) for k in range(1, count + 1)]


def _paths(source: str):
    """The lines of the plot's data (the loss, the leaves): (path, colour) of each edge drawing one."""
    edges = re.findall(r'^  p\d+ -- p\d+ \[pos="([^]]*)", color="(#[0-9a-f]+)"', source, re.M)
    data = (loop_plot.LOSS_COLOUR, *loop_plot.LEAF_COLOURS)
    return [(" ".join(re.findall(r"[\d.]+,[\d.]+", path)), colour) for path, colour in edges if colour in data]


def test_a_loop_gets_its_plot_listed_with_the_pictures(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--no-color", "--format", "dot", _script(tmp_path, LONG_LOOP))
    assert run.returncode == 0, run.output
    source = (tmp_path / "graphexplain-out" / "loop.dot").read_text(encoding="utf-8")
    assert source.startswith("graph loop {") and "Loss per backward call: script.py" in source
    assert "pictures: graphexplain-out/call-1.dot, graphexplain-out/loop.dot" in run.stdout
    assert "Traceback" not in run.output and "not plotted" not in run.stderr


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_the_plot_comes_in_every_format_asked_for(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--quiet", "--format", "png,svg,pdf", _script(tmp_path, LONG_LOOP))
    assert run.returncode == 0, run.output
    out = tmp_path / "graphexplain-out"
    assert (out / "loop.png").read_bytes().startswith(PNG)
    assert (out / "loop.pdf").read_bytes().startswith(b"%PDF")
    assert b"Loss per backward call: script.py" in (out / "loop.svg").read_bytes()
    assert "graphexplain-out/loop.dot, graphexplain-out/loop.png, graphexplain-out/loop.svg, " \
           "graphexplain-out/loop.pdf" in " ".join(run.stdout.split())
    assert run.stderr == ""  # not a word from graphviz either


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_the_png_is_800_by_600():
    import struct

    data = loop_plot.draw(loop_plot.to_dot(_calls(20)), "png")
    assert data.startswith(PNG) and struct.unpack(">II", data[16:24]) == (800, 600)


@pytest.mark.parametrize("example", ["autograd_mean", "grad_accumulation"])
def test_a_few_calls_get_no_plot(example, graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--quiet", "--format", "dot", REPO / "examples" / f"{example}.py")
    assert run.returncode == 0, run.output
    assert not list((tmp_path / "graphexplain-out").glob("loop.*"))
    assert "loop." not in run.stdout


def test_the_plot_is_the_same_bytes_twice(tmp_path):
    calls = [CallPoint(k, 10.0 ** -k, (("w", 1.0 / k), ("b", 0.5)), k in (1, 4)) for k in range(1, 8)]
    assert loop_plot.to_dot(calls, "t") == loop_plot.to_dot(list(calls), "t")
    if HAS_DOT:
        first, second = plot(calls, str(tmp_path / "a.png")), plot(calls, str(tmp_path / "b.png"))
        assert Path(first).read_bytes() == Path(second).read_bytes()


def test_drawing_the_plot_imports_no_matplotlib(tmp_path):
    import subprocess

    from conftest import subprocess_env

    code = ("import sys; from graphexplain.cli import main; main(['trace', '--quiet', '--format', 'dot', "
            f"{str(_script(tmp_path, LONG_LOOP))!r}]); print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "graphexplain-out" / "loop.dot").exists()


def test_the_scripts_own_matplotlib_is_untouched(graphexplain_main, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    backend = matplotlib.rcParams._get_backend_or_none()
    import matplotlib.pyplot as plt
    before = set(plt.get_fignums())  # figures other tests in this process left open
    try:
        run = graphexplain_main("trace", "--quiet", "--format", "dot", _script(tmp_path, OWN_PLOT))
        assert run.returncode == 0, run.output
        assert (tmp_path / "graphexplain-out" / "loop.dot").exists()
        (new,) = set(plt.get_fignums()) - before  # the script's figure, and no figure of ours
        assert plt.figure(new).get_size_inches().tolist() == [3.0, 2.0]
        assert matplotlib.rcParams["lines.linewidth"] == 7.0  # the script's style, still in force
        assert matplotlib.get_backend().lower() == "agg"
    finally:
        plt.close("all")
        matplotlib.rcdefaults()
        if backend is not None:
            matplotlib.rcParams["backend"] = backend


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_a_plot_that_fails_is_one_line(graphexplain_main, tmp_path, monkeypatch):
    graph = {**loop_plot.STYLES["graph"], "layout": "no-such-layout"}  # graphviz refuses it, for real
    monkeypatch.setitem(loop_plot.STYLES, "graph", graph)
    run = graphexplain_main("trace", "--quiet", "--format", "png", _script(tmp_path, LONG_LOOP))
    assert run.returncode == 0, run.output  # the verification's code, not the plot's
    messages = [line for line in run.stderr.split("graphexplain: ") if line.strip()]
    assert len(messages) == 1, run.stderr
    said = " ".join(messages[0].split())
    assert said.startswith("not drawn: graphexplain-out/loop.png: graphviz's `dot` refused the graph"), said
    assert said.endswith("The DOT source is in graphexplain-out/loop.dot."), said
    assert "Traceback" not in run.output
    assert "loop.png" not in run.stdout and "graphexplain-out/loop.dot" in run.stdout
    assert (tmp_path / "graphexplain-out" / "call-1.png").read_bytes().startswith(PNG)  # the picture is drawn


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_the_plot_drawn_with_the_pictures_is_the_plot_drawn_alone(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--quiet", "--format", "png,pdf", _script(tmp_path, LONG_LOOP))
    assert run.returncode == 0, run.output
    out = tmp_path / "graphexplain-out"
    source = (out / "loop.dot").read_text(encoding="utf-8")
    assert (out / "loop.png").read_bytes() == loop_plot.draw(source, "png") == dot._draw(source, "png")
    assert (out / "loop.pdf").read_bytes().startswith(b"%PDF")


def test_a_plot_into_a_missing_folder_is_a_plot_error(tmp_path):
    with pytest.raises(PlotError) as failed:
        plot([CallPoint(1, 1.0, (), True), CallPoint(2, 0.5, (), False)], str(tmp_path / "no" / "loop.dot"))
    assert "\n" not in str(failed.value)


def test_an_unknown_format_is_a_plot_error():
    with pytest.raises(PlotError, match="Unknown picture format 'gif'"):
        loop_plot.draw("graph loop {}", "gif")


def test_the_plot_reads_every_call_and_marks_the_explained(graphexplain_main, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(loop_plot, "to_dot", lambda calls, title="": seen.append(calls) or "graph loop {}\n")
    graphexplain_main("trace", "--quiet", "--call", "2", "--format", "dot", _script(tmp_path, LONG_LOOP))
    (calls,) = seen
    assert [c.index for c in calls] == list(range(1, 14))
    assert [c.explained for c in calls] == [k == 2 for k in range(1, 14)]
    assert all(c.loss is not None and [name for name, _ in c.norms] == ["w"] for c in calls)


def test_log_scale_only_when_the_values_span_decades():
    assert not loop_plot._spans_decades([1.0, 0.5, 0.02])  # 1/0.02 = 50, under two powers of ten
    assert loop_plot._spans_decades([1.0, 1e-4])
    assert not loop_plot._spans_decades([1.0, -1.0, 1e-4])  # a sign change: linear


def test_a_log_scale_has_a_tick_per_power_of_ten():
    axis = loop_plot.Axis.fitted([1.0, 1e-4], 0.0, 100.0, log=True)
    major, minor = axis.ticks()
    assert [label for _, label in major] == ["10⁻⁴", "10⁻³", "10⁻²", "10⁻¹", "1"]
    assert len(minor) == 4 * 8 + 3  # 2×, …, 9× in each of four decades; 7×, 8×, 9× 10⁻⁵ in the margin
    assert all(0.0 <= at <= 100.0 for at, _ in major)
    assert np.isnan(axis.at([0.0, -1.0])).all()  # a log scale shows no zero or negative value


@pytest.mark.parametrize("low, high, integer, labels", [
    (0.0, 1.0, False, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]),
    (0.0, 2.0e-5, False, ["0.0e+00", "5.0e-06", "1.0e-05", "1.5e-05", "2.0e-05"]),
    (0.0, 3.0e6, False, ["0.0e+00", "5.0e+05", "1.0e+06", "1.5e+06", "2.0e+06", "2.5e+06", "3.0e+06"]),
    (-1.0, 1.0, False, ["-1.0", "-0.5", "0.0", "0.5", "1.0"]),
    (1.0, 13.0, True, ["2", "4", "6", "8", "10", "12"]),
    (1.0, 3.0, True, ["1", "2", "3"]),
])
def test_ticks_are_round_and_written_as_their_step_needs(low, high, integer, labels):
    assert loop_plot._linear_ticks(low, high, integer)[1] == labels


def test_an_explained_call_is_marked_and_many_are_counted():
    few = loop_plot.to_dot(_calls(20, explained=(1, 5)))
    assert few.count('shape="circle"') == 2 + 1  # the two marks, and the legend's
    assert "explained (walkthrough, picture)" in few
    many = loop_plot.to_dot(_calls(200, explained=range(1, 100)))
    assert 'shape="circle"' not in many and "99 of 200 calls explained" in many


def test_ten_leaves_are_drawn_and_the_rest_counted():
    source = loop_plot.to_dot(_calls(15, leaves=[f"leaf{k}" for k in range(12)]))
    assert "(the first 10 of 12 leaves)" in source
    assert len(_paths(source)) == 1 + 10  # the loss and ten leaves
    assert "‖leaf9‖" in source and "‖leaf10‖" not in source


def test_a_missing_number_breaks_the_line_and_none_is_said():
    calls = _calls(20)
    calls[9] = CallPoint(10, None, (("w", float("nan")),), False)
    # the loss, w (a NaN) and b (no norm at call 10) each cut in two
    assert len(_paths(loop_plot.to_dot(calls))) == 2 + 2 + 2
    nothing = loop_plot.to_dot([CallPoint(k, None, (), False) for k in range(1, 14)])
    assert "no call's root is a single number" in nothing and "no leaf had a .grad" in nothing


@pytest.mark.parametrize("values", [
    [float("inf"), 1.0, 2.0], [-5.0, 3.0, -1e-9], [1e300, -1e300, 0.0], [1e-320, 5e-324, 1e-310], [2.0, 2.0],
    [0.0, 0.0], [float("nan")] * 3, [None, 1.0, float("-inf")], [1.7976931348623157e308, 1e-300],
    [-1.7976931348623157e308, 1.7976931348623157e308], [1e-300, 1e300], [5e-324, 1e-323],
], ids=lambda values: ",".join(map(str, values)))
def test_any_numbers_make_a_plot_without_a_word(values, recwarn):
    calls = [CallPoint(k, values[k % len(values)], (("w", abs(values[k % len(values)] or 0.0)),), k == 1)
             for k in range(1, 14)]
    source = loop_plot.to_dot(calls)
    assert not re.search(r"nan|inf", source.replace("Infinity", "")), source
    assert not recwarn.list  # numpy's overflow warnings would reach the user's stderr


def test_a_name_is_shown_letter_for_letter():
    source = loop_plot.to_dot(_calls(13, leaves=['a"b\\N<i>']))
    assert '‖a\\"b\\\\N<i>‖' in source  # a quote escaped, the backslash doubled: no graphviz escape


def test_a_long_loop_is_thinned_to_what_the_page_shows():
    rng = np.random.default_rng(0)
    calls = [CallPoint(k, float(v), (), False) for k, v in enumerate(rng.standard_normal(50_000), start=1)]
    source = loop_plot.to_dot(calls)
    (path, _), = _paths(source)
    xs = np.array([float(point.split(",")[0]) for point in path.split()])
    columns = (loop_plot.RIGHT - loop_plot.LEFT) / loop_plot.COLUMN
    assert len(xs) <= 3 * 4 * (columns + 1) and len(source) < 600_000
    losses = np.array([c.loss for c in calls])
    ys = np.array([float(point.split(",")[1]) for point in path.split()])
    axis = loop_plot.Axis.fitted(losses, *loop_plot.FRAMES[0])
    assert ys.min() == pytest.approx(axis.at(losses.min()), abs=0.01)  # the extremes are kept
    assert ys.max() == pytest.approx(axis.at(losses.max()), abs=0.01)
    assert max(len(piece) for piece in re.findall(r'"([^"]*)"', source)) < 16384  # what dot reads in one string


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_a_long_line_is_drawn_by_dot_without_a_word():
    calls = _calls(3000, leaves=[f"leaf{k}" for k in range(10)])
    assert loop_plot.draw(loop_plot.to_dot(calls, "long"), "png").startswith(PNG)  # dot's warnings fail it


@pytest.mark.parametrize("example", ["gradient_descent", "training_pipeline"])
def test_an_examples_output_gains_only_the_plot(example, graphexplain_main, tmp_path, monkeypatch):
    script = REPO / "examples" / f"{example}.py"
    plotted = graphexplain_main("trace", "--no-color", "--width", "100", "--format", "dot", "--out", "a", script)
    monkeypatch.setattr(loop_plot, "points", lambda report: ())  # as before the plot
    plain = graphexplain_main("trace", "--no-color", "--width", "100", "--format", "dot", "--out", "b", script)
    assert plotted.returncode == plain.returncode == 0
    assert plotted.stdout.replace("a/", "b/").replace(", b/loop.dot", "") == plain.stdout
    assert ", a/loop.dot" in plotted.stdout and plotted.stderr == plain.stderr


# --- --call all: a loop's walkthroughs folded -------------------------------------------------

def test_call_all_prints_the_first_walkthrough_and_a_line_per_repeat(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--call", "all", "--no-color", "--width", "120", "--format", "dot",
                            _script(tmp_path, LOOP))
    assert run.returncode == 0, run.output
    assert _walkthroughs(run.stdout) == [1]
    assert _table_calls(run.stdout) == {2: "1", 3: "1", 4: "1", 5: "1"}
    assert "Calls explained and verified, with the graph of the call named (--full prints their walkthroughs)" \
        in " ".join(run.stdout.split())
    assert sorted(p.name for p in (tmp_path / "graphexplain-out").glob("call-*.dot")) == \
        [f"call-{k}.dot" for k in range(1, 6)]  # every call is still drawn
    assert "5 backward calls, 5 explained" in run.stdout


def test_full_prints_every_walkthrough(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--call", "all", "--full", "--no-color", "--format", "dot",
                            _script(tmp_path, LOOP))
    assert run.returncode == 0, run.output
    assert _walkthroughs(run.stdout) == [1, 2, 3, 4, 5]
    assert "graph of call" not in run.stdout


def test_a_mismatch_in_the_loop_gets_its_walkthrough(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--call", "all", "--no-color", "--width", "120", "--format", "dot",
                            _script(tmp_path, WRONG_AT_THREE))
    assert run.returncode == 1, run.output  # caught: a check that can fail
    assert _walkthroughs(run.stdout) == [1, 3]
    assert _table_calls(run.stdout) == {2: "1", 4: "1", 5: "1"}
    assert "✗" in run.stdout.split("Backward call 3")[1]


def test_the_json_keeps_every_call_whole(graphexplain_main, tmp_path):
    import json

    graphexplain_main("trace", "--call", "all", "--quiet", "--format", "dot", "--json", "r.json",
                      _script(tmp_path, LOOP))
    calls = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["backward_calls"]
    assert [len(call["nodes"]) for call in calls] == [len(calls[0]["nodes"])] * 5
    assert all(isinstance(call["root"]["value"], float) for call in calls)  # the loss, for a plot


# --- many pictures, one dot -----------------------------------------------------------------

def _sources(count: int):
    return [f'digraph g {{ a [label="call {k}"]; b [label="{"x" * k}"]; a -> b }}\n' for k in range(count)]


def test_batches_keep_the_order_and_their_bounds(monkeypatch):
    monkeypatch.setattr(dot, "BATCH_PICTURES", 3)
    big = "x" * (dot.ALONE + 1)
    batches = dot._batches(["a", "b", "c", "d", big, "e"])
    assert batches == [[0, 1, 2], [3], [4], [5]]


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("format", ["png", "pdf", "svg"])
def test_one_dot_for_many_pictures_draws_what_one_dot_each_would(format):
    sources = _sources(5)
    together = dict(dot.draw_all(sources, format))
    assert sorted(together) == list(range(5))
    for position, source in enumerate(sources):
        assert _undated(together[position]) == _undated(dot._draw(source, format)), position


def _undated(drawn: bytes) -> bytes:
    """A picture without cairo's PDF /CreationDate (the second the dot process ran,
    which two runs straddle now and then; this cairo ignores SOURCE_DATE_EPOCH)."""
    return re.sub(rb"/CreationDate \(D:\d+Z?\)", b"/CreationDate ()", drawn)


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_a_refused_graph_in_a_batch_is_its_own_one_line_error():
    sources = _sources(4)
    sources[2] = 'digraph { a [label="' + "x" * 20000 + '"] }'  # dot refuses labels this long
    drawn = dict(dot.draw_all(sources, "png"))
    assert isinstance(drawn[2], dot.RenderError) and "\n" not in str(drawn[2])
    assert all(drawn[k].startswith(PNG) for k in (0, 1, 3))


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_call_all_pictures_match_one_dot_each(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--call", "all", "--quiet", "--format", "png", _script(tmp_path, LOOP))
    assert run.returncode == 0, run.output
    out = tmp_path / "graphexplain-out"
    for k in range(1, 6):
        source = (out / f"call-{k}.dot").read_text(encoding="utf-8")
        assert (out / f"call-{k}.png").read_bytes() == dot._draw(source, "png"), k
