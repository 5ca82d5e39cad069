"""Every example of examples/ runs under the tracer with every node and leaf
verified, and its JSON result matches tests/golden/examples/NAME.json: words
and structure exactly, numbers within float32's precision (tests/goldens.py).

Regenerate the golden files on purpose only; the tests then write the files
and are reported as skipped:
    GRAPHEXPLAIN_REGENERATE=1 python -m pytest tests/test_examples.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import goldens  # tests/ is on sys.path under pytest
from graphexplain import cli

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "examples"
EXAMPLES = sorted(path.stem for path in (REPO / "examples").glob("*.py"))
ARGS = {"linear_regression": ["{tmp}/linear_regression.png"]}  # where it saves its plot
REGENERATE = os.environ.get("GRAPHEXPLAIN_REGENERATE") == "1"


def _normalise(data: dict, tmp: Path) -> str:
    """The JSON as text, without this run's temporary folder in it."""
    return json.dumps(data, indent=1, ensure_ascii=False).replace(str(tmp), "<tmp>") + "\n"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_is_verified_and_matches_golden(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    result = tmp_path / "result.json"
    args = [a.format(tmp=tmp_path) for a in ARGS.get(name, [])]
    code = cli.main(["trace", "--quiet", "--no-color", "--format", "dot", "--out", str(tmp_path / "out"),
                     "--json", str(result), f"examples/{name}.py", *args])
    capsys.readouterr()
    data = json.loads(result.read_text(encoding="utf-8"))
    assert code == 0, data["status"]
    assert data["status"] == "verified"
    explained = [call for call in data["backward_calls"] if "nodes" in call]
    assert explained, "the first backward call is explained"
    for call in explained:
        assert {node["status"] for node in call["nodes"]} == {"verified"}
        assert {leaf["status"] for leaf in call["leaves"]} == {"verified"}
    golden = GOLDEN / f"{name}.json"
    text = _normalise(data, tmp_path)
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"regenerated {golden.relative_to(REPO)}")
    assert golden.exists(), f"no golden file {golden}; create it with GRAPHEXPLAIN_REGENERATE=1 (tests/golden/README.md)"
    problem = goldens.difference(golden.read_text(encoding="utf-8"), text, "json")
    if problem is not None:
        pytest.fail(f"the JSON of {name} differs from {golden.relative_to(REPO)} at {problem}\n"
                    "if on purpose, regenerate with GRAPHEXPLAIN_REGENERATE=1 and review `git diff tests/golden/`")


def test_every_example_has_one_golden_file():
    assert sorted(path.stem for path in GOLDEN.iterdir()) == EXAMPLES


def test_golden_files_hold_no_machine_paths():
    home = os.path.expanduser("~")
    for path in sorted(GOLDEN.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        assert str(REPO) not in text, path.name
        assert home + os.sep not in text or home == os.sep, path.name
