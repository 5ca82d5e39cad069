"""Two sources of false ✗ before: complex tensors (shown without their
imaginary parts, differentiated as if real) and user hooks that change a
gradient (blamed on the rule). Complex values are now shown whole and
derived by torch's convention (Note [complex gradients] in
graphexplain/derive/complex.py); a changed gradient is put down to the hook.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import graphexplain


def test_complex_product_and_abs_verify_by_torchs_convention():
    z = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex128, requires_grad=True)
    w = torch.tensor([0.5 - 1j, 2 + 0.5j], dtype=torch.complex128, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "discards the imaginary part" is a failure
        explanation = graphexplain.explain((z * w).abs().sum())
    assert explanation.status == "verified"
    text = str(explanation)
    assert "leaf z  (2,) [1+2j, 3-1j]" in text
    z_grad = explanation.leaf("z")
    assert z_grad.derived_grad.dtype.kind == "c"
    torch_grad, = torch.autograd.grad((z * w).abs().sum(), z)
    assert torch.allclose(torch.from_numpy(z_grad.derived_grad), torch_grad)


def test_holomorphic_ops_on_a_real_leaf_take_the_real_part():
    w = torch.tensor([0.5 - 1j, 2 + 0.5j], dtype=torch.complex64)
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    explanation = graphexplain.explain((x * w).exp().abs().sum())
    assert explanation.status == "verified"
    assert explanation.leaf("x").derived_grad.dtype.kind == "f"


def test_a_complex_op_without_a_complex_form_is_never_a_mismatch():
    x = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    w = torch.tensor([1 + 1j, 2 - 1j, -1j])
    explanation = graphexplain.explain((x * w).angle().sum())  # angle compares: no complex form
    assert explanation.status in ("no-rule", "not-derived")
    assert explanation.leaves[0].status == "unchecked"


def test_a_hook_that_changes_a_gradient_is_named_not_the_rule():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.register_hook(lambda grad: grad * 2)
    explanation = graphexplain.explain((h ** 2).sum())
    (hooked,) = [step for step in explanation.steps if step.op == "MulBackward0"]
    assert hooked.status == "hook-changed"
    assert "test_complex_and_hooks.py:" in hooked.verification.reason
    assert explanation.status == "hook-changed"
    assert explanation.leaf("x").status == "unchecked"  # below the hook, only torch's numbers
    assert "mismatch" not in {step.status for step in explanation.steps}


def test_a_hook_on_a_leaf_that_changes_its_gradient_is_named():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda grad: grad * 3)
    explanation = graphexplain.explain((x * x).sum())
    assert explanation.leaf("x").status == "hook-changed"
    assert "a user's hook" in str(explanation)


def test_a_hook_that_only_looks_changes_nothing():
    seen = []
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.register_hook(lambda grad: seen.append(grad.clone()))
    explanation = graphexplain.explain((h ** 2).sum())
    assert explanation.status == "verified"
    assert len(seen) == 1


def test_a_hook_under_trace_exits_incomplete(graphexplain_main, tmp_path):
    script = tmp_path / "hooked.py"
    script.write_text(
        "import torch\n"
        "x = torch.tensor([1.0, 2.0], requires_grad=True)\n"
        "h = x * 2\n"
        "h.register_hook(lambda grad: grad.clamp(max=1.0))\n"
        "(h ** 2).sum().backward()\n"
        "print(x.grad.tolist())\n")
    run = graphexplain_main("trace", "--format", "dot", script)
    assert run.returncode == 5, run.output
    assert "[2.0, 2.0]" in run.stdout  # the script's own numbers, hook and all: 2·clamp(2h, max=1)
    assert "hooked.py:4" in " ".join(run.stdout.split())
    assert "MISMATCH" not in run.stdout


def test_a_complex_leaf_traced_verifies_and_warns_nothing(graphexplain_main, tmp_path):
    script = tmp_path / "complex_leaf.py"
    script.write_text(
        "import torch\n"
        "z = torch.tensor([1+2j, 3-1j], requires_grad=True)\n"
        "loss = (z * z.conj()).real.sum()\n"
        "loss.backward()\n"
        "print(z.grad.tolist())\n")
    run = graphexplain_main("trace", "--format", "dot", "--quiet", script)
    assert run.returncode == 0, run.output
    assert "[(2+4j), (6-2j)]" in run.stdout
    assert "Casting complex values" not in run.stderr  # the loop table's norm of a complex .grad
    assert "verified — 1 backward call" in " ".join(run.stdout.split())
