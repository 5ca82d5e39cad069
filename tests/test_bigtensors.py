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
    monkeypatch.setattr(verify, "_agreed", lambda *args: None)  # never the passing blocks' path
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


@pytest.mark.parametrize("shape", [(), (1,), (7,), (1, 5), (3, 4, 2)])
@pytest.mark.parametrize("budget", [None, "array", "broadcast"])
@pytest.mark.parametrize("kind", ["float32", "float64", "complex64"])
def test_a_small_passing_check_is_the_whole_check(monkeypatch, shape, budget, kind):
    """Small checks take the blocks' path too (Note [a big check, block by
    block]): the same verdict, worst error, place and allowance, to the bit."""
    rng = np.random.default_rng(1)
    derived = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if kind.startswith("complex") else 0)
    torch_number = np.asarray(derived, dtype=kind)  # rounded as torch's own dtype rounds
    budgets = {None: None, "array": 1e-7 * np.abs(derived) + 1e-9, "broadcast": np.broadcast_to(1e-6, shape)}
    dtype = "complex64" if kind.startswith("complex") else kind
    lean = verify.compare("x", derived, torch_number, dtype, budgets[budget])
    assert lean == _whole(monkeypatch, "x", derived, torch_number, dtype, budgets[budget])
    assert lean.status == verify.VERIFIED


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
    assert verify._agreed(derived, torch_number, None, "float32") is None
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


# --- the 2000² peak: copies found by storage, elementwise steps by rows, float32 digests -----------------


def test_a_big_tensor_read_through_two_objects_is_copied_once():
    """Note [the same numbers, read twice] in capture/snapshot.py: torch
    wraps one gradient in two Python objects (a hook's argument, the leaf's
    .grad); the second read finds the first copy by storage."""
    from graphexplain.capture.snapshot import _Copies, _own_dtype, _to_numpy
    copies = _Copies()
    gradient = torch.randn(300, 400)
    for convert, any_dtype in ((_own_dtype, True), (_to_numpy, False)):
        first = copies(gradient, convert, any_dtype)
        again = copies(gradient.detach(), convert, any_dtype)  # another object, the same storage
        assert again is first
        assert np.array_equal(first, gradient.numpy().astype(first.dtype))


def test_a_storage_holding_other_numbers_gets_a_copy_of_its_own():
    """The same place, other numbers (memory a freed gradient left, reused):
    the kept copy is not taken. Without the comparison this test fails."""
    from graphexplain.capture.snapshot import _Copies, _own_dtype
    copies = _Copies()
    gradient = torch.randn(300, 400)
    first = copies(gradient, _own_dtype, True)
    other = gradient.detach()
    with torch.no_grad():
        other[123, 45] += 1.0  # one element, one bit pattern changed
    second = copies(other, _own_dtype, True)
    assert second is not first
    assert second[123, 45] == pytest.approx(first[123, 45] + 1.0)
    assert np.array_equal(second, other.numpy())


def test_a_small_tensor_is_not_looked_up_by_storage():
    from graphexplain.capture.snapshot import _place
    assert _place(torch.randn(10, 10)) is None
    assert _place(torch.randn(300, 400).t()) is None  # not contiguous: a strided read copies anyway
    assert _place(torch.randn(300, 400)) is not None


def test_the_listings_gradient_norm_in_blocks_is_torchs_norm():
    from graphexplain.capture.intercept import _norm
    torch.manual_seed(0)
    big = torch.randn(1000, 700)  # three blocks
    assert _norm(big) == pytest.approx(float(big.double().norm()), rel=1e-12)  # summed in another order
    small = torch.randn(5, 3)
    assert _norm(small) == float(small.double().norm())  # one block: the norm itself
    assert _norm(torch.tensor([float("inf"), 1.0])) == float("inf")


@pytest.mark.parametrize("shapes", [[(900, 700), (900, 700)], [(900, 700), (1, 700)], [(900, 1), (1, 700)],
                                    [(3, 300, 400), (300, 400)], [(900, 700), ()]])
def test_an_elementwise_function_by_rows_is_the_whole_computation_to_the_bit(shapes):
    """Note [an elementwise step's temporaries] in derive/chain.py."""
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(shape) for shape in shapes]

    def function(a, b):
        return np.abs(a) * 3.0 + np.abs(b) * a

    expected = function(*arrays)
    got = _lean(function, *arrays)
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_an_elementwise_budget_in_one_pass_is_the_three_step_one_to_the_bit(monkeypatch):
    from graphexplain.derive import chain
    rng = np.random.default_rng(2)
    shape = (800, 600)
    local, terms = rng.standard_normal(shape), np.abs(rng.standard_normal(shape))
    upstream = np.broadcast_to(np.array(0.25), shape)  # a mean's upstream, one number
    upstream_budget = np.broadcast_to(np.array(3.0), shape)
    one_pass = chain._elementwise_budget(local, terms, 5.0, upstream, upstream_budget, shape)
    magnitude = np.abs(upstream) * terms  # the lines the one pass stands for
    each = chain._plus_scaled(np.abs(local) * upstream_budget, 6.0, magnitude)
    three_steps = chain._plus_scaled(each, chain.budget.summation(1), magnitude)
    assert np.array_equal(one_pass, three_steps)


def test_a_float32_array_is_digested_as_its_float64_copy_would_be():
    """Note [a float32 array digested as it is] in digest.py."""
    from graphexplain.digest import Digest
    rng = np.random.default_rng(3)
    single = rng.standard_normal((700, 900)).astype(np.float32)
    ours, exact = Digest.of(single), Digest.of(single.astype(np.float64))
    assert ours.shape == exact.shape and np.array_equal(ours.head, exact.head) and ours.last == exact.last
    assert ours.head.dtype == np.float64
    assert ours.norm == pytest.approx(exact.norm, rel=1e-13)
    for key in ("min", "max", "max_abs", "dtype", "size", "nonfinite"):
        assert ours.summary[key] == exact.summary[key], key
    assert ours.summary["l2_norm"] == pytest.approx(exact.summary["l2_norm"], rel=1e-13)
    single[5, 5] = np.inf
    assert Digest.of(single).summary["nonfinite"] == 1 and Digest.of(single).norm == float("inf")


def test_a_budget_near_float32s_range_stays_finite_in_eps_units():
    """Note [a budget past float32's range] in derive/chain.py: a ResNet-18
    on a batch of 256 compounded its budget past 1e31; stored in float32 and
    divided by eps it overflowed to inf, which bounds nothing, and right
    gradients at the stem were called wrong. Fails without the float64 fallback."""
    import graphexplain
    from graphexplain.derive.chain import derive
    torch.manual_seed(0)
    a = torch.randn(700, 600, requires_grad=True)
    explanation = graphexplain.explain((a * 3.0).tanh().sum())
    derivation = derive(explanation.graph, root_budgets=[np.array(1e32)])
    budgets = [np.asarray(step.budget) for node in derivation.nodes for step in node.steps
               if step.budget is not None and np.size(step.budget) > 1]
    assert budgets and all(np.isfinite(b).all() for b in budgets)
    assert any(b.dtype == np.float64 for b in budgets)  # kept where float32 cannot hold it in eps units


def test_a_replayed_view_shares_its_operands_numbers_read_only():
    """Note [a replayed view shares its operand's numbers] in derive/replay.py:
    a transpose torch kept no output of is replayed as a view of its operand,
    not a copy, and cannot be written to; a replayed product is its own array."""
    import graphexplain
    from graphexplain.derive import complete
    torch.manual_seed(0)
    x = torch.randn(30, 40, requires_grad=True)
    explanation = graphexplain.explain((x.exp().t() * 3).sum())
    assert explanation.status == "verified"
    nodes = {node.op: node for node in complete(explanation.graph).nodes}
    transposed, product = nodes["TBackward0"], nodes["MulBackward0"]
    assert transposed.output.replayed and product.output.replayed
    view = transposed.output.data
    assert np.shares_memory(view, transposed.operands[0].value.data) and not view.flags.writeable
    assert np.array_equal(view, transposed.operands[0].value.data.T)
    assert not np.shares_memory(product.output.data, transposed.output.data)
    with pytest.raises(ValueError):
        view[0, 0] = 1.0
