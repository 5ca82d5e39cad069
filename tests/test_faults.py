"""Injected faults, each of which must be caught: a verdict is only worth
something if it can fail. Each case breaks one thing on purpose (a
Function's hand-written backward, a row of the rule table, a row of a
Jacobian, torch's own numbers) and expects no ✓ for anything the fault
reaches, and a non-zero exit from the command line.

Before graphexplain kept torch's numbers away from the derivation, the
first three cases ended in ✓: the node without a rule passed torch's wrong
gradient on, and every node below compared torch with torch.
"""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest
import torch

import graphexplain
from graphexplain import rules
from graphexplain.verify import verify

from test_verify import off_from

WRONG_BACKWARDS = {
    "scaled": "return grad * 2 * x * (2 / 3)",
    "sign-flipped": "return -grad * 2 * x",
    "one-element": "return grad * 2 * x + (torch.arange(x.numel()) == 0).to(x.dtype)",
}


SQUARE = """
class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        {backward_body}
"""


def square_function(backward_body: str):
    """A Function for x², with the given backward."""
    namespace = {"torch": torch}
    exec(SQUARE.format(backward_body=backward_body), namespace)
    return namespace["Square"]


def several_ops_after(function, x):
    y = function.apply(x)
    return ((y * 3).sin() + y.exp() / 4).sum()


@pytest.mark.parametrize("fault", sorted(WRONG_BACKWARDS))
def test_a_wrong_backward_of_a_function_is_never_verified(fault):
    x = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain(several_ops_after(square_function(WRONG_BACKWARDS[fault]), x))
    assert explanation.status != "verified"
    (leaf,) = explanation.leaves
    assert leaf.status == "unchecked" and leaf.derived_grad is None  # torch's wrong number is not passed off
    (function,) = [step for step in explanation.steps if step.op == "SquareBackward"]
    assert function.status == "no-rule"
    assert "✓ verified" not in str(explanation).split("leaf x")[1]


def test_a_transposed_matrix_in_a_backward_is_never_verified():
    class Product(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a @ b

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            return grad @ b, a.T @ grad  # grad @ b.T is right

    a = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain((Product.apply(a, b).tanh() * 2).sum())
    assert explanation.status != "verified"
    assert {leaf.name: leaf.status for leaf in explanation.leaves} == {"a": "unchecked", "b": "unchecked"}


def test_the_command_line_exits_non_zero_on_a_wrong_function(graphexplain_main, tmp_path):
    script = tmp_path / "wrong.py"
    script.write_text("import torch\n" + SQUARE.format(backward_body=WRONG_BACKWARDS["scaled"]) + textwrap.dedent("""
        x = torch.tensor([0.5, 1.5], requires_grad=True)
        loss = ((Square.apply(x) * 3).sin() + 1).sum()
        loss.backward()
    """))
    run = graphexplain_main("trace", "--format", "dot", script)
    assert run.returncode != 0, run.output
    leaf = run.stdout[run.stdout.index("leaf x"):]
    assert "✓" not in leaf.split("\n\n")[0]
    assert "✓ verified —" not in run.stdout


# --- the rule table itself wrong -------------------------------------------------------------


@pytest.fixture
def perturbed_row(monkeypatch):
    """Replace a row of the rule table for one test."""
    def perturb(op: str, forward: str):
        monkeypatch.setitem(rules.TABLE, op, dataclasses.replace(rules.TABLE[op], forward=forward))
    return perturb


def test_a_perturbed_pointwise_row_is_caught_at_its_node(perturbed_row):
    x = torch.tensor([0.3, 0.8], dtype=torch.float32, requires_grad=True)
    perturbed_row("TanhBackward0", "tanh(self)*1.001")  # its derivative is now off by 0.1 %
    explanation = graphexplain.explain((x.tanh() * 2).sum())
    assert explanation.status == "mismatch"
    assert explanation.first_mismatch().op == "TanhBackward0"


def test_a_wrong_matrix_row_is_never_verified(perturbed_row):
    a = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    perturbed_row("MmBackward0", "self.T*mat2")  # not the op torch ran
    explanation = graphexplain.explain((a @ b).sum())
    assert explanation.status not in ("verified",)
    (mm,) = [step for step in explanation.steps if step.op == "MmBackward0"]
    assert mm.status in ("mismatch", "rule-error")
    assert all(leaf.status != "verified" for leaf in explanation.leaves)


def test_a_wrong_row_of_a_jacobian_is_caught():
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    z = x * x * 2
    v = torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64)
    explanation = graphexplain.explain(z, v)
    leaf = explanation.graph.leaves[0]
    assert explanation.verification.leaves[0].status == "verified"
    wrong = dict(explanation.jacobians)
    wrong[leaf.node] = wrong[leaf.node].copy()
    wrong[leaf.node][1] *= 1.01
    verification = verify(explanation.graph, explanation.derivation, explanation.observed, jacobians=wrong)
    (check,) = [c for c in verification.leaves[0].checks if c.what == "vᵀ·J"]
    assert check.status == "mismatch" and verification.status == "mismatch"


def test_no_jacobian_is_shown_through_a_node_without_a_rule():
    x = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    square = square_function("return grad * 2 * x")
    z = square.apply(x) * 3
    explanation = graphexplain.explain(z, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert explanation.jacobians == {}
    assert explanation.leaves[0].status == "unchecked"
    assert "Jacobian" not in str(explanation)


# --- float32: a small error anywhere is still caught -------------------------------------------


def polynomial_fit():
    """The shape of pytorch/tutorials' polynomial example, written afresh:
    2000 float32 points, y = a + b·P3(c + d·x) with P3 by ops, a loss summed."""
    x = torch.linspace(-np.pi, np.pi, 2000)
    target = torch.sin(x)
    a, b, c, d = (torch.tensor(v, requires_grad=True) for v in (0.0, -1.0, 0.0, 0.3))
    inner = c + d * x
    prediction = a + b * (0.5 * (5 * inner ** 3 - 3 * inner))
    return graphexplain.explain((prediction - target).pow(2).sum())


def test_float32_cancellation_is_no_mismatch():
    """∂loss/∂c sums 2000 terms that cancel: 0 exactly, derived in float64;
    about -2.5e-05 in torch's float32. That is rounding, not a mismatch."""
    explanation = polynomial_fit()
    assert explanation.status == "verified", str(explanation)
    c = explanation.leaf("c")
    assert abs(float(c.derived_grad)) < 1e-9 and float(c.torch_grad) != 0.0


def test_a_relative_error_of_1e_3_at_any_float32_node_is_caught():
    explanation = polynomial_fit()
    starts = [node.id for node in explanation.graph.nodes if not node.is_leaf]
    assert len(starts) >= 8
    for start in starts:
        wrong = off_from(explanation.graph, explanation.observed, start)  # torch's numbers 0.1 % off from there
        verification = verify(explanation.graph, explanation.derivation, wrong)
        assert verification.status == "mismatch", explanation.graph.nodes[start]
        assert verification.first_mismatch == start, (start, verification.first_mismatch)


def test_the_derived_part_of_a_partly_derived_leaf_is_checked():
    """x feeds a Function (no rule) and sin: the part through sin is derived,
    and must equal torch's whole minus torch's part through the Function."""
    x = torch.tensor([0.5, 1.5], dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain((square_function("return grad * 2 * x").apply(x) + x.sin()).sum())
    (leaf,) = explanation.verification.leaves
    assert leaf.status == "unchecked" and [c.status for c in leaf.checks] == ["verified"]
    wrong = dataclasses.replace(explanation.observed, leaves=(dataclasses.replace(
        explanation.observed.leaves[0], grad=explanation.observed.leaves[0].grad * 1.001),))
    verification = verify(explanation.graph, explanation.derivation, wrong)
    assert verification.leaves[0].status == "mismatch" and verification.status == "mismatch"
