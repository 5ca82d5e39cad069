"""Every example of examples/ runs under the tracer with every node and leaf
verified, and its JSON result matches tests/golden/examples/NAME.json.

Regenerate the golden files on purpose only:
    GRAPHEXPLAIN_REGENERATE=1 python -m pytest tests/test_examples.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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
    assert golden.read_text(encoding="utf-8") == text, f"{golden} differs: rerun with GRAPHEXPLAIN_REGENERATE=1 if intended"
