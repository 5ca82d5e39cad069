"""The optimizer step after an explained backward call (docs/optimizers.md):
every row of rules/optimizers.py verifies against torch on a small model in
float32 and float64; a subclass with its own step is shown without a rule;
a wrong value after the step is caught; manual updates and cleared
gradients are recognised. (Bit-for-bit transparency of the steps:
tests/scripts/transparency/optimizer_steps.py.)"""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest
import torch

from graphexplain.capture.naming import Names
from graphexplain.capture.optimizers import UpdateWatch
from graphexplain.capture.provenance import SourceFinder
from graphexplain.capture.runner import run_script
from graphexplain.report import Report
from graphexplain.results import MISMATCH, NO_RULE, VERIFIED
from graphexplain.rules.optimizers import NONZERO, ROWS, ZERO
from graphexplain.updates import CLEARED, MANUAL, STEP
from graphexplain.verify_updates import explain_updates

OPTIMIZER_ROWS = [row for row in ROWS if not row.optimizer.startswith("manual:")]
SETTINGS = {  # per optimizer: the hyperparameters a row's `when` does not decide
    "SGD": {"lr": 0.1, "weight_decay": 0.01},
    "Adam": {"lr": 0.05, "weight_decay": 0.01, "maximize": True},
    "AdamW": {"lr": 0.05, "weight_decay": 0.1},
    "RMSprop": {"lr": 0.01, "weight_decay": 0.01},
}
NONZERO_VALUES = {"momentum": 0.9}


def options_for(row):
    options = dict(SETTINGS[row.optimizer])
    for key, wanted in row.when.items():
        if key == "first":
            continue
        options[key] = NONZERO_VALUES[key] if wanted == NONZERO else 0 if wanted == ZERO else bool(wanted)
    if row.optimizer == "SGD" and options.get("momentum") and not options.get("nesterov"):
        options["dampening"] = 0.1
    return options


def watched_steps(optimizer_class, options, dtype, steps=2):
    """Train a tiny model `steps` steps with the watch armed before each step;
    the updates recorded, one list per step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).to(dtype)
    x = torch.randn(5, 3, dtype=dtype)
    optimizer = optimizer_class(model.parameters(), **options)
    names = Names({id(model.weight): "model.weight", id(model.bias): "model.bias"})
    recorded = []
    with UpdateWatch(SourceFinder()) as watch:
        for _ in range(steps):
            loss = (torch.tanh(model(x)) ** 2).sum()
            loss.backward()
            updates = []
            watch.arm(updates, [model.weight, model.bias], names)
            optimizer.step()
            optimizer.zero_grad()
            watch.disarm()
            recorded.append(updates)
    return recorded


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("row", OPTIMIZER_ROWS, ids=[row.name for row in OPTIMIZER_ROWS])
def test_every_row_verifies_against_torch(row, dtype):
    recorded = watched_steps(getattr(torch.optim, row.optimizer), options_for(row), dtype)
    rules = set()
    for updates in recorded:
        assert [u.kind for u in updates] == [STEP, CLEARED]
        for result in explain_updates(updates):
            assert result.status == VERIFIED, [(p.name, p.rule, [c for c in p.checks if c.status != VERIFIED])
                                               for p in result.params]
            rules |= {p.rule for p in result.params}
    assert row.name in rules
    step = explain_updates(recorded[-1])[0]
    checked = {a.name for p in step.params for a in p.assignments if a.checked}
    assert checked == {"p", *row.state}  # the parameter and every buffer torch writes


@pytest.mark.parametrize("row", OPTIMIZER_ROWS, ids=[row.name for row in OPTIMIZER_ROWS])
@pytest.mark.parametrize("what", ["param", "state"])
def test_a_wrong_value_after_the_step_is_caught(row, what):
    """As tests/test_faults.py does for gradients: torch's side changed in one element."""
    updates = watched_steps(getattr(torch.optim, row.optimizer), options_for(row), torch.float32)[-1]
    step = updates[0]
    if what == "state" and not row.state:
        pytest.skip("the row writes no state")
    after = step.after[0]
    if what == "param":
        wrong = after.value.copy()
        wrong.reshape(-1)[1] += 1e-3 * (1 + abs(wrong.reshape(-1)[1]))
        after = dataclasses.replace(after, value=wrong)
    else:
        key = row.state[-1]
        wrong = np.array(after.state[key], copy=True)
        wrong.reshape(-1)[-1] += 1e-3 * (1 + abs(wrong.reshape(-1)[-1]))
        after = dataclasses.replace(after, state={**after.state, key: wrong})
    faulty = dataclasses.replace(step, after=(after, *step.after[1:]))
    result = explain_updates([faulty])[0]
    assert result.status == MISMATCH
    assert result.params[0].status == MISMATCH and result.params[1].status == VERIFIED


def _report(tmp_path, code: str) -> Report:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return Report.of(run_script(str(script)))


def test_a_subclass_with_its_own_step_has_no_rule(tmp_path):
    report = _report(tmp_path, """
        import torch
        class Faulty(torch.optim.SGD):
            @torch.no_grad()
            def step(self, closure=None):
                for group in self.param_groups:
                    for p in group["params"]:
                        p.add_(p.grad, alpha=group["lr"])  # the wrong sign
        w = torch.tensor([0.5, -1.0], requires_grad=True)
        optimizer = Faulty([w], lr=0.1)
        (w ** 2).sum().backward()
        optimizer.step()
        print(w.tolist())
    """)
    (result,) = report.updates[1]
    assert result.status == NO_RULE and result.params[0].status == NO_RULE
    assert np.allclose(result.params[0].before, [0.5, -1.0]) and np.allclose(result.params[0].after, [0.6, -1.2])
    assert report.status == NO_RULE and report.exit_code == 5
    from graphexplain.render.terminal import report_text

    text = report_text(report)
    assert "Faulty is not one of torch's own optimizers" in text and "before [0.5, -1]" in text


def test_manual_update_and_cleared_gradients_are_recognised(tmp_path):
    report = _report(tmp_path, """
        import torch
        w = torch.tensor([0.5, -1.0], requires_grad=True)
        v = torch.tensor(2.0, requires_grad=True)
        lr = 0.1
        loss = (w ** 2).sum() * v
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            v.sub_(v.grad, alpha=lr)
        w.grad.zero_()
        v.grad = None
    """)
    results = report.updates[1]
    kinds = [(r.update.kind, r.update.what) for r in results]
    assert kinds == [(MANUAL, "manual:sub_"), (MANUAL, "manual:sub_"), (CLEARED, "grad.zero_()"),
                     (CLEARED, "grad = None")]
    assert all(r.status == VERIFIED for r in results)
    assert np.allclose(results[0].params[0].assignments[-1].value, [0.3, -0.6])
    assert results[1].update.before[0].hyper["alpha"] == 0.1
    assert report.exit_code == 0


def test_updates_after_later_calls_are_not_recorded(tmp_path):
    report = _report(tmp_path, """
        import torch
        w = torch.tensor([0.5], requires_grad=True)
        optimizer = torch.optim.SGD([w], lr=0.1)
        for _ in range(3):
            (w ** 2).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    """)
    assert list(report.updates) == [1]
    assert [r.update.kind for r in report.updates[1]] == [STEP, CLEARED]
    assert [record.updates for record in report.calls[1:]] == [[], []]


def test_walkthrough_and_json_show_the_update(tmp_path):
    report = _report(tmp_path, """
        import torch
        w = torch.tensor(0.5, requires_grad=True)
        optimizer = torch.optim.SGD([w], lr=0.01)
        loss = (w - 1.5) ** 2
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    """)
    from graphexplain.render.terminal import report_text

    text = report_text(report)
    assert "w ← w - lr*grad = 0.5 - 0.01*(-2) = 0.52  ✓ verified" in text
    assert "gradients cleared by optimizer.zero_grad() (script.py:8): w (set to None)" in text
    data = report.to_json()["backward_calls"][0]["updates"]
    assert [u["kind"] for u in data] == ["step", "cleared"]
    assert data[0]["params"][0]["rule"] == "SGD" and data[0]["params"][0]["after"] == pytest.approx(0.52)
    assert data[0]["params"][0]["checks"][0]["status"] == "verified"


def test_a_torch_optimizer_without_a_row_shows_before_and_after(tmp_path):
    report = _report(tmp_path, """
        import torch
        w = torch.tensor([0.5, -1.0], requires_grad=True)
        optimizer = torch.optim.Adagrad([w], lr=0.1)
        (w ** 2).sum().backward()
        optimizer.step()
    """)
    (result,) = report.updates[1]
    assert result.status == NO_RULE and "torch.optim.Adagrad has no rule" in result.params[0].note
    assert np.allclose(result.params[0].before, [0.5, -1.0]) and not np.allclose(result.params[0].after, [0.5, -1.0])
    assert report.exit_code == 5


def test_a_mismatch_in_an_update_fails_the_run(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import torch
        w = torch.tensor([0.5, -1.0], requires_grad=True)
        optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        (w ** 2).sum().backward()
        optimizer.step()
    """), encoding="utf-8")
    run = run_script(str(script))
    assert Report.of(run).exit_code == 0
    (step,) = run.calls[0].updates
    after = step.after[0]
    wrong = dataclasses.replace(after, state={"momentum_buffer": after.state["momentum_buffer"] * 1.01})
    run.calls[0].updates[0] = dataclasses.replace(step, after=(wrong,))
    report = Report.of(run)
    assert report.status == MISMATCH and report.exit_code == 1
    from graphexplain.render.terminal import report_text

    assert "momentum_buffer ← grad = 1 = [1, -2]  ✗ MISMATCH w momentum_buffer at [0]: derived 1, torch 1.01" in report_text(report, 200)
