"""Golden files: the walkthrough text (80 columns, no colour), the DOT source
and the JSON result of two examples, compared byte for byte with
tests/golden/. Same script, same bytes: this is what makes them testable.

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

import pytest

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


@pytest.fixture(scope="module")
def reports():
    """Each example traced from the repository root by a relative path, so
    that the source paths in the output are `examples/...` on any machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        return {name: Report.of(run_script(f"examples/{name}.py")) for name in EXAMPLES}


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
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (f"{kind} output of {example} changed; if on purpose, regenerate with "
                                "GRAPHEXPLAIN_REGENERATE=1 and review `git diff tests/golden/`")


def test_golden_files_hold_no_machine_paths():
    for path in sorted(GOLDEN.glob("*.*")):  # this test's files, not the examples/ folder
        text = path.read_text(encoding="utf-8")
        assert str(REPO) not in text, path.name
        assert os.path.expanduser("~") + os.sep not in text or os.path.expanduser("~") == os.sep, path.name


def test_every_golden_file_is_checked():
    expected = {f"{example}.{kind}" for example in EXAMPLES for kind in RENDERERS} | {"README.md"}
    assert {path.name for path in GOLDEN.iterdir() if path.is_file()} == expected
