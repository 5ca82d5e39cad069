"""The JSON that `graphexplain trace --json FILE` writes (docs/json.md): the
fields a consumer may rely on, their types, and the status rules.

The runs call `graphexplain.cli.main` in-process, the function behind the
command, to spare each one the cost of a new interpreter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sympy
from sympy.parsing.sympy_parser import parse_expr

from graphexplain import cli

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SCRIPTS = TESTS / "scripts"

from graphexplain.results import SEVERITY

STATUSES = set(SEVERITY)  # verified, mismatch, no-rule, rule-error, not-derived, hook-changed, unchecked, not-checked
RUNS = {
    "autograd_mean": ([str(REPO / "examples" / "autograd_mean.py")], 0),
    "backprop_by_hand": ([str(REPO / "examples" / "backprop_by_hand.py")], 0),
    "custom_function": ([str(SCRIPTS / "custom_function.py")], 5),
    "three_calls": (["--call", "2", str(SCRIPTS / "three_calls.py")], 0),
    "backward_twice": ([str(SCRIPTS / "backward_twice.py")], 3),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """name → the parsed JSON of `graphexplain trace --json result.json ...`."""
    parsed = {}
    for name, (args, exit_code) in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            code = cli.main(["trace", "--quiet", "--format", "dot", "--json", "result.json", *args])
        assert code == exit_code, name
        parsed[name] = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    return parsed


def explained_calls(result):
    return [call for call in result["backward_calls"] if "nodes" in call]


def parse_sympy(text: str):
    """`text` parsed by sympy, every name a plain symbol (N is a count
    here, not sympy's N function) unless it is called like a function."""
    names = {}
    for name, call in re.findall(r"([A-Za-z_]\w*)(\s*\()?", text):
        if not call:
            names[name] = sympy.Symbol(name, real=True)
        elif not callable(getattr(sympy, name, None)):
            names[name] = sympy.Function(name)
    return parse_expr(text, local_dict=names)


def is_number_tree(value) -> bool:
    """A number, or lists of them nested like a tensor."""
    if isinstance(value, list):
        return all(is_number_tree(item) for item in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- the schema ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["autograd_mean", "backprop_by_hand", "custom_function"])
def test_schema_of_an_explained_run(results, name):
    result = results[name]
    assert result["schema"] == "graphexplain/1"
    assert Path(result["script"]).name == Path(RUNS[name][0][-1]).name
    assert isinstance(result["status"], str)
    assert result["exit_code"] == RUNS[name][1]
    [call] = result["backward_calls"]
    assert call["index"] == 1
    assert call["status"] in STATUSES
    assert isinstance(call["root"]["name"], str) and call["root"]["name"]
    assert call["root"]["shape"] == []

    assert [node["id"] for node in call["nodes"]] == list(range(len(call["nodes"])))
    for node in call["nodes"]:
        assert isinstance(node["op"], str) and isinstance(node["name"], str) and node["name"]
        assert node["status"] in STATUSES
        source = node["source"]
        if source is not None:
            assert Path(source["file"]).name == Path(RUNS[name][0][-1]).name
            assert isinstance(source["line"], int) and source["line"] >= 1
            assert isinstance(source["code"], str) and source["code"]
        assert isinstance(node["local_gradients"], list)
        if node["derivation"] != "derived":  # no rule, a rule that failed, or below them
            assert node["forward"] is None and node["local_gradients"] == []
            assert all(step["downstream"] is None and step["how"] == "unknown" for step in node["chain"])
            continue
        assert isinstance(node["forward"], str)
        for local in node["local_gradients"]:
            assert isinstance(local["input"], str)
            # sympy's own string form: printing the parsed expression gives it back
            assert str(parse_sympy(local["expr"])) == local["expr"]

    for leaf in call["leaves"]:
        assert isinstance(leaf["name"], str) and leaf["name"]
        assert isinstance(leaf["shape"], list)
        assert is_number_tree(leaf["torch_grad"])
        assert leaf["status"] in STATUSES
        if leaf["status"] == "unchecked":  # below a node without a rule: nothing derived to show
            assert leaf["derived_grad"] is None and leaf["reason"] and leaf["broken_at"]
        else:
            assert is_number_tree(leaf["derived_grad"])


@pytest.mark.parametrize("name", ["autograd_mean", "backprop_by_hand", "custom_function"])
def test_run_is_verified_only_when_every_node_and_leaf_is(results, name):
    result = results[name]
    statuses = {item["status"] for call in explained_calls(result) for item in call["nodes"] + call["leaves"]}
    assert statuses <= STATUSES
    assert (result["status"] == "verified") == (statuses == {"verified"})
    for call in explained_calls(result):
        own = {item["status"] for item in call["nodes"] + call["leaves"]}
        assert (call["status"] == "verified") == (own == {"verified"})


def test_custom_function_run_is_no_rule(results):
    result = results["custom_function"]
    assert result["status"] == "no-rule"
    [call] = result["backward_calls"]
    [cube] = [node for node in call["nodes"] if node["op"] == "CubeBackward"]
    assert cube["status"] == "no-rule"
    assert call["leaves"][0]["torch_grad"] == [6.0, 24.0]


# --- the numbers and formulas of the example ------------------------------------------


def test_autograd_mean_local_gradients(results):
    [call] = results["autograd_mean"]["backward_calls"]
    nodes = call["nodes"]
    assert [node["op"] for node in nodes] == [
        "MeanBackward0", "MulBackward0", "MulBackward0", "AddBackward0", "AccumulateGrad"]
    assert [(g["input"], g["expr"]) for g in nodes[0]["local_gradients"]] == [("self", "1/N")]
    for mul in nodes[1:3]:
        pairs = [(g["input"], g["expr"]) for g in mul["local_gradients"]]
        assert pairs and set(pairs) <= {("self", "other"), ("other", "self")}, pairs
    # y * y: both operands are y, so both local gradients are there
    assert [(g["input"], g["expr"]) for g in nodes[2]["local_gradients"]] == [("self", "other"), ("other", "self")]


def test_autograd_mean_leaf(results):
    result = results["autograd_mean"]
    assert result["status"] == "verified"
    [call] = result["backward_calls"]
    assert call["root"]["name"] == "z"
    [x] = call["leaves"]
    assert x["name"] == "x" and x["shape"] == [3]
    assert x["formula"] == "4*(x + 2)/3"
    assert x["derived_grad"] == pytest.approx(x["torch_grad"], rel=1e-6)
    assert x["derived_grad"] == pytest.approx([4 * (v + 2) / 3 for v in x["value"]], rel=1e-6)


def test_backprop_by_hand_numbers(results):
    [call] = results["backprop_by_hand"]["backward_calls"]
    [w] = call["leaves"]
    assert (w["name"], w["derived_grad"], w["torch_grad"], w["formula"]) == ("w", -2.0, -2.0, "2*x*(w*x - y)")
    assert call["source"]["line"] >= 1 and call["call"] == "loss.backward()"


# --- calls listed, not explained -----------------------------------------------------


def test_calls_not_explained_are_listed(results):
    result = results["three_calls"]
    calls = result["backward_calls"]
    assert [call["index"] for call in calls] == [1, 2, 3]
    assert [call["status"] for call in calls] == ["not-explained", "verified", "not-explained"]
    assert [call["root"]["value"] for call in calls] == [2.0, 4.0, 6.0]
    assert "nodes" in calls[1] and "nodes" not in calls[0]
    assert result["status"] == "verified"


def test_a_call_torch_refused_is_recorded(results):
    result = results["backward_twice"]
    assert result["status"] == "script-error" and result["exit_code"] == 3
    first, second = result["backward_calls"]
    assert first["status"] == "verified"
    assert second["status"] == "error"
    assert "backward through the graph a second time" in second["error"]
    assert "retain_graph=True" in second["explanation"]
