"""Verification must be able to fail: for each path (a node's upstream, a
node's downstream, a leaf's gradient, a leaf's ``.grad`` after the call) a
real captured graph gets one deliberately wrong torch number, and verify()
has to catch it where it first appears.

Torch's numbers (`graphexplain.observed`) are perturbed with
`dataclasses.replace`; the derivation is the real one, so only the torch
side is wrong.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import graphexplain
from graphexplain.model import frozen_array
from graphexplain.verify import compare, verify

AUTOGRAD_MEAN = Path(__file__).resolve().parents[1] / "examples" / "autograd_mean.py"
OFF = 1 + 1e-3  # a relative error far above float32's tolerance


def scaled(data, factor=OFF):
    return None if data is None else frozen_array(np.asarray(data) * factor)


def with_node(observed, node_id, **changes):
    nodes = list(observed.nodes)
    nodes[node_id] = replace(nodes[node_id], **changes)
    return replace(observed, nodes=tuple(nodes))


def with_leaf(observed, position, **changes):
    leaves = list(observed.leaves)
    leaves[position] = replace(leaves[position], **changes)
    return replace(observed, leaves=tuple(leaves))


def failing(checks):
    return [check.what for check in checks if check.status == "mismatch"]


def off_from(graph, observed, start, factor=OFF):
    """Torch's numbers as torch would have left them had node `start`'s
    backward been off by `factor`: its downstream, and every number torch
    passed on from there to the nodes and leaves that feed it."""
    def off(data):
        return scaled(data, factor)

    wrong = with_node(observed, start, downstream=tuple(map(off, observed.node(start).downstream)))
    feeding, todo = set(), [start]
    while todo:
        for operand in graph.nodes[todo.pop()].operands:
            if operand.producer is not None and operand.producer not in feeding:
                feeding.add(operand.producer)
                todo.append(operand.producer)
    for node_id in feeding:
        gradients = observed.node(node_id)
        wrong = with_node(wrong, node_id, upstream=tuple(map(off, gradients.upstream)),
                          downstream=tuple(map(off, gradients.downstream)))
    for position, leaf in enumerate(graph.leaves):
        if leaf.node in feeding:
            torch_side = observed.leaf(position)
            wrong = with_leaf(wrong, position, grad=off(torch_side.grad), grad_after=off(torch_side.grad_after))
    return wrong


@pytest.fixture(scope="module")
def traced():
    """z = mean(2 * (x + 2)**2) under z.backward(): a chain of five nodes,
    mean → mul (× 2) → mul (y * y) → add → x, and one leaf that accumulates."""
    [explanation] = graphexplain.trace(str(AUTOGRAD_MEAN))
    assert explanation.status == "verified"
    assert [node.op for node in explanation.graph.nodes] == [
        "MeanBackward0", "MulBackward0", "MulBackward0", "AddBackward0", "AccumulateGrad"]
    return explanation


def test_the_real_graph_verifies(traced):
    verification = verify(traced.graph, traced.derivation, traced.observed)
    assert verification.status == "verified"
    assert verification.first_mismatch is None
    assert all(v.status == "verified" and v.inherited_from is None for v in verification.nodes)
    for node in verification.nodes[:-1]:
        assert {"upstream", "downstream self"} <= {check.what for check in node.checks}
    assert [check.what for check in verification.leaves[0].checks] == ["gradient", ".grad after the call"]


def test_wrong_upstream_is_caught_at_its_node(traced):
    observed = traced.observed
    wrong = with_node(observed, 2, upstream=(scaled(observed.upstream(2)),))
    verification = verify(traced.graph, traced.derivation, wrong)
    assert verification.status == "mismatch"
    assert verification.first_mismatch == 2
    assert [v.status for v in verification.nodes] == ["verified", "verified", "mismatch", "verified", "verified"]
    assert failing(verification.nodes[2].checks) == ["upstream"]
    assert verification.nodes[2].inherited_from is None
    assert verification.leaves[0].status == "verified"


def test_wrong_downstream_is_caught_where_it_starts_and_inherited_after(traced):
    """As if torch's backward of node 1 (the × 2) were off by 0.1 %: every
    gradient torch passed on from there is off by the same factor."""
    graph, start = traced.graph, 1
    wrong = off_from(graph, traced.observed, start)
    verification = verify(graph, traced.derivation, wrong)
    assert verification.status == "mismatch"
    assert verification.first_mismatch == start
    nodes = verification.nodes
    assert nodes[0].status == "verified"
    assert nodes[start].status == "mismatch" and nodes[start].inherited_from is None
    assert failing(nodes[start].checks) == ["downstream self"]
    for later in nodes[start + 1:]:
        assert later.status == "mismatch"
        assert later.inherited_from == start, later
        assert "upstream" in failing(later.checks)
    assert verification.leaves[0].status == "mismatch"


def test_two_independent_mismatches_are_each_traced_to_their_own_start():
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain((a * 2).sum() + (b * 3).sum())
    graph = explanation.graph
    by_name = {node.name: node.id for node in graph.nodes}
    sum_a, mul_a, acc_a = by_name["sum#2"], by_name["mul(a)"], by_name["a"]
    mul_b, acc_b = by_name["mul(b)"], by_name["b"]
    wrong = off_from(graph, off_from(graph, explanation.observed, sum_a), mul_b)  # a's off at its sum, b's at its mul
    verification = verify(graph, explanation.derivation, wrong)
    assert verification.first_mismatch == min(sum_a, mul_b)
    inherited = {node.node: node.inherited_from for node in verification.nodes if node.status == "mismatch"}
    assert inherited == {sum_a: None, mul_a: sum_a, acc_a: sum_a, mul_b: None, acc_b: mul_b}


def test_wrong_leaf_gradient_is_caught(traced):
    graph = traced.graph
    wrong = with_leaf(traced.observed, 0, grad=scaled(traced.observed.leaf(0).grad))
    verification = verify(graph, traced.derivation, wrong)
    assert verification.status == "mismatch"
    assert all(v.status == "verified" for v in verification.nodes)
    assert verification.leaves[0].status == "mismatch"
    assert failing(verification.leaves[0].checks) == ["gradient"]
    assert verification.first_mismatch == graph.leaves[0].node


def test_wrong_grad_after_accumulation_is_caught(traced):
    graph = traced.graph
    wrong = with_leaf(traced.observed, 0, grad_after=scaled(traced.observed.leaf(0).grad_after))
    verification = verify(graph, traced.derivation, wrong)
    assert verification.status == "mismatch"
    assert all(v.status == "verified" for v in verification.nodes)
    assert failing(verification.leaves[0].checks) == [".grad after the call"]
    assert verification.first_mismatch == graph.leaves[0].node


def test_a_mismatch_shows_in_the_explanation(traced):
    graph = traced.graph
    wrong = with_node(traced.observed, 3, downstream=tuple(map(scaled, traced.observed.node(3).downstream)))
    explanation = replace(traced, observed=wrong, verification=verify(graph, traced.derivation, wrong))
    assert explanation.status == "mismatch"
    assert explanation.first_mismatch() is graph.nodes[3]
    assert [step.status for step in explanation.steps][3] == "mismatch"


# --- tolerances ------------------------------------------------------------------


def explained(dtype):
    x = torch.tensor([0.5, 1.5, -2.0], dtype=dtype, requires_grad=True)
    y = x + 2
    loss = (y * y * 2).mean()
    return graphexplain.explain(loss)


def test_tolerance_follows_the_dtype_in_compare():
    derived = np.array([1.0, -2.5, 3.0])
    off_by_a_millionth = derived * (1 + 1e-6)
    assert compare("x", derived, off_by_a_millionth, "float32").status == "verified"
    assert compare("x", derived, off_by_a_millionth, "float64").status == "mismatch"
    assert compare("x", derived, derived * (1 + 1e-3), "float32").status == "mismatch"


@pytest.mark.parametrize("dtype, expected", [(torch.float32, "verified"), (torch.float64, "mismatch")])
def test_tolerance_follows_the_dtype_torch_computed_in(dtype, expected):
    explanation = explained(dtype)
    assert explanation.status == "verified"
    observed = explanation.observed
    wrong = with_leaf(observed, 0, grad=scaled(observed.leaf(0).grad, 1 + 1e-6))
    assert verify(explanation.graph, explanation.derivation, wrong).status == expected


def test_nan_equals_nan():
    assert compare("x", np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), "float64").status == "verified"
    assert compare("x", np.array([np.nan, 1.0]), np.array([0.0, 1.0]), "float64").status == "mismatch"
    assert compare("x", np.array([1.0, 1.0]), np.array([np.nan, 1.0]), "float64").status == "mismatch"


def test_nan_gradients_from_torch_and_sympy_agree():
    x = torch.tensor([-1.0, 4.0], dtype=torch.float64, requires_grad=True)
    root = x.sqrt().sum()  # sqrt(-1) is nan, and so is its gradient
    explanation = graphexplain.explain(root)
    grad = explanation.leaf("x")
    assert np.isnan(grad.torch_grad[0]) and np.isnan(grad.derived_grad[0])
    assert explanation.status == "verified"


def test_shapes_that_differ_never_match():
    check = compare("x", np.ones(3), np.ones(4), "float64")
    assert check.status == "mismatch" and check.max_abs_error == float("inf")


def test_missing_numbers_are_not_checks():
    assert compare("x", None, np.ones(2), "float64") is None
    assert compare("x", np.ones(2), None, "float64") is None


# Note [a chain's budget that has grown] in verify.py: sin(1000·x) in float32
# puts the rounding of 1000·x (about 1e4) into cos(), so the gradient
# arriving at the × 1000 carries a budget of thousands of eps.
@pytest.fixture(scope="module")
def grown():
    torch.manual_seed(0)
    x = (torch.rand(50) * 10 + 5).requires_grad_()
    explanation = graphexplain.explain(torch.sin(x * 1000).sum())
    assert [node.op for node in explanation.graph.nodes] == [
        "SumBackward0", "SinBackward0", "MulBackward0", "AccumulateGrad"]
    return explanation


def test_a_step_below_a_grown_budget_that_agrees_is_not_re_run(grown):
    from graphexplain.derive.chain import derive_node
    verification = verify(grown.graph, grown.derivation, grown.observed, local_step=derive_node)
    assert verification.status == "verified"
    assert [check.what for check in verification.nodes[2].checks] == ["upstream", "downstream self"]


@pytest.mark.parametrize("factor", [1 + 1e-3, 1 + 1e-4])
def test_a_wrong_step_hidden_in_a_grown_budget_is_found_by_its_local_check(grown, factor):
    """Off by 0.1 % or by about 840 eps: both within the chain's budget at
    the × 1000, both over LOOSE eps of its size, so its own step is checked."""
    from graphexplain.derive.chain import derive_node
    wrong = off_from(grown.graph, grown.observed, 2, factor)
    verification = verify(grown.graph, grown.derivation, wrong, local_step=derive_node)
    node = verification.nodes[2]
    assert node.status == "mismatch"
    assert failing(node.checks) == ["from torch's upstream: downstream self"]  # the chain's own check passed
    assert verification.first_mismatch == 2



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_step_after_a_replayed_operand_reads_torchs_result(dtype):
    """Note [torch's result before a replayed operand] in derive/chain.py:
    explained after the fact, tanh's input (a @ b) is replayed exactly in
    float64, while torch's tanh backward reads its own rounded result."""
    torch.manual_seed(0)
    a = torch.randn(100, 600, dtype=dtype, requires_grad=True)
    b = torch.randn(600, 100, dtype=dtype, requires_grad=True)
    explanation = graphexplain.explain((a @ b).tanh().sum())
    tanh = next(node for node in explanation.graph.nodes if node.op == "TanhBackward0")
    assert tanh.operands[0].value.replayed and not tanh.output.replayed
    assert explanation.status == "verified"
    assert "result" in explanation.derivation.nodes[tanh.id].local_gradients[0].expr
