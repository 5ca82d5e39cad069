"""Big tensors held once and checked block by block (issue #10): the lean
paths give the same numbers and the same checks as the whole computations,
and a wrong number is still caught; a long chain
of ops outside every module is drawn as one box."""

import numpy as np
import pytest
import torch

from graphexplain import verify
from graphexplain.capture.snapshot import _same_numbers
from graphexplain.derive.chain import _lean
from graphexplain.model import Graph, Leaf, Node, Operand, Root, Value
from graphexplain.render.collapse import FOLD, View, collapse
from graphexplain.results import MISMATCH, VERIFIED, NodeVerification, Verification


def _whole(monkeypatch, *args, **kwargs):
    monkeypatch.setattr(verify, "BLOCK", 1 << 40)  # never in blocks
    return verify.compare(*args, **kwargs)


@pytest.mark.parametrize("budget", [None, "array", "broadcast"])
def test_a_passing_check_in_blocks_is_the_whole_check(monkeypatch, budget):
    rng = np.random.default_rng(0)
    derived = rng.standard_normal((700, 900))
    torch_number = derived * (1 + 1e-8 * rng.standard_normal(derived.shape))
    budgets = {None: None, "array": 1e-7 * np.abs(derived) + 1e-9,
               "broadcast": np.broadcast_to(np.array(1e-6), derived.shape)}
    blocked = verify.compare("x", derived, torch_number, "float32", budgets[budget])
    whole = _whole(monkeypatch, "x", derived, torch_number, "float32", budgets[budget])
    assert blocked == whole and blocked.status == verify.VERIFIED


@pytest.mark.parametrize("wrong", [(0, 0), (350, 451), (699, 899)])
def test_one_wrong_element_of_a_big_gradient_is_caught(monkeypatch, wrong):
    derived = np.ones((700, 900))
    torch_number = derived.copy()
    torch_number[wrong] = 1.001  # far beyond float32 rounding
    check = verify.compare("x", derived, torch_number, "float32", np.full(derived.shape, 1e-7))
    assert check.status == verify.MISMATCH and check.worst_index == wrong
    assert check == _whole(monkeypatch, "x", derived, torch_number, "float32", np.full(derived.shape, 1e-7))


def test_a_nan_in_a_big_gradient_is_left_to_the_whole_check():
    derived = np.ones((700, 900))
    torch_number = derived.copy()
    torch_number[5, 5] = np.nan
    assert verify.compare("x", derived, torch_number, "float32").status == verify.MISMATCH


@pytest.mark.parametrize("side", ["torch", "derived", "both"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_an_inf_or_nan_in_a_block_is_left_to_the_whole_check(monkeypatch, side, value):
    """The blocks' one test (excess <= 0) must refuse every non-finite error,
    an infinity on both sides included: the whole check decides those."""
    derived = np.ones((700, 900))
    torch_number = derived.copy()
    for array in {"torch": [torch_number], "derived": [derived], "both": [torch_number, derived]}[side]:
        array[350, 451] = value
    assert verify._agreed_in_blocks(derived, torch_number, None, "float32") is None
    check, whole = verify.compare("x", derived, torch_number, "float32"), _whole(monkeypatch, "x", derived,
                                                                                  torch_number, "float32")
    # a nan's Check holds a nan, unequal to itself: the status and the place are what must agree
    assert (check.status, check.worst_index) == (whole.status, whole.worst_index)


def test_lean_holds_a_broadcast_number_once_and_gives_the_same_numbers():
    spread = np.broadcast_to(np.array([[0.25]]), (2000, 3000))
    product = _lean(np.multiply, spread, 1 / 7)
    assert product.strides == (0, 0) and np.array_equal(product, np.broadcast_to(0.25 * (1 / 7), spread.shape))
    local = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(_lean(np.multiply, np.broadcast_to(2.0, (2, 3)), local), 2.0 * local)


def test_a_grad_after_is_shared_only_when_its_numbers_are_the_same_to_the_bit():
    arrived = np.array([1.0, 0.0, 2.0])
    assert _same_numbers(arrived.copy(), arrived) is arrived
    assert _same_numbers(np.array([1.0, -0.0, 2.0]), arrived) is not arrived
    with_nan = np.array([1.0, np.nan])
    assert _same_numbers(with_nan.copy(), with_nan) is not with_nan
    assert _same_numbers(np.array([1.0, 0.0, 3.0]), arrived) is not arrived


# --- a long chain of ops outside every module, folded into one box ----------------------------



def _elementwise_chain(n: int) -> Graph:
    """sum(exp(log(…exp(x)))) of n ops, in backward order: the sum, the ops, x."""
    value = Value.of([1.0])
    nodes = [Node(0, "SumBackward0", "loss", (Operand("self", "y", value, 1),), (value,))]
    for i in range(1, n + 1):
        nodes.append(Node(i, "ExpBackward0" if i % 2 else "LogBackward0", "y",
                          (Operand("self", "y", value, i + 1),), (value,)))
    nodes.append(Node(n + 1, "AccumulateGrad", "x", (Operand("self", "x", value),), (value,)))
    return Graph(tuple(nodes), (Root(0, 0, "loss", value, value.data),), (Leaf(n + 1, "x", value),))


def _statuses(graph, wrong=None):
    nodes = tuple(NodeVerification(n.id, MISMATCH if n.id == wrong else VERIFIED) for n in graph.nodes)
    return Verification(MISMATCH if wrong is not None else VERIFIED, nodes, (), wrong)


def test_a_long_chain_outside_modules_is_one_box_between_its_root_and_its_leaf():
    graph = _elementwise_chain(3000)
    collapsed = collapse(graph, _statuses(graph), View())
    items = collapsed.items()
    assert [item.id for item in items] == ["n0", "b1", "n3001"]
    box = items[1]
    assert box.nodes == tuple(range(1, 3001)) and box.box.ops == 3000 and box.status == VERIFIED
    assert set(collapsed.edges) == {("b1", "n0"), ("n3001", "b1")}


def test_a_mismatch_inside_a_folded_chain_shows_on_its_box():
    graph = _elementwise_chain(500)
    box = collapse(graph, _statuses(graph, wrong=123), View()).items()[1]
    assert box.status == MISMATCH and box.box.first_mismatch == 123


def test_a_chain_shorter_than_fold_stays_node_by_node():
    graph = _elementwise_chain(FOLD - 1)
    collapsed = collapse(graph, _statuses(graph), View(threshold=5))
    assert all(item.box is None for item in collapsed.items())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_big_budget_is_stored_in_its_gradients_dtype_and_still_catches_a_wrong_element(dtype):
    """Note [a big budget in float32] in derive/chain.py: half the memory
    for a float32 gradient, the same verdicts; a float64 one keeps float64."""
    import graphexplain
    from graphexplain.verify import verify as verify_all
    from test_verify import with_node
    torch.manual_seed(0)
    a = torch.randn(600, 600, dtype=dtype, requires_grad=True)
    b = torch.randn(600, 600, dtype=dtype, requires_grad=True)
    explanation = graphexplain.explain((a @ b).tanh().sum())
    assert explanation.status == "verified"
    mm = next(n for n in explanation.graph.nodes if n.op == "MmBackward0")
    budgets = [step.budget for step in explanation.derivation.nodes[mm.id].steps]
    assert {np.asarray(b).dtype for b in budgets} == {np.dtype(np.float32 if dtype == torch.float32 else np.float64)}
    observed = explanation.observed
    downstream = [np.array(d, dtype=np.float64) for d in observed.node(mm.id).downstream]
    downstream[0][123, 456] += 0.05  # ~ a hundred budgets there in float32
    wrong = with_node(observed, mm.id, downstream=tuple(downstream))
    verification = verify_all(explanation.graph, explanation.derivation, wrong)
    assert verification.nodes[mm.id].status == MISMATCH
    assert verification.nodes[mm.id].checks[1].worst_index == (123, 456)


def _mm_budgets(explanation):
    mm = next(n for n in explanation.graph.nodes if n.op == "MmBackward0")
    return [np.asarray(step.budget, dtype=np.float64) for step in explanation.derivation.nodes[mm.id].steps]


def test_a_big_float32_matrix_budget_computed_in_float32_is_the_float64_one(monkeypatch):
    """Note [a big matrix budget in float32] in derive/chain.py: the same
    bound to float32's rounding of it, well inside SAFETY's factor of two."""
    import graphexplain
    from graphexplain.derive import chain
    torch.manual_seed(0)
    a = torch.randn(600, 600, requires_grad=True)
    b = torch.randn(600, 600, requires_grad=True)
    single = _mm_budgets(graphexplain.explain((a @ b).tanh().sum()))
    monkeypatch.setattr(chain, "_budget_in_float32", lambda *_: False)
    double = _mm_budgets(graphexplain.explain((a @ b).tanh().sum()))
    for ours, exact in zip(single, double):
        assert np.all(exact > 0)
        assert np.max(np.abs(ours - exact) / exact) < 1e-4


def test_a_matrix_budget_past_float32s_range_is_computed_in_float64():
    # |G|·|b|ᵀ times 600 rounding steps is 4e39, past float32's 3.4e38; the gradient itself is not
    import graphexplain
    a = torch.full((600, 600), 1e-3, requires_grad=True)
    b = torch.full((600, 600), 1e34, requires_grad=True)
    explanation = graphexplain.explain((a @ b).sum())
    assert explanation.status == "verified"
    assert all(np.isfinite(budget).all() for budget in _mm_budgets(explanation))
