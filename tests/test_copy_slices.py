"""Writes into views, in place (torch's CopySlices; rules/views.py,
derive/copy_slices.py, capture/view_writes.py).

The row's samples are in tests/rule_samples_inplace_views.py (test_rules
runs them); here: what the walkthrough says, what happens without the
recorder, that a wrong torch number at the node is caught, that recording
changes nothing the script computes, module_db's circular pads, and a
hand-written RNN loop traced as a script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphexplain
from graphexplain.derive import copy_slices
from graphexplain.verify import verify

from test_verify import off_from  # noqa: E402  (tests/ is on sys.path under pytest)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
DTYPE = torch.float64


def leaves(*shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, dtype=DTYPE, generator=generator).requires_grad_() for shape in shapes]


def weighted(output: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return (output * torch.randn(output.shape, dtype=DTYPE, generator=generator)).sum()


def writes(explanation):
    return [step for step in explanation.steps if step.op == "CopySlices"]


def column_written(x, v):
    y = x * 1
    y[:, 0] = v
    return y


def test_the_walkthrough_says_what_was_written_where():
    x, v = leaves((3, 4), (3,))
    with graphexplain.recording():
        loss = weighted(column_written(x, v))
    explanation = graphexplain.explain(loss)
    assert explanation.status == "verified"
    (write,) = writes(explanation)
    assert write.derivation.forward_named == "y with y[:, 0] replaced by v"
    assert write.node.params["wrapped"] == "CopyBackwards"
    base, value = write.derivation.steps
    assert np.all(base.downstream[:, 0] == 0)  # a copy: nothing goes back to what it overwrote
    assert np.array_equal(base.downstream[:, 1:], base.upstream[:, 1:])
    assert np.array_equal(value.downstream, base.upstream[:, 0])


def test_the_wrapped_op_is_derived_from_its_own_row():
    x, w = leaves((3, 4), (3, 3))
    with graphexplain.recording():
        y = x * 1
        y[:, 1:].mul_(w)
        loss = weighted(y)
    (write,) = writes(graphexplain.explain(loss))
    assert write.status == "verified"
    assert write.derivation.forward_named == "y with y[:, 1:] replaced by y[:, 1:].mul(w)"
    (local,) = [g for g in write.derivation.local_gradients if g.input == "other"]
    assert local.expr == "self"  # sympy's ∂(self*other)/∂other, self the view before the write
    assert np.allclose(local.value, x.detach()[:, 1:].numpy())


def test_without_the_recorder_the_region_cannot_be_recovered():
    x, v = leaves((3, 4), (3,))
    explanation = graphexplain.explain(weighted(column_written(x, v)))
    (write,) = writes(explanation)
    assert write.status == "no-rule"
    assert write.derivation.note == copy_slices.NOT_RECORDED
    assert write.derivation.note.startswith("the region written cannot be recovered: ")
    assert explanation.status == "no-rule"  # torch's numbers carry on below it; nothing crashes


def test_a_wrong_torch_number_at_the_write_is_caught():
    x, v = leaves((3, 4), (3,))
    with graphexplain.recording():
        loss = weighted(column_written(x, v))
    explanation = graphexplain.explain(loss)
    (write,) = writes(explanation)
    wrong = off_from(explanation.graph, explanation.observed, write.node.id)
    verification = verify(explanation.graph, explanation.derivation, wrong)
    assert verification.status == "mismatch"
    assert verification.first_mismatch == write.node.id


def test_a_wrong_region_is_caught(monkeypatch):
    """The derived side really uses the geometry: shifted by one element,
    the write no longer verifies."""
    x, v = leaves((3, 4), (3,))
    with graphexplain.recording():
        loss = weighted(column_written(x, v))
    real = copy_slices.region
    monkeypatch.setattr(copy_slices, "region", lambda shape, params: (real(shape, params) + 1) % 12)
    explanation = graphexplain.explain(loss)
    assert explanation.status == "mismatch"


def test_recording_changes_nothing_the_script_computes():
    def script(x, v, w):
        y = x * 1
        y[:, 0] = v
        y[1:, 1:].mul_(w)
        y.diagonal().clamp_(-0.3, 0.3)
        p = F.pad(y.reshape(1, 3, 4), (1, 2), mode="circular")
        return p, y

    x, v, w = leaves((3, 4), (3,), (2, 3))
    plain, plain_y = script(x, v, w)
    with graphexplain.recording():
        recorded, recorded_y = script(x, v, w)
    assert torch.equal(plain, recorded) and torch.equal(plain_y, recorded_y)
    assert plain_y._version == recorded_y._version
    assert x._version == 0 and v._version == 0 and w._version == 0
    assert torch.equal(torch.autograd.grad(weighted(plain), (x, v, w))[0],
                       torch.autograd.grad(weighted(recorded), (x, v, w))[0])


@pytest.mark.parametrize("name", ["CircularPad1d", "CircularPad2d", "CircularPad3d"])
def test_module_db_circular_pads_verify(name):
    pytest.importorskip("expecttest")  # torch.testing._internal needs it
    from torch.testing._internal.common_modules import module_db

    (info,) = [info for info in module_db if info.module_cls.__name__ == name]
    inputs = info.module_inputs_func(info, device="cpu", dtype=DTYPE, requires_grad=True, training=True)
    assert inputs
    for module_input in inputs:
        constructor, forward = module_input.constructor_input, module_input.forward_input
        module = info.module_cls(*constructor.args, **constructor.kwargs).to(DTYPE)
        with graphexplain.recording():
            loss = weighted(module(*forward.args, **forward.kwargs))
        explanation = graphexplain.explain(loss)
        assert explanation.status == "verified", [(s.op, s.status, s.derivation.note) for s in explanation.steps]
        assert writes(explanation) and all(step.derivation.derived for step in writes(explanation))


def test_a_hand_written_rnn_loop_traces(graphexplain_main):
    run = graphexplain_main("trace", SCRIPTS / "rnn_loop.py")
    assert run.returncode == 0, run.stderr
    assert "CopySlices" in run.stdout and "h with h[t] replaced by torch.tanh(" in run.stdout
    [explanation] = graphexplain.trace(str(SCRIPTS / "rnn_loop.py"))
    assert explanation.status == "verified"
    assert len(writes(explanation)) == 5 and all(step.status == "verified" for step in writes(explanation))
