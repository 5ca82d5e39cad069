"""Golden files: the walkthrough text (80 columns, no colour), the DOT source
and the JSON result of two examples, compared with tests/golden/: words and
structure exactly, numbers within float32's and the printing's precision
(tests/goldens.py), so that the files hold on a machine with another CPU.
Same script, same bytes holds on one machine, and is tested here too.

The files are regenerated only on purpose, when an output format changes:

    GRAPHEXPLAIN_REGENERATE=1 .venv/bin/python -m pytest tests/test_golden.py
    git diff tests/golden/      # read the change before committing it

(see tests/golden/README.md). With GRAPHEXPLAIN_REGENERATE=1 these tests
write the files and are reported as skipped; without it they only compare.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import goldens  # tests/ is on sys.path under pytest
from graphexplain.capture.runner import run_script
from graphexplain.render.dot import to_dot
from graphexplain.render.terminal import to_text
from graphexplain.report import Report

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
GOLDEN = TESTS / "golden"
REGENERATE = os.environ.get("GRAPHEXPLAIN_REGENERATE") == "1"

EXAMPLES = ["autograd_mean", "backprop_by_hand"]
RENDERERS = {
    "txt": lambda report: to_text(report.explanations[1], 80),
    "dot": lambda report: to_dot(report.explanations[1]),
    # as `graphexplain trace --json` writes it
    "json": lambda report: json.dumps(report.to_json(), indent=2, sort_keys=False, ensure_ascii=False) + "\n",
}


def _trace(name: str) -> Report:
    """An example traced from the repository root by a relative path, so that
    the source paths in the output are `examples/...` on any machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        return Report.of(run_script(f"examples/{name}.py"))


@pytest.fixture(scope="module")
def reports():
    return {name: _trace(name) for name in EXAMPLES}


@pytest.mark.parametrize("kind", sorted(RENDERERS))
@pytest.mark.parametrize("example", EXAMPLES)
def test_output_matches_golden_file(reports, example, kind):
    report = reports[example]
    assert report.status == "verified"
    actual = RENDERERS[kind](report)
    path = GOLDEN / f"{example}.{kind}"
    if REGENERATE:
        path.write_text(actual, encoding="utf-8")
        pytest.skip(f"regenerated {path.relative_to(REPO)}")
    assert path.exists(), f"no golden file {path}; create it with GRAPHEXPLAIN_REGENERATE=1 (tests/golden/README.md)"
    problem = goldens.difference(path.read_text(encoding="utf-8"), actual, kind)
    if problem is not None:
        pytest.fail(f"{kind} output of {example} differs from {path.name} at {problem}\n"
                    "if on purpose, regenerate with GRAPHEXPLAIN_REGENERATE=1 and review `git diff tests/golden/`")


def test_same_script_gives_the_same_bytes(reports):
    """The tolerance is for other machines: on this one a second run is identical."""
    again = _trace(EXAMPLES[0])
    for kind, render in RENDERERS.items():
        assert render(again) == render(reports[EXAMPLES[0]]), kind


def test_golden_files_hold_no_machine_paths():
    for path in sorted(GOLDEN.glob("*.*")):  # this test's files, not the examples/ folder
        text = path.read_text(encoding="utf-8")
        assert str(REPO) not in text, path.name
        assert os.path.expanduser("~") + os.sep not in text or os.path.expanduser("~") == os.sep, path.name


def test_every_golden_file_is_checked():
    expected = {f"{example}.{kind}" for example in EXAMPLES for kind in RENDERERS} | {"README.md"}
    assert {path.name for path in GOLDEN.iterdir() if path.is_file()} == expected


# --- the comparison passes what another CPU changes, and fails on the rest -----------


def _golden_json():
    return sorted(GOLDEN.rglob("*.json"))


def _floats_one_ulp_up(data):
    """Every float one float32 ulp towards +inf; ints (shapes, ids, lines) as they are."""
    if isinstance(data, dict):
        return {key: _floats_one_ulp_up(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_floats_one_ulp_up(value) for value in data]
    if type(data) is float:
        return float(np.nextafter(np.float32(data), np.float32(np.inf)))
    return data


def _largest_gradient(data, where=()):
    """The place of the largest float in the first leaf gradient (`derived_grad`)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key.endswith("_grad") and value is not None and not isinstance(value, (str, bool, int)):
                floats = list(_floats(value, where + (key,)))
                if floats:
                    return max(floats, key=lambda place: abs(place[1]))[0]
            found = _largest_gradient(value, where + (key,))
            if found:
                return found
    if isinstance(data, list):
        for index, value in enumerate(data):
            found = _largest_gradient(value, where + (index,))
            if found:
                return found
    return None


def _floats(data, where):
    if type(data) is float:
        yield where, data
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _floats(value, where + (index,))


def _scaled(data, where, factor):
    """A copy of `data` with the number at `where` multiplied by `factor`."""
    if not where:
        return data * factor
    copy = list(data) if isinstance(data, list) else dict(data)
    copy[where[0]] = _scaled(data[where[0]], where[1:], factor)
    return copy


@pytest.mark.parametrize("path", _golden_json(), ids=lambda path: str(path.relative_to(GOLDEN)))
def test_json_comparison_passes_one_float32_ulp_and_fails_a_wrong_gradient(path):
    golden = json.loads(path.read_text(encoding="utf-8"))
    assert goldens.json_difference(golden, _floats_one_ulp_up(golden)) is None
    gradient = _largest_gradient(golden)
    assert gradient, f"{path.name} holds no gradient to change"
    problem = goldens.json_difference(golden, _scaled(golden, gradient, 1 + 1e-3))
    assert problem is not None, f"a gradient off by 1e-3 passed: {gradient}"
    assert problem.startswith(goldens._name(gradient) + ":"), problem


def test_json_comparison_fails_on_structure_and_words():
    golden = json.loads((GOLDEN / "autograd_mean.json").read_text(encoding="utf-8"))
    changed = json.loads((GOLDEN / "autograd_mean.json").read_text(encoding="utf-8"))
    changed["backward_calls"][0]["nodes"][0]["status"] = "mismatch"
    changed["backward_calls"][0]["nodes"][1]["shape"] = [4]
    problem = goldens.json_difference(golden, changed)
    assert problem.startswith('backward_calls[0].nodes[0].status: golden "verified", actual "mismatch"'), problem
    assert "2 places differ" in problem
    del changed["backward_calls"][0]["root"]
    assert "keys only in golden ['root']" in goldens.json_difference(golden, changed)


def _a_printed_number(text):
    """The first number printed with all of its 4 significant digits (as
    formatting.number prints a value), whose last digit is not 9."""
    for match in goldens.NUMBER.finditer(text):
        mantissa = match.group().lstrip("-").split("e")[0]
        if len(mantissa.replace(".", "").lstrip("0")) == 4 and mantissa[-1] != "9":
            return match
    raise AssertionError("no printed number to change")


# backprop_by_hand's numbers are whole (-2, 1): nothing to round there.
@pytest.mark.parametrize("name", ["autograd_mean.txt", "autograd_mean.dot"])
def test_text_comparison_passes_the_last_digit_and_fails_one_percent(name):
    golden = (GOLDEN / name).read_text(encoding="utf-8")
    number = _a_printed_number(golden)
    last_digit_up = number.group()[:-1] + str(int(number.group()[-1]) + 1)
    one_percent_off = f"{float(number.group()) * 1.01:.4g}"
    assert goldens.text_difference(golden, golden[:number.start()] + last_digit_up + golden[number.end():]) is None
    problem = goldens.text_difference(golden, golden[:number.start()] + one_percent_off + golden[number.end():])
    assert problem is not None, f"{number.group()} → {one_percent_off} passed"
    line = golden.count("\n", 0, number.start()) + 1
    assert problem.startswith(f"line {line}, column "), problem


def test_text_comparison_passes_rounding_and_fails_on_words():
    assert goldens.text_difference("grad [0.0001, -0]", "grad [1e-04, 0]") is None
    assert goldens.text_difference("value [2.496, 0, 2.088]", "value [2.496, 1.2e-09, 2.088]") is None
    assert goldens.text_difference("(autograd_mean.py:20)", "(autograd_mean.py:21)") is not None
    assert goldens.text_difference("n0 -> n1", "n0 -> n2") is not None
    assert goldens.text_difference("✓ verified", "✗ mismatch").startswith("line 1, column 1:")
