"""torch.autograd.grad and backward(inputs=...) explained as torch computes
them (issue 12): only the part of the graph that leads to the call's inputs,
a non-leaf input drawn and named like a leaf, unused inputs said to be
unused, and the calls made later through gradients taken with
create_graph=True (PINN residuals, gradient penalties, Hessian-vector
products), whose nodes are the first call's backward ops.

Each script of tests/scripts runs once through the command line, in this
process (`traced`), with --call all, a JSON file and the DOT source; the
tests then read what it printed and wrote. Runs that change the process (a
broken row, torch's numbers scaled) use `graphexplain_main` as
tests/test_cli.py does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
import torch

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "scripts"
RULE = "═"  # the line graphexplain prints before its report

# script → the kind of each call it makes, and the inputs each call asks for
CALLS: Dict[str, List] = {
    "pinn_residual": [("grad", ["x", "t"]), ("grad", ["x"]),
                      ("backward", ["net.4.bias", "net.2.bias", "net.4.weight", "net.2.weight", "net.0.bias",
                                    "x", "t", "net.0.weight"])],
    "wgan_gp": [("grad", ["interpolated"]),
                ("backward", ["critic.2.bias", "critic.0.bias", "interpolated", "critic.0.weight",
                              "critic.2.weight"])],
    "hessian_vector": [("grad", ["w"]), ("grad", ["w"])],
    "second_derivative_nonleaf": [("grad", ["h"]), ("grad", ["h", "x"]), ("grad", ["h"])],
    "grad_subset_inputs": [("grad", ["x"])],
    "allow_unused": [("grad", ["a", "b"]), ("grad", ["a"])],
    "backward_inputs": [("backward", ["w1"]), ("backward", ["b", "hidden"])],
}
ALL = sorted(CALLS) + ["autograd_grad_edges", "grads_batched"]


@dataclass(frozen=True)
class Traced:
    code: int
    script_output: str  # what the script itself printed
    report: str  # what graphexplain printed after it
    err: str
    result: dict  # the JSON
    dot: Dict[int, str]  # call number → DOT source

    def call(self, index: int) -> dict:
        return self.result["backward_calls"][index - 1]

    def text(self) -> str:
        """The report with its lines joined, for phrases a narrow terminal wraps."""
        return " ".join(self.report.split())


@contextlib.contextmanager
def torch_state_kept():
    """The scripts seed torch's generator; the tests after them see it as it was."""
    rng, dtype = torch.get_rng_state(), torch.get_default_dtype()
    try:
        yield
    finally:
        torch.set_rng_state(rng)
        torch.set_default_dtype(dtype)


def trace(script: str, folder: Path) -> Traced:
    from graphexplain import cli

    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(folder)
    try:
        with torch_state_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["trace", "--call", "all", "--width", "80", "--format", "dot", "--json", "result.json",
                             str(SCRIPTS / f"{script}.py")])
    finally:
        os.chdir(before)
    printed = out.getvalue()
    start = printed.index(RULE) if RULE in printed else len(printed)
    result = json.loads((folder / "result.json").read_text(encoding="utf-8")) if (folder / "result.json").exists() \
        else {}
    dots = {int(m.group(1)): path.read_text(encoding="utf-8")
            for path in (folder / "graphexplain-out").glob("call-*.dot")
            for m in [re.match(r"call-(\d+)\.dot", path.name)]}
    return Traced(code, printed[:start], printed[start:], err.getvalue(), result, dots)


def plain_python(script: str) -> str:
    """What `python script.py` prints."""
    out = io.StringIO()
    with torch_state_kept(), contextlib.redirect_stdout(out):
        runpy.run_path(str(SCRIPTS / f"{script}.py"), run_name="__main__")
    return out.getvalue()


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """``traced(name)``: the script traced once for the whole module."""
    runs: Dict[str, Traced] = {}

    def get(script: str) -> Traced:
        if script not in runs:
            runs[script] = trace(script, tmp_path_factory.mktemp(script))
        return runs[script]

    return get


def node_blocks(report: str, index: int) -> List[str]:
    """The walkthrough's titles for call `index`: "3. y  MulBackward0 — …",
    "leaf x …", "input h, produced by …"."""
    part = report.split(f"Backward call {index}:", 1)[1].split("Backward call ", 1)[0]
    return [line for line in part.splitlines() if re.match(r"^(\d+\. |leaf |input \S+, produced by )", line)]


# --- every call explained, every number verified ------------------------------------


@pytest.mark.parametrize("script", sorted(CALLS))
def test_every_call_is_explained_and_verified(traced, script):
    run = traced(script)
    assert run.code == 0, run.report[-3000:] + run.err
    assert run.result["status"] == "verified"
    calls = run.result["backward_calls"]
    assert [(c["kind"], [leaf["name"] for leaf in c["leaves"]]) for c in calls] == \
        [(kind, inputs) for kind, inputs in CALLS[script]]
    for call in calls:
        assert call["status"] == "verified", call["index"]
        assert {node["status"] for node in call["nodes"]} == {"verified"}, call["index"]
        assert {leaf["status"] for leaf in call["leaves"]} == {"verified"}, call["index"]
        assert all(leaf["derived_grad"] is not None for leaf in call["leaves"])
    assert "not checked" not in run.report and "unchecked" not in run.report
    assert run.report.rstrip().endswith("every node and leaf matches torch.")


@pytest.mark.parametrize("script", ALL)
def test_tracing_does_not_change_what_the_script_prints(traced, script):
    assert traced(script).script_output == plain_python(script)


# --- only what torch differentiates -------------------------------------------------


def reaches_a_leaf(call: dict) -> Dict[int, bool]:
    """For each node, whether the "from" edges lead from it to one of the call's leaves."""
    leaves = {leaf["node"] for leaf in call["leaves"]}
    producers = {node["id"]: [i["from"] for i in node["inputs"] if i["from"] is not None] for node in call["nodes"]}
    reaches: Dict[int, bool] = {}
    for node in reversed(call["nodes"]):  # producers come after their consumers
        reaches[node["id"]] = node["id"] in leaves or any(reaches[p] for p in producers[node["id"]])
    return reaches


@pytest.mark.parametrize("script", sorted(CALLS))
def test_only_what_torch_differentiates_is_shown(traced, script):
    """Every node shown is one torch ran for the call (it has torch's
    numbers) and leads to one of the call's inputs; the walkthrough and the
    picture show exactly those nodes."""
    run = traced(script)
    for call in run.result["backward_calls"]:
        index = call["index"]
        assert all(node["torch_upstream"] is not None for node in call["nodes"]), index
        assert all(reaches_a_leaf(call).values()), index
        assert {leaf["node"] for leaf in call["leaves"]} == \
            {node["id"] for node in call["nodes"] if node["op"] == "AccumulateGrad"}, index
        drawn = re.findall(r"^\s*(n\d+) \[label=", run.dot[index], flags=re.M)
        assert sorted(drawn) == sorted(f"n{node['id']}" for node in call["nodes"]), index
        assert len(node_blocks(run.report, index)) == len(call["nodes"]), index


def test_a_branch_to_other_leaves_is_cut(traced):
    """grad(loss, [x]) through nn.Linear: torch never computes the weights'
    gradients, so their AccumulateGrad and TBackward0 are not shown, and the
    operands they fed receive no gradient (and are no constants either)."""
    [call] = traced("grad_subset_inputs").result["backward_calls"]
    assert [node["op"] for node in call["nodes"]] == \
        ["SumBackward0", "PowBackward0", "TanhBackward0", "AddmmBackward0", "AccumulateGrad"]
    [addmm] = [node for node in call["nodes"] if node["op"] == "AddmmBackward0"]
    assert [(i["input"], i["requires_grad"], i["from"] is not None) for i in addmm["inputs"]] == \
        [("self", False, False), ("mat1", True, True), ("mat2", False, False)]
    assert [step["input"] for step in addmm["chain"]] == ["mat1"]
    assert call["constants"] == []
    report = traced("grad_subset_inputs").report
    assert "TBackward0" not in report and "leaf layer.weight" not in report


def test_the_pinn_derivatives_skip_the_weights(traced):
    call = traced("pinn_residual").call(1)
    assert "TBackward0" not in [node["op"] for node in call["nodes"]]
    assert not any(name.startswith("net.") for name in (node["name"] for node in call["nodes"]))


# --- non-leaf inputs ------------------------------------------------------------------


NON_LEAF = [  # (script, call, input, the op that made it)
    ("second_derivative_nonleaf", 1, "h", "MulBackward0"),
    ("second_derivative_nonleaf", 2, "h", "MulBackward0"),
    ("second_derivative_nonleaf", 3, "h", "MulBackward0"),
    ("backward_inputs", 2, "hidden", "ReluBackward0"),
]


@pytest.mark.parametrize("script, index, name, op", NON_LEAF)
def test_a_non_leaf_input_is_drawn_and_named(traced, script, index, name, op):
    run = traced(script)
    call = run.call(index)
    [leaf] = [leaf for leaf in call["leaves"] if leaf["name"] == name]
    assert leaf["produced_by"].startswith(f"{op}, {name} = ")
    assert call["nodes"][leaf["node"]]["name"] == name
    assert leaf["status"] == "verified" and leaf["derived_grad"] == leaf["torch_grad"] or \
        all(c["status"] == "verified" for c in leaf["checks"])
    assert any(line.startswith(f"input {name}, produced by {op}") for line in node_blocks(run.report, index))
    assert f"{name}\ninput · produced by {op}" in run.dot[index]


def test_the_op_behind_a_non_leaf_input_runs_only_for_another_input(traced):
    """grad(y, [h]) stops at h; grad(y, [h, x]) goes on through h's
    producer to x, and x's whole gradient, through h and beside it, is one formula."""
    run = traced("second_derivative_nonleaf")
    assert "SinBackward0" not in [node["op"] for node in run.call(1)["nodes"]]
    second = run.call(2)
    h = next(node for node in second["nodes"] if node["name"] == "h" and node["op"] == "AccumulateGrad")
    assert second["nodes"][h["inputs"][0]["from"]]["op"] == "MulBackward0"
    x = next(leaf for leaf in second["leaves"] if leaf["name"] == "x")
    assert x["formula"] == "6*h**2*cos(x) + h + 2*x*cos(x)"


def test_backward_inputs_accumulates_only_the_inputs(traced):
    run = traced("backward_inputs")
    assert "w2.grad is None: True b.grad is None: True" in run.script_output
    first, second = run.call(1), run.call(2)
    [w1] = first["leaves"]
    assert w1["grad_before"] is None and w1["grad_after"] == w1["torch_grad"]
    b, hidden = second["leaves"]
    assert hidden["grad_before"] is None and hidden["grad_after"] == hidden["torch_grad"]
    assert not any(node["name"] == "w2" for node in first["nodes"] + second["nodes"])


def test_unused_inputs_are_said_to_be_unused(traced):
    run = traced("allow_unused")
    assert run.call(1)["unused_inputs"] == [
        {"name": "unused", "shape": [2], "returned": "torch returned None for it (allow_unused=True)"}]
    assert run.call(2)["unused_inputs"] == [
        {"name": "unused", "shape": [2], "returned": "torch returned zeros for it (materialize_grads=True)"}]
    for index in (1, 2):
        assert "unused" not in [leaf["name"] for leaf in run.call(index)["leaves"]]
    text = run.text()
    assert "input unused (2,): no output of this call depends on it, so no gradient is computed for it; " \
           "torch returned None for it (allow_unused=True)" in text
    assert "dunused: None" in run.script_output and "dunused: [0.0, 0.0]" in run.script_output


# --- second order: calls through gradients taken with create_graph=True ------------


SECOND_ORDER = [  # (script, call, what the walkthrough says of the gradient it differentiates)
    ("hessian_vector", 2, "g (step 2) is ∂f/∂w, returned by call 1"),
    ("second_derivative_nonleaf", 3, "dy_dh (step 2) is ∂y/∂h, returned by call 1"),
    ("pinn_residual", 2, "u_x (step 1) is ∂u/∂x, returned by call 1"),
    ("pinn_residual", 3, "u_xx (step 8) is ∂u_x/∂x, returned by call 2"),
    ("pinn_residual", 3, "u_t (step 6) is ∂u/∂t, returned by call 1"),
    ("wgan_gp", 2, "gradients (step 21) is ∂score/∂interpolated, returned by call 1"),
]


@pytest.mark.parametrize("script, index, words", SECOND_ORDER)
def test_a_second_order_call_names_the_gradient_it_differentiates(traced, script, index, words):
    run = traced(script)
    part = run.text().split(f"Backward call {index}:", 1)[1].split("Backward call ", 1)[0]
    assert f"{words}: the nodes below it are that call's backward ops" in part
    gradient, call = re.match(r".* is (.*), returned by call (\d+)", words).groups()
    origins = [node.get("origin") or "" for node in run.call(index)["nodes"]]
    assert any(origin.startswith(f"made by call {call}'s backward, for ") and gradient in origin
               for origin in origins)


@pytest.mark.parametrize("script, index, op", [
    ("pinn_residual", 2, "TanhBackwardBackward0"),
    ("pinn_residual", 3, "TanhBackwardBackward0"),
    ("wgan_gp", 2, "LeakyReluBackwardBackward0"),
    ("hessian_vector", 2, "MulBackward0"),
])
def test_the_backward_ops_of_the_first_call_are_derived(traced, script, index, op):
    nodes = [node for node in traced(script).call(index)["nodes"] if node["op"] == op]
    assert nodes and all(node["status"] == "verified" and node["origin"].startswith("made by call")
                         for node in nodes if "origin" in node)
    assert any("origin" in node for node in nodes)


def test_the_vjp_check_allows_for_the_chains_cancellation():
    """u = MLP(x, t) seeded with ones: ∂u/∂x[0] is -0.00075, a sum of terms
    near 0.1, and torch's number differs from J's in its last bits. vᵀ·J is
    checked within the chain's rounding, as the gradient itself is."""
    import graphexplain
    from torch import nn

    with torch_state_kept():
        torch.manual_seed(0)
        torch.set_default_dtype(torch.float64)
        net = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 1))
    x = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64).reshape(4, 1).requires_grad_(True)
    t = torch.linspace(0.0, 0.5, 4, dtype=torch.float64).reshape(4, 1).requires_grad_(True)
    u = net(torch.cat([x, t], dim=1))
    explanation = graphexplain.explain(u, torch.ones_like(u))
    assert explanation.status == "verified"
    [x_checks] = [v.checks for v in explanation.verification.leaves if v.name == "x"]
    assert [c.what for c in x_checks] == ["gradient", "vᵀ·J"]


def test_the_less_common_calls_are_explained_or_said_why_not(traced):
    """A GradientEdge input, an output that is its own input, an input named
    twice, two outputs each with its grad_outputs, a backward through a
    gradient: explained and verified. Inputs no output reaches: listed, with why."""
    run = traced("autograd_grad_edges")
    assert run.code == 0, run.report[-3000:]
    calls = run.result["backward_calls"]
    assert [c["status"] for c in calls] == ["verified"] * 3 + ["not-explained"] * 2 + ["verified"] * 3
    assert [[leaf["name"] for leaf in c["leaves"]] for c in calls if "leaves" in c] == \
        [["h"], ["h"], ["w"], ["x", "w"], ["w"], ["x", "w"]]
    for call in calls[3:5]:
        assert call["capture_problem"] == "no output of the call leads to any of its inputs, so torch computed " \
                                          "no gradient at all"
    assert "not explained: no output of the call leads to any of its inputs" in run.text()
    assert any(node.get("origin") == "∂loss/∂w, returned by call 7" for node in calls[7]["nodes"])


# --- is_grads_batched: not explained, and said why -----------------------------------


def test_batched_gradients_are_listed_and_the_reason_given(traced):
    run = traced("grads_batched")
    assert run.code == 4
    [call] = run.result["backward_calls"]
    assert call["status"] == "not-explained" and call["capture_problem"].startswith("is_grads_batched=True")
    assert "not explained: is_grads_batched=True" in run.text()
    assert "could not capture the call(s) asked for" in " ".join(run.err.split())
    assert "Traceback" not in run.report + run.err


# --- each new check can fail ---------------------------------------------------------------


@pytest.fixture
def wrong_row(monkeypatch):
    """``wrong_row(op, forward)`` replaces a row's forward formula for one test."""
    from graphexplain import rules
    from graphexplain.derive import formula

    def clear_caches():
        for value in vars(formula).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()

    def replace(op: str, forward: str) -> None:
        clear_caches()
        monkeypatch.setitem(rules.TABLE, op, dataclasses.replace(rules.TABLE[op], forward=forward))

    yield replace
    monkeypatch.undo()
    clear_caches()


def test_a_wrong_double_backward_row_is_caught(graphexplain_main, wrong_row):
    wrong_row("TanhBackwardBackward0", "grad_output*(1 - output**3)")
    with torch_state_kept():
        run = graphexplain_main("trace", "--call", "2", "--json", "result.json", SCRIPTS / "pinn_residual.py")
    assert run.returncode == 1, run.stdout[-2000:]
    result = json.loads(Path("result.json").read_text(encoding="utf-8"))
    [call] = [c for c in result["backward_calls"] if c["status"] != "not-explained"]
    assert call["nodes"][call["first_mismatch"]]["op"] == "TanhBackwardBackward0"


def test_a_wrong_gradient_for_a_non_leaf_input_is_caught(graphexplain_main, monkeypatch):
    """torch's gradient for h scaled by 3 at capture: the input's check fails."""
    from graphexplain.capture import snapshot

    real = snapshot.torch_number
    monkeypatch.setattr(snapshot, "torch_number", lambda tensor: None if real(tensor) is None else 3 * real(tensor))
    run = graphexplain_main("trace", "--json", "result.json", SCRIPTS / "second_derivative_nonleaf.py")
    assert run.returncode == 1
    call = json.loads(Path("result.json").read_text(encoding="utf-8"))["backward_calls"][0]
    [h] = call["leaves"]
    assert h["status"] == "mismatch" and h["produced_by"].startswith("MulBackward0")


def test_a_call_over_several_lines_is_titled_whole_and_listed_by_what_it_passes(graphexplain_main):
    run = graphexplain_main("trace", "--format", "dot", "--width", "140", SCRIPTS / "grad_multiline.py")
    assert run.returncode == 0, run.output
    heading = next(line for line in run.stdout.splitlines() if "Backward call 1:" in line)
    # one line, the comment and line breaks gone, and the place still there
    assert "torch.autograd.grad(outputs=y, inputs=x, grad_outputs=weight, create_graph=True)" in heading
    assert "(grad_multiline.py:8)" in heading
    listed = next(line.split() for line in run.stdout.splitlines() if line.split()[:2] == ["2", "dydx[0]"])
    assert listed[2] == "‖x‖=6.928", listed  # ‖∂²y/∂x²‖: 2 in each of 12 elements, as autograd.grad returned
