"""Capture: running a script unchanged, catching its backward calls, and
copying the graph behind each one (ops, names, source lines, torch's numbers).

Most tests run scripts in-process through `graphexplain.trace` /
`run_script`. The last ones compare what every example prints under plain
python with what it prints under `graphexplain trace` (before graphexplain's
own ═ rule): one interpreter per mode runs all the examples, each in a fresh
folder with its own stdout file (tests/scripts/run_each.py).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import _get_current_function_mode_stack

import graphexplain
from graphexplain.capture.intercept import Selection
from graphexplain.capture.runner import COMPLETED, RAISED, run_script

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
EXAMPLES = REPO / "examples"
SCRIPTS = TESTS / "scripts"

AUTOGRAD_MEAN = EXAMPLES / "autograd_mean.py"
BACKPROP_BY_HAND = EXAMPLES / "backprop_by_hand.py"


def line_of(path: Path, code: str) -> int:
    """The number of the one line of `path` that starts with `code`."""
    lines = [number for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if text.strip().startswith(code)]
    assert len(lines) == 1, f"{code!r} is on lines {lines} of {path.name}, expected exactly one"
    return lines[0]


def only(explanations):
    assert len(explanations) == 1, [e.index for e in explanations]
    return explanations[0]


@pytest.fixture(scope="module")
def autograd_mean():
    return only(graphexplain.trace(str(AUTOGRAD_MEAN)))


@pytest.fixture(scope="module")
def backprop_by_hand():
    return only(graphexplain.trace(str(BACKPROP_BY_HAND)))


# --- the two teaching examples ----------------------------------------------


def test_autograd_mean_is_verified(autograd_mean):
    assert autograd_mean.status == "verified"
    assert all(step.status == "verified" for step in autograd_mean.steps)
    assert [leaf.status for leaf in autograd_mean.leaves] == ["verified"]


def test_autograd_mean_nodes_in_backward_order(autograd_mean):
    assert [step.op for step in autograd_mean.steps] == [
        "MeanBackward0", "MulBackward0", "MulBackward0", "AddBackward0", "AccumulateGrad"]
    assert [node.id for node in autograd_mean.graph.nodes] == [0, 1, 2, 3, 4]


def test_autograd_mean_uses_the_scripts_names(autograd_mean):
    names = [step.node.name for step in autograd_mean.steps]
    assert names[0] == "z"  # the mean, which `z` holds when backward is called
    assert names[3] == "y"
    assert names[4] == "x"
    assert {"z", "y", "x"} <= set(names)
    assert autograd_mean.graph.roots[0].name == "z"
    assert [leaf.name for leaf in autograd_mean.leaves] == ["x"]


def test_autograd_mean_sources_point_at_the_scripts_lines(autograd_mean):
    expected = {
        "MeanBackward0": line_of(AUTOGRAD_MEAN, "z = z.mean()"),
        "MulBackward0": line_of(AUTOGRAD_MEAN, "z = y * y * 2"),
        "AddBackward0": line_of(AUTOGRAD_MEAN, "y = x + 2"),
    }
    for step in autograd_mean.steps:
        if step.node.is_leaf:
            continue
        source = step.node.source
        assert source is not None, step.node
        assert Path(source.file).resolve() == AUTOGRAD_MEAN.resolve()
        assert source.line == expected[step.op], (step.op, source)
        assert source.code in AUTOGRAD_MEAN.read_text(encoding="utf-8")
    call = autograd_mean.graph.call_source
    assert Path(call.file).resolve() == AUTOGRAD_MEAN.resolve()
    assert call.line == line_of(AUTOGRAD_MEAN, "z.backward()")
    assert autograd_mean.graph.call == "z.backward()"


def test_autograd_mean_leaf_gradient(autograd_mean):
    x = autograd_mean.leaf("x")
    assert x.formula == "4*(x + 2)/3"
    x_value = autograd_mean.graph.leaves[0].value.data
    np.testing.assert_allclose(x.derived_grad, 4 * (x_value + 2) / 3, rtol=1e-6)
    np.testing.assert_allclose(x.torch_grad, x.derived_grad, rtol=1e-6)


def test_backprop_by_hand_is_verified(backprop_by_hand):
    assert backprop_by_hand.status == "verified"
    assert [step.op for step in backprop_by_hand.steps] == [
        "PowBackward0", "SubBackward0", "MulBackward0", "AccumulateGrad"]
    names = [step.node.name for step in backprop_by_hand.steps]
    assert names[0] == "loss" and names[2] == "y_hat" and names[3] == "w"


def test_backprop_by_hand_sources(backprop_by_hand):
    lines = [step.node.source.line for step in backprop_by_hand.steps if not step.node.is_leaf]
    loss_line = line_of(BACKPROP_BY_HAND, "loss = (y_hat - y) ** 2")
    assert lines == [loss_line, loss_line, line_of(BACKPROP_BY_HAND, "y_hat = w * x")]
    assert backprop_by_hand.graph.call_source.line == line_of(BACKPROP_BY_HAND, "loss.backward()")


def test_backprop_by_hand_weight_gradient_is_minus_two(backprop_by_hand):
    w = backprop_by_hand.leaf("w")
    assert w.formula == "2*x*(w*x - y)"
    assert float(w.derived_grad) == -2.0
    assert float(w.torch_grad) == -2.0
    assert float(backprop_by_hand.observed.leaves[0].grad_after) == -2.0


# --- every way into backward is intercepted ------------------------------------


def test_autograd_backward_is_intercepted():
    run = run_script(str(SCRIPTS / "autograd_backward.py"))
    assert run.outcome == COMPLETED
    [record] = run.calls
    assert record.kind == "backward"
    assert record.call == "torch.autograd.backward(loss)"
    explanation = graphexplain.Explanation.of(record.graph, record.observed, record.index)
    assert explanation.status == "verified"
    w = explanation.graph.leaves[0]
    assert w.name == "w" and w.accumulates
    assert explanation.observed.leaves[0].grad_after.tolist() == [2.0, 4.0]


def test_autograd_grad_is_intercepted_and_leaves_grad_alone(capsys):
    run = run_script(str(SCRIPTS / "autograd_grad.py"))
    assert run.outcome == COMPLETED
    assert "w.grad is None: True" in capsys.readouterr().out
    [record] = run.calls
    assert record.kind == "grad"
    assert record.call == "torch.autograd.grad(loss, [w])"
    explanation = graphexplain.Explanation.of(record.graph, record.observed, record.index)
    assert explanation.status == "verified"
    [w] = explanation.graph.leaves
    assert w.name == "w"
    assert not w.accumulates
    [torch_side] = explanation.observed.leaves
    assert w.grad_before is None and torch_side.grad_after is None
    assert torch_side.grad.tolist() == [2.0, 4.0]
    assert explanation.leaf("w").derived_grad.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("call, explained", [
    ("first", [1]), ("last", [3]), ("all", [1, 2, 3]), ("2", [2]), ("3", [3]),
])
def test_call_selection(call, explained):
    """three_calls.py: call k is loss = sum(w * k) with w = [1, 1], so its
    loss is 2k and it adds k to each element of w.grad."""
    explanations = graphexplain.trace(str(SCRIPTS / "three_calls.py"), call=call)
    assert [e.index for e in explanations] == explained
    for explanation in explanations:
        k = explanation.index
        assert explanation.status == "verified"
        assert float(explanation.graph.roots[0].value.data) == 2.0 * k
        [w] = explanation.graph.leaves
        [torch_side] = explanation.observed.leaves
        assert torch_side.grad.tolist() == [k, k]
        before = None if k == 1 else [sum(range(1, k))] * 2
        assert (None if w.grad_before is None else w.grad_before.tolist()) == before
        assert torch_side.grad_after.tolist() == [sum(range(1, k + 1))] * 2


def test_unselected_calls_are_listed_not_explained():
    run = run_script(str(SCRIPTS / "three_calls.py"), selection=Selection("2"))
    assert [record.index for record in run.calls] == [1, 2, 3]
    assert [record.graph is not None for record in run.calls] == [False, True, False]
    assert [record.summary.root_value for record in run.calls] == [2.0, 4.0, 6.0]


def test_listed_calls_are_named_after_the_scripts_variables():
    run = run_script(str(SCRIPTS / "three_calls.py"))
    assert [record.summary.root for record in run.calls] == ["loss", "loss", "loss"]
    assert [[name for name, _ in record.summary.leaf_norms] for record in run.calls] == [["w"]] * 3


def test_call_selection_rejects_nonsense():
    for text in ("0", "-1", "second", ""):
        with pytest.raises(ValueError):
            Selection.parse(text)


# --- leaving the interpreter as it was ------------------------------------------


def _torch_entry_points():
    return torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad


@pytest.mark.parametrize("script", ["autograd_backward.py", "autograd_grad.py", "raises_after_backward.py"])
def test_tracing_restores_torch_and_the_interpreter(script, capsys):
    before = _torch_entry_points()
    argv, path, main = list(sys.argv), list(sys.path), sys.modules.get("__main__")
    run = run_script(str(SCRIPTS / script), ["an-argument"])
    assert run.outcome == (RAISED if script.startswith("raises") else COMPLETED)
    after = _torch_entry_points()
    assert all(a is b for a, b in zip(after, before)), "a backward entry point is still wrapped"
    assert _get_current_function_mode_stack() == [], "the recorder is still active"
    assert sys.argv == argv and sys.path == path and sys.modules.get("__main__") is main
    # and torch still works as usual afterwards
    w = torch.ones(2, requires_grad=True)
    (w * 3).sum().backward()
    assert w.grad.tolist() == [3.0, 3.0]


def test_script_sees_its_own_argv(capsys):
    run_script(str(SCRIPTS / "print_argv.py"), ["--epochs", "3", "--json", "x"])
    assert "argv: ['--epochs', '3', '--json', 'x']" in capsys.readouterr().out


def test_script_sees_what_python_would_tell_it(monkeypatch, capsys):
    """`python print_file.py` from the script's folder: __file__ absolute
    (python >= 3.9), argv[0] as typed, the script's folder first on sys.path."""
    monkeypatch.chdir(SCRIPTS)
    run = run_script("print_file.py")
    assert run.outcome == COMPLETED
    assert capsys.readouterr().out.splitlines() == [
        f"__file__: {SCRIPTS / 'print_file.py'}", "argv[0]: print_file.py", f"path[0]: {SCRIPTS}",
        "__name__: __main__"]


def test_custom_function_node_is_not_given_a_later_line():
    script = SCRIPTS / "custom_function.py"
    explanation = only(graphexplain.trace(str(script)))
    [cube] = [step.node for step in explanation.steps if step.op == "CubeBackward"]
    assert cube.source is None or cube.source.line == line_of(script, "cubed = Cube.apply(x)")


# --- plain python and graphexplain trace print the same -------------------------

EXAMPLE_SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py"))
EXAMPLE_ARGS = {"linear_regression.py": ["plot.png"]}  # saves its plot there, and prints the path
RULE = re.compile(r"^═+ graphexplain ═+$", re.MULTILINE)


@dataclass(frozen=True)
class Printed:
    stdout: str
    exit_code: int


@pytest.fixture(scope="module")
def side_by_side(launch, tmp_path_factory):
    """script name → (Printed under plain python, Printed under graphexplain
    trace), for every example and full_precision.py. Each script runs in a
    folder of its own, the same folder in both modes. One interpreter per
    mode runs all the scripts (tests/scripts/run_each.py), so that the
    comparison pays for `import torch` twice, not twice per script."""
    scripts = [EXAMPLES / name for name in EXAMPLE_SCRIPTS] + [SCRIPTS / "full_precision.py"]
    root = tmp_path_factory.mktemp("side-by-side")
    jobs = {"plain": [], "trace": []}
    for script in scripts:
        folder = root / script.stem
        folder.mkdir()
        for mode, mode_jobs in jobs.items():
            mode_jobs.append({"script": str(script), "args": EXAMPLE_ARGS.get(script.name, []),
                              "cwd": str(folder), "stdout": str(root / f"{script.stem}.{mode}.out")})
    drivers = []
    for mode, mode_jobs in jobs.items():
        (root / f"{mode}.json").write_text(json.dumps(mode_jobs), encoding="utf-8")
        drivers.append(launch.python(SCRIPTS / "run_each.py", mode, root / f"{mode}.json", cwd=root))
    for driver in drivers:
        run = driver.result()
        assert run.returncode == 0, run.output[-3000:]

    def printed(script, mode):
        out = root / f"{script.stem}.{mode}.out"
        return Printed(out.read_text(encoding="utf-8"),
                       int(Path(f"{out}.exit").read_text(encoding="utf-8")))

    return {script.name: (printed(script, "plain"), printed(script, "trace")) for script in scripts}


def script_part(traced_stdout: str) -> str:
    """What the script printed: everything before graphexplain's ═ rule."""
    rule = RULE.search(traced_stdout)
    assert rule is not None, traced_stdout[-2000:]
    return traced_stdout[:rule.start()]


@pytest.mark.parametrize("example", EXAMPLE_SCRIPTS)
def test_example_prints_the_same_under_trace(side_by_side, example):
    plain, traced = side_by_side[example]
    assert plain.exit_code == 0
    assert traced.exit_code == 0, traced.stdout[-3000:]
    assert plain.stdout, "the example printed nothing to compare"
    assert script_part(traced.stdout) == plain.stdout


def test_final_numbers_are_identical_under_trace(side_by_side):
    plain, traced = side_by_side["full_precision.py"]
    assert plain.exit_code == 0 and traced.exit_code == 0, traced.stdout
    numbers = plain.stdout.splitlines()
    assert len(numbers) == 3 and all(re.search(r"\d\.\d{8,}", line) for line in numbers), numbers
    assert script_part(traced.stdout) == plain.stdout


def test_every_example_is_compared():
    assert len(EXAMPLE_SCRIPTS) >= 9
    assert {AUTOGRAD_MEAN.name, BACKPROP_BY_HAND.name, *EXAMPLE_ARGS} <= set(EXAMPLE_SCRIPTS)


@pytest.mark.parametrize("call, modes", [("first", [1, 1, 1, 1]), ("last", [1, 1, 2, 2])])
def test_the_recorder_steps_off_once_nothing_later_is_explained(call, modes, capsys):
    """Note [the recorder steps off] in capture/provenance.py: under --call
    first it leaves torch's mode stack at the second call, once the first
    call's optimizer watch is disarmed (at step 2 the script's own mode is
    the only one); a mode the script pushed keeps seeing ops (under --call last
    there is no call after which nothing is explained)."""
    run = run_script(str(SCRIPTS / "mode_stack_loop.py"), [], Selection.parse(call))
    assert run.outcome == COMPLETED
    printed = capsys.readouterr().out
    assert [int(line.split()[-1]) for line in printed.splitlines() if line.startswith("step")] == modes
    assert "own mode saw ops: True grad [8.0, 16.0]" in printed
    assert _get_current_function_mode_stack() == [], "the recorder is still active"
    assert len(run.calls) == 4
