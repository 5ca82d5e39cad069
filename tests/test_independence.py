"""The derived side never reads torch's backward numbers (Note [independence
of the derived side] in graphexplain/observed.py): every number torch's
backward produced is scaled by 3 where capture reads it, and every derived
number — upstreams, local gradients, downstreams, budgets, leaf gradients,
Jacobians — must come out exactly as before, while the verdict turns to
mismatch. Run over every example and every rule sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphexplain.capture import snapshot
from graphexplain.capture.runner import run_script
from graphexplain.report import Report

from test_rules import SAMPLES, cases, explain_with_names, weighted_total

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(path.stem for path in (REPO / "examples").glob("*.py"))
ARGS = {"linear_regression": ["{tmp}/plot.png"]}
FACTOR = 3.0


@pytest.fixture
def tripled(monkeypatch):
    """While active, capture reads every torch backward number times 3."""
    original = snapshot.torch_number

    def tripled_number(tensor):
        number = original(tensor)
        return None if number is None else number * FACTOR

    def activate():
        monkeypatch.setattr(snapshot, "torch_number", tripled_number)
    return activate


def derived_numbers(explanation):
    """Every number the derivation produced, in a fixed order."""
    found = []
    for node in explanation.derivation.nodes:
        found += [node.upstream, node.upstream_budget]
        for step in node.steps:
            found += [step.upstream, step.local, step.downstream, step.budget]
        found += [local.value for local in node.local_gradients]
    for leaf in explanation.derivation.leaves:
        found += [leaf.grad, leaf.accumulated, leaf.budget, leaf.accumulated_budget, leaf.partial]
    found += [explanation.jacobians[key] for key in sorted(explanation.jacobians)]
    return found


def assert_same(before, after):
    assert len(before) == len(after)
    for position, (one, other) in enumerate(zip(before, after)):
        if one is None or other is None:
            assert one is None and other is None, position
            continue
        assert np.array_equal(np.asarray(one), np.asarray(other), equal_nan=True), position


def any_nonzero_torch_number(explanation) -> bool:
    return any(side.grad is not None and np.any(np.asarray(side.grad) != 0) for side in explanation.observed.leaves)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_derivation_ignores_torch_numbers(name, tripled, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    args = [a.format(tmp=tmp_path) for a in ARGS.get(name, [])]
    honest = Report.of(run_script(f"examples/{name}.py", args))
    tripled()
    scaled = Report.of(run_script(f"examples/{name}.py", args))
    capsys.readouterr()
    assert sorted(honest.explanations) == sorted(scaled.explanations)
    for index, explanation in honest.explanations.items():
        assert explanation.status == "verified"
        assert_same(derived_numbers(explanation), derived_numbers(scaled.explanations[index]))
        assert scaled.explanations[index].status == "mismatch"
    assert scaled.exit_code == 1


@pytest.mark.parametrize("op, case", cases())
def test_rule_derivation_ignores_torch_numbers(op, case, tripled):
    import torch

    sample = SAMPLES[op][case]
    leaves = sample.make_leaves(torch.Generator().manual_seed(0))
    loss = weighted_total(sample.build(*leaves.values()))
    honest = explain_with_names(loss, leaves)
    tripled()
    scaled = explain_with_names(loss, leaves)
    assert_same(derived_numbers(honest), derived_numbers(scaled))
    if any_nonzero_torch_number(honest):
        assert scaled.status == "mismatch", op
