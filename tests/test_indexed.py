"""The index-notation family (graphexplain/derive/indexed.py): what sympy
derives, how numbers are laid out along the op's axis, and that a wrong row
is caught. The rows themselves are checked against torch in test_rules.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import graphexplain
from graphexplain.derive import indexed
from graphexplain.rules import TABLE

DTYPE = torch.float64


@pytest.mark.parametrize("op, derived", [
    ("LogsumexpBackward0", "G*exp(self[j])/Sum(exp(self[i]), (i, 0, N - 1))"),
    ("CumsumBackward0", "Sum(G[k], (k, j, N - 1))"),
    ("ProdBackward0", "G*Product(self[i], (i, 0, j - 1))*Product(self[i], (i, j + 1, N - 1))"),
    ("VarBackward0", "2*G*(-mean + self[j])/(N - correction)"),
    ("NansumBackward0", "G*Piecewise((0, isnan(self[j])), (1, True))"),
])
def test_sympy_derives_the_vector_jacobian_product(op, derived):
    assert str(indexed.vector_jacobian_product(TABLE[op], "self")) == derived


def test_a_branch_parameter_picks_the_formula():
    two = indexed.vector_jacobian_product(TABLE["LinalgVectorNormBackward0"], "self", (("ord", 2),))
    assert str(two) == "G*Piecewise((self[j]/sqrt(powers), powers > 0), (0, True))"
    zero = indexed.vector_jacobian_product(TABLE["LinalgVectorNormBackward0"], "self", (("ord", 0),))
    assert zero == 0


def test_layout_arranges_and_restores_rows_and_axis():
    layout = indexed.Layout((2, 3, 4), (0, 2))  # rows: dim 1; axis: dims 0 and 2
    data = np.arange(24.0).reshape(2, 3, 4)
    arranged = layout.arrange(data, (2, 3, 4))
    assert arranged.shape == (3, 8)
    assert np.array_equal(layout.restore(arranged, (2, 3, 4)), data)
    # a tensor broadcast along the rows gets its gradient summed over them
    assert np.array_equal(layout.restore(arranged, (2, 1, 4)), data.sum(axis=1, keepdims=True))


def test_a_wrong_row_is_caught(monkeypatch):
    row = TABLE["SoftmaxBackward0"]
    monkeypatch.setitem(TABLE, row.op, dataclasses.replace(row, forward="exp(2*self[k])/Sum(exp(self[i]), i)"))
    x = torch.randn(2, 3, dtype=DTYPE, requires_grad=True)
    weights = torch.randn(2, 3, dtype=DTYPE)
    assert graphexplain.explain((x.softmax(1) * weights).sum()).status == "mismatch"


def test_overflow_is_evaluated_exactly():
    x = torch.tensor([[1.0, 10000.0, -3.0], [0.5, 2.0, 800.0]], dtype=DTYPE, requires_grad=True)
    weights = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=DTYPE)
    explanation = graphexplain.explain((x.logcumsumexp(1) * weights).sum())
    assert explanation.status == "verified"
    assert np.all(np.isfinite(explanation.leaf("x").derived_grad))


def test_prod_with_a_zero_gets_the_product_of_the_others():
    x = torch.tensor([2.0, 0.0, 3.0, 5.0], dtype=DTYPE, requires_grad=True)
    explanation = graphexplain.explain(x.prod())
    assert explanation.status == "verified"
    assert explanation.leaf("x").derived_grad.tolist() == [0.0, 30.0, 0.0, 0.0]


def test_the_mean_of_var_mean_alone_sends_its_gradient():
    x = torch.randn(3, 4, dtype=DTYPE, requires_grad=True)
    explanation = graphexplain.explain(torch.var_mean(x, 1)[1].sum())
    assert explanation.status == "verified"
    assert np.allclose(explanation.leaf("x").derived_grad, 0.25)


def test_forward_values_come_from_the_formula():
    x = torch.randn(3, 4, dtype=DTYPE, requires_grad=True)
    normalized = torch.nn.functional.layer_norm(x, (4,), eps=0.1)
    explanation = graphexplain.explain((normalized * x).sum())
    (step,) = [s for s in explanation.steps if s.op == "NativeLayerNormBackward0"]
    replayed = indexed.forward_value(TABLE[step.op], step.node)  # eps recovered from the saved rstd
    assert np.allclose(replayed, normalized.detach().numpy())


@pytest.mark.parametrize("op, function", [
    ("SoftmaxBackward0", lambda x: x.softmax(1)),
    ("LogSoftmaxBackward0", lambda x: x.log_softmax(1)),
    ("SafeSoftmaxBackward0", lambda x: torch.ops.aten._safe_softmax(x, 1)),
])
def test_softmax_without_its_input_is_derived_in_its_result(op, function):
    """Attention's scores are often recorded nowhere; softmax keeps its result
    (Note [an operand told by the result])."""
    from graphexplain.derive.chain import derive_node

    x = torch.randn(3, 4, dtype=DTYPE)
    if op == "SafeSoftmaxBackward0":
        x[1] = -float("inf")  # a row of -inf: 0 out, 0 back
    x.requires_grad_(True)
    weights = torch.randn(3, 4, dtype=DTYPE)
    explanation = graphexplain.explain((function(x) * weights).sum())
    (step,) = [s for s in explanation.steps if s.op == op]
    node = step.node
    without_input = dataclasses.replace(node, operands=tuple(
        dataclasses.replace(o, value=dataclasses.replace(o.value, data=None)) for o in node.operands))
    torch_side = explanation.observed.node(node.id)
    derived = derive_node(without_input, torch_side.upstream[0])
    assert derived.status == "derived"
    assert "self" not in derived.local_gradients[0].expr
    assert np.allclose(derived.steps[0].downstream, torch_side.downstream[0])


def test_a_formula_read_once_is_evaluated_on_each_nodes_own_numbers():
    """Note [a formula read once, evaluated per node] (derive/sums.py): the
    reading of a formula is shared by the evaluations of every node, their
    numbers never: two evaluations of one formula on other numbers give
    each its own cumsum, and the second reads the formula from the cache."""
    import sympy as sp

    from graphexplain.derive import sums

    i, j = sp.symbols("i j", integer=True)
    x = sp.IndexedBase("x", real=True)
    formula = sp.Sum(x[i] * x[i], (i, 0, j))
    first = sums.Evaluation({"x": np.array([[1.0, 2.0, 3.0]])}, {}, rows=(1,), count=3, depth=2)
    assert first.result(formula, j).tolist() == [[1.0, 5.0, 14.0]]
    hits = sums._compiled.cache_info().hits
    second = sums.Evaluation({"x": np.array([[3.0, 0.0, -1.0]])}, {}, rows=(1,), count=3, depth=2)
    assert second.result(formula, j).tolist() == [[9.0, 9.0, 10.0]]
    assert sums._compiled.cache_info().hits > hits
    lacking = sums.Evaluation({}, {}, rows=(1,), count=3, depth=2)
    with pytest.raises(sums.CannotEvaluate, match="no value for x"):
        lacking.result(formula, j)
