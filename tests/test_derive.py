"""The derivation stage on its own: sympy's local gradients, the central
broadcast and routing mechanisms, the chain rule on hand-built graphs, the
composed leaf formula, and a deliberately wrong row being caught."""

from __future__ import annotations

import ast
import inspect
import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

import graphexplain
import graphexplain.rules
from graphexplain.derive import arguments, broadcast, derive, formula, indexed, routing
from graphexplain.model import Graph, Leaf, Node, Operand, Root, Value
from graphexplain.rules import TABLE, Matrix, Routing
from graphexplain.rules.fft import Transform
from graphexplain.derive import complex as complex_
from graphexplain.rules.kinds import IndexFormula
from graphexplain.rules.kinds import Composite, Convolution
from graphexplain.derive import convolution

# --- local gradients, as sympy derives them from the forward formulas -------------


@pytest.mark.parametrize("op, operand, mode, expected", [
    ("MulBackward0", "self", "", "other"),
    ("MulBackward0", "other", "", "self"),
    ("DivBackward0", "other", "", "-self/other**2"),
    ("PowBackward0", "self", "", "exponent*self**(exponent - 1)"),
    ("PowBackward1", "exponent", "", "self**exponent*log(self)"),
    ("TanhBackward0", "self", "", "1 - tanh(self)**2"),
    ("AbsBackward0", "self", "", "sign(self)"),
    ("ReluBackward0", "self", "", "Piecewise((1, self > 0), (0, True))"),
    ("SumBackward0", "self", "sum", "1"),
    ("MeanBackward0", "self", "mean", "1/N"),
    ("MseLossBackward0", "self", "mean", "2*(self - target)/N"),
    ("MseLossBackward0", "self", "none", "2*(self - target)"),
    ("ViewBackward0", "self", "", "KroneckerDelta(j, pi(k))"),
])
def test_local_gradient(op, operand, mode, expected):
    assert str(formula.local_gradient(TABLE[op], operand, mode)) == expected


@pytest.mark.parametrize("op, operand, shapes, expected", [
    ("MmBackward0", "self", ((3, 2), (2, 4)), "G*mat2.T"),
    ("MmBackward0", "mat2", ((3, 2), (2, 4)), "self.T*G"),
    ("MvBackward0", "vec", ((2, 3), (3, 1)), "self.T*G"),
    ("AddmmBackward0", "self", ((3, 4), (3, 2), (2, 4)), "beta*G"),
])
def test_vector_jacobian_product(op, operand, shapes, expected):
    expr, _ = formula.vector_jacobian_product(TABLE[op], operand, shapes)
    assert str(expr) == expected


def test_kinks_take_torch_convention():
    """relu and abs are differentiated at 0 to 0, as torch does."""
    for op in ("ReluBackward0", "AbsBackward0"):
        gradient = formula.local_gradient(TABLE[op], "self")
        at = formula.evaluate(gradient, {"self": np.array([-1.0, 0.0, 1.0])})
        assert at[1] == 0.0


def test_a_piecewise_gradient_is_rewritten_in_the_result():
    """Note [a piece told by the result]: the in-place activations keep only
    their result; sympy solves each piece of the forward for the input."""
    in_result = {op: str(formula.local_gradient_in_result(TABLE[op], "self", "self"))
                 for op in ("LeakyReluBackward1", "CeluBackward1", "ReluBackward0", "HardtanhBackward0")}
    assert in_result == {
        "LeakyReluBackward1": "Piecewise((1, result > 0), (negative_slope, True))",
        "CeluBackward1": "Piecewise((1, result > 0), ((alpha + result)/alpha, True))",
        "ReluBackward0": "Piecewise((1, result > 0), (0, True))",
        "HardtanhBackward0": "Piecewise((1, (max_val > result) & (min_val < result)), (0, True))",
    }
    # gelu's input appears more than once: sympy is not asked to search for it
    assert formula.local_gradient_in_result(TABLE["GeluBackward0"], "self", "self") is None


@pytest.mark.parametrize("op, values, told", [
    # a positive slope: every result has one input, on the side its sign says (0: the negative side)
    ("LeakyReluBackward1", {"negative_slope": 0.1, "result": [-0.2, -0.0, 0.0, 1e-20, -1e-20, 0.5]}, [True] * 6),
    # a negative slope sends x < 0 and -x/slope to one positive result; torch refuses this backward too
    ("LeakyReluBackward1", {"negative_slope": -0.1, "result": [-0.2, 0.0, 0.5]}, [False, True, False]),
    # a slope of 0: a result of 0 tells the negative piece but no input on it (0/0), so the
    # node keeps torch's numbers
    ("LeakyReluBackward1", {"negative_slope": 0.0, "result": [0.0, 0.5]}, [False, True]),
    # elu's negative side ends at -alpha: a saturated result is still told
    ("EluBackward1", {"alpha": 0.7, "scale": 1.0, "input_scale": 1.0, "result": [-0.7, -0.5, -1e-20, 0.0, 1e-20]},
     [True] * 5),
    # a negative alpha: results between 0 and -alpha come from both sides
    ("EluBackward1", {"alpha": -0.5, "scale": 1.0, "input_scale": 1.0, "result": [0.3, 1.0]}, [False, True]),
    # clamp's bound is the result of the bound itself (gradient 1) and of every input below (0)
    ("ClampMinBackward0", {"min": -0.5, "result": [-0.5, 0.0]}, [False, True]),
    ("HardtanhBackward0", {"min_val": -1.0, "max_val": 1.0, "result": [-1.0, -0.5, 1.0]}, [True] * 3),
])
def test_a_result_tells_its_input_only_where_one_piece_makes_it(op, values, told):
    numbers = {name: np.asarray(value, dtype=np.float64) for name, value in values.items()}
    assert formula.told_by_result(TABLE[op], "self", numbers).tolist() == told


def test_a_formula_that_overflows_in_float64_is_evaluated_exactly():
    """The sigmoid's derivative exp(x)/(exp(x) + 1)**2 is inf/inf at x = 800
    in float64; its value, and torch's, is 0."""
    x = torch.tensor([-800.0, -30.0, 0.0, 30.0, 800.0], dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain(torch.sigmoid(x).sum())
    assert explanation.status == "verified"
    assert np.all(np.isfinite(explanation.leaf("x").derived_grad))


def vocabulary_used(rule) -> set:
    """The words a row's forward formula uses."""
    if isinstance(rule, Routing):
        call = ast.parse(rule.forward, mode="eval").body
        assert call.func.id in routing.FUNCTIONS, rule.op
        return {argument.id for argument in call.args}
    if isinstance(rule, Matrix):  # square operands; the result a matrix, else a vector (addmv)
        for result_shape in ((2, 2), (2,)):
            shapes = formula.matrix_shapes(rule, ((2, 2),) * len(rule.inputs), result_shape)
            try:
                return {str(atom) for atom in formula.matrix_forward(rule, shapes).free_symbols}
            except ValueError:  # sympy's ShapeError
                continue
    if isinstance(rule, IndexFormula):
        return indexed.vocabulary(rule)
    if isinstance(rule, Convolution):
        return convolution.vocabulary(rule)
    if isinstance(rule, Transform):
        return complex_.vocabulary(rule)
    if isinstance(rule, Composite):  # the written-out forward's arguments (capture/composites.py)
        from graphexplain.capture.composites import FORWARDS
        return set(inspect.signature(FORWARDS[rule.forward]).parameters)
    return {str(symbol) for symbol in formula.forward(rule).free_symbols}


@pytest.mark.parametrize("op", list(TABLE))
def test_a_row_states_a_forward_formula_in_its_vocabulary(op):
    """Only the row's operands, saved arguments, result and N: no `grad`,
    no upstream, so no hand-written derivative can hide in a row."""
    rule = TABLE[op]
    vocabulary = set(rule.inputs + rule.params) | {name for name, _ in rule.defaults}
    vocabulary |= {formula.RESULT, formula.COUNT, "result_shape"} | set(formula.CONSTANTS)
    assert vocabulary_used(rule) <= vocabulary


# --- saved arguments -------------------------------------------------------------------


def test_signed_reads_wrapped_ints_as_negative():
    assert arguments.signed(2 ** 64 - 1) == -1
    assert arguments.signed((2 ** 64 - 3, 1)) == (-3, 1)
    assert arguments.signed(2 ** 63 - 1) == 2 ** 63 - 1  # slice's "to the end" stays
    assert arguments.signed(True) is True


def test_the_walkthrough_shows_negative_arguments_as_written():
    x = torch.ones(3, 4, dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain(x[:, -1].sum())
    (select,) = [step for step in explanation.steps if step.op == "SelectBackward0"]
    assert select.derivation.forward_named == "select(x, 1, -1)"


# --- broadcasting and spreading back --------------------------------------------------


def test_sum_to_sums_over_broadcast_dims():
    gradient = np.arange(12.0).reshape(3, 4)
    assert broadcast.sum_to(gradient, (4,)).tolist() == [12.0, 15.0, 18.0, 21.0]
    assert broadcast.sum_to(gradient, (3, 1)).tolist() == [[6.0], [22.0], [38.0]]
    assert broadcast.sum_to(gradient, ()).tolist() == 66.0
    assert np.array_equal(broadcast.sum_to(gradient, (3, 4)), gradient)


def test_describe_sum_names_the_dims():
    assert broadcast.describe_sum((5, 2), (2,)) == "summed over broadcast dim 0: (5, 2) → (2,)"
    assert broadcast.describe_sum((2,), (2,)) is None


def test_spread_gives_each_element_its_outputs_gradient():
    upstream = np.array([1.0, 2.0])
    assert broadcast.spread(upstream, (2, 3), (1,), keepdim=False).tolist() == [[1.0] * 3, [2.0] * 3]
    assert broadcast.spread(upstream[:, None], (2, 3), (1,), keepdim=True).tolist() == [[1.0] * 3, [2.0] * 3]
    assert broadcast.spread(upstream, (3, 2), (0,), keepdim=False).tolist() == [[1.0, 2.0]] * 3
    assert broadcast.spread(np.array(5.0), (2, 2), (0, 1), keepdim=False).tolist() == [[5.0, 5.0]] * 2


def test_reduced_dims_takes_negative_and_empty_dims():
    assert broadcast.reduced_dims((-1,), 3) == (2,)
    assert broadcast.reduced_dims((0, -1), 3) == (0, 2)
    assert broadcast.reduced_dims((), 2) == (0, 1)
    assert broadcast.reduced_dims(None, 2) == (0, 1)


# --- routing -----------------------------------------------------------------------------


def test_route_back_is_the_adjoint_of_the_map():
    transposed = routing.index_map("transpose(self)", (2, 3), {})
    upstream = np.arange(6.0).reshape(3, 2)
    assert np.array_equal(routing.route_back(transposed, upstream, (2, 3)), upstream.T)


def test_route_back_adds_up_copies():
    expanded = routing.index_map("broadcast_to(self, result_shape)", (3, 1), {"result_shape": (2, 3, 4)})
    assert routing.route_back(expanded, np.ones((2, 3, 4)), (3, 1)).tolist() == [[8.0], [8.0], [8.0]]


@pytest.mark.parametrize("forward, shape, saved, expected", [
    ("slice(self, dim, start, end, step)", (5,), dict(dim=0, start=-3, end=-1, step=1), [2, 3]),
    ("slice(self, dim, start, end, step)", (5,), dict(dim=0, start=1, end=2 ** 63 - 1, step=2), [1, 3]),
    ("slice(self, dim, start, end, step)", (5,), dict(dim=0, start=-100, end=2, step=1), [0, 1]),
    ("select(self, dim, index)", (2, 3), dict(dim=-1, index=-1), [2, 5]),
    ("expand_dims(self, dim)", (3,), dict(dim=-1), [[0], [1], [2]]),
    ("swapaxes(self, dim0, dim1)", (1, 3), dict(dim0=0, dim1=-1), [[0], [1], [2]]),
])
def test_index_map_takes_torch_arguments(forward, shape, saved, expected):
    assert routing.index_map(forward, shape, saved).tolist() == expected


# --- matrices ---------------------------------------------------------------------------


def test_as_matrix_and_stacks():
    assert formula.as_matrix(np.ones((2, 3, 4)), (3, 4), (2,)).shape == (2, 3, 4)
    assert formula.as_matrix(np.arange(3.0), (2, 3)).tolist() == [[0, 1, 2], [0, 1, 2]]
    stacked = formula.over_stack(lambda a, b: a @ b, (2,), [np.ones((2, 3, 4)), np.ones((4, 5))])
    assert stacked.shape == (2, 3, 5) and np.all(stacked == 4.0)


def test_matrix_derivatives_sympy_gets_wrong_alone():
    """sympy's matrix calculus gives 0 for a determinant and for a sum of
    traces, and raises through a masked inverse; the rows still derive them
    (Notes in derive/formula.py)."""
    det, _ = formula.vector_jacobian_product(TABLE["LinalgDetBackward0"], "A", ((3, 3),))
    assert str(det) == "G*cofactor(A)"
    choices = (("upper", True), ("transpose", False), ("unitriangular", False))
    clone, _ = formula.vector_jacobian_product(TABLE["TriangularSolveBackward0"], "A", ((3, 2), (3, 3)), choices)
    assert "G_cloned_coefficient" in str(clone) and "upper_triangle" in str(clone)


def test_a_matrix_row_whose_formula_is_not_torchs_result_is_left_to_torch():
    """torch.linalg.pinv(A, hermitian=True) reads one triangle of A: for a
    non-symmetric A its result is not pinv(A), so the row does not claim it."""
    a = (torch.arange(9.0, dtype=torch.float64).reshape(3, 3) + 4 * torch.eye(3)).requires_grad_()
    explanation = graphexplain.explain(torch.linalg.pinv(a, hermitian=True).sum())
    (pinv,) = [step for step in explanation.steps if step.op == "LinalgPinvBackward0"]
    assert pinv.status == "rule-error" and explanation.status == "rule-error"
    assert "torch's result is not" in pinv.derivation.note


# --- the chain rule on hand-built graphs ----------------------------------------------


def one_op_graph(op: str, operands: Sequence[Tuple[str, np.ndarray, bool]], output,
                 params: Optional[Dict] = None, upstream=None) -> Graph:
    """Node 0 is `op`; each operand (name, value, requires_grad) that
    requires grad is fed by a leaf node of its own, named after it."""
    output = Value.of(output)
    nodes, leaves, built = [], [], []
    for name, value, requires_grad in operands:
        value = Value.of(value)
        producer = None
        if requires_grad:
            producer = 1 + len(leaves)
            nodes.append(Node(producer, "AccumulateGrad", name, (Operand("self", name, value),), (value,)))
            leaves.append(Leaf(producer, name, value))
        built.append(Operand(name, name, value, producer, 0, requires_grad))
    root_node = Node(0, op, "result", tuple(built), (output,), params or {})
    seed = np.ones(output.shape) if upstream is None else np.asarray(upstream, dtype=np.float64)
    root = Root(0, 0, "result", output, seed)
    return Graph((root_node, *nodes), (root,), tuple(leaves))


def leaf_grads(graph: Graph) -> Dict[str, np.ndarray]:
    return {leaf.name: leaf.grad for leaf in derive(graph).leaves}


def test_pointwise_node_sums_back_over_broadcast():
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([[1.0, 10.0]])
    graph = one_op_graph("MulBackward0", [("self", x, True), ("other", y, True)], x * y)
    grads = leaf_grads(graph)
    assert grads["self"].tolist() == [[11.0], [11.0], [11.0]]
    assert grads["other"].tolist() == [[6.0, 6.0]]


def test_reduction_reads_a_wrapped_negative_dim():
    x = np.arange(24.0).reshape(2, 3, 4)
    upstream = np.arange(6.0).reshape(2, 3)
    saved = {"dim": (2 ** 64 - 1,), "keepdim": False}  # torch's x.sum(-1)
    graph = one_op_graph("SumBackward1", [("self", x, True)], x.sum(-1), saved, upstream)
    assert np.array_equal(leaf_grads(graph)["self"], np.repeat(upstream[..., None], 4, axis=-1))


def test_mean_divides_by_the_reduced_count():
    x = np.arange(6.0).reshape(2, 3)
    graph = one_op_graph("MeanBackward1", [("self", x, True)], x.mean(0, keepdims=True),
                         {"dim": (0,), "keepdim": True}, np.array([[1.0, 2.0, 3.0]]))
    assert leaf_grads(graph)["self"].tolist() == [[0.5, 1.0, 1.5], [0.5, 1.0, 1.5]]


def test_routing_node_with_a_negative_slice():
    x = np.arange(5.0)
    saved = {"dim": 0, "start": 2 ** 64 - 3, "end": 2 ** 64 - 1, "step": 1}  # torch's x[-3:-1]
    graph = one_op_graph("SliceBackward0", [("self", x, True)], x[-3:-1], saved, np.array([7.0, 8.0]))
    assert leaf_grads(graph)["self"].tolist() == [0.0, 0.0, 7.0, 8.0, 0.0]


def test_matrix_vector_node():
    m, v = np.arange(6.0).reshape(2, 3), np.array([1.0, -1.0, 2.0])
    upstream = np.array([1.0, 10.0])
    graph = one_op_graph("MvBackward0", [("self", m, True), ("vec", v, True)], m @ v, upstream=upstream)
    grads = leaf_grads(graph)
    assert np.array_equal(grads["self"], np.outer(upstream, v))
    assert np.array_equal(grads["vec"], m.T @ upstream)


def test_dot_node():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    graph = one_op_graph("DotBackward0", [("self", a, True), ("tensor", b, True)], a @ b, upstream=2.0)
    grads = leaf_grads(graph)
    assert grads["self"].tolist() == (2 * b).tolist() and grads["tensor"].tolist() == (2 * a).tolist()


def test_an_op_without_a_row_passes_torchs_numbers_on():
    x = np.array([1.0, 2.0])
    graph = one_op_graph("SomeOpNobodyWroteARuleFor", [("self", x, True)], x)
    node = derive(graph).nodes[0]
    assert node.status == "no-rule" and node.note == "no symbolic rule for this op"


def test_a_row_without_the_values_it_needs_says_why():
    x = Value((2,), "float64", None)  # a number torch did not keep
    leaf = Node(1, "AccumulateGrad", "x", (Operand("self", "x", x),), (x,))
    node = Node(0, "MulBackward0", "y", (Operand("self", "x", x, 1), Operand("other", "z", x, None, 0, False)),
                (x,))
    graph = Graph((node, leaf), (Root(0, 0, "y", x, np.ones(2)),), (Leaf(1, "x", x),))
    derived = derive(graph)
    assert derived.nodes[0].status == "rule-error" and "could not be applied" in derived.nodes[0].note
    assert derived.nodes[1].status == "unreached" and derived.nodes[1].missing_from == (0,)
    assert derived.leaves[0].grad is None  # never torch's number passed off as derived


# --- a leaf's gradient as one formula --------------------------------------------------


def test_leaf_formula_through_elementwise_ops():
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    with graphexplain.recording():
        y = x + 2
        z = y * y * 2
        out = z.mean()
    explanation = graphexplain.explain(out)
    assert explanation.status == "verified"
    assert explanation.leaf("x").formula == "4*(x + 2)/3"


def test_leaf_formula_keeps_named_constants():
    w = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(1.0, dtype=torch.float64)
    y = torch.tensor(2.0, dtype=torch.float64)
    with graphexplain.recording():
        y_hat = w * x
        loss = (y_hat - y) ** 2
    explanation = graphexplain.explain(loss)
    assert explanation.status == "verified"
    assert explanation.leaf("w").formula == "2*x*(w*x - y)"


def test_no_leaf_formula_through_a_matrix_product():
    w = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)
    x = torch.ones(2, 1, dtype=torch.float64)
    loss = (w @ x).sum()
    assert graphexplain.explain(loss).leaf("w").formula is None


# --- a wrong row is caught ---------------------------------------------------------------


def clear_formula_caches() -> None:
    for value in vars(formula).values():
        if hasattr(value, "cache_clear"):
            value.cache_clear()


@pytest.fixture
def wrong_multiply(monkeypatch):
    """MulBackward0's row, deliberately wrong: it says self*other is self + other."""
    wrong = dataclasses.replace(TABLE["MulBackward0"], forward="self + other")
    clear_formula_caches()
    monkeypatch.setitem(graphexplain.rules.TABLE, "MulBackward0", wrong)
    yield wrong
    monkeypatch.undo()
    clear_formula_caches()


def test_a_wrong_row_is_caught_where_it_is_used(wrong_multiply):
    assert graphexplain.rules.lookup("MulBackward0") is wrong_multiply
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    with graphexplain.recording():  # as `graphexplain trace` runs a script
        y = torch.exp(x * w)
        loss = y.sum()
    explanation = graphexplain.explain(loss)
    assert explanation.status == "mismatch"
    assert explanation.first_mismatch().op == "MulBackward0"
    mismatched = explanation.steps[explanation.verification.first_mismatch]
    assert mismatched.derivation.status == "derived"
    assert explanation.leaf("x").status == "mismatch"


def test_a_wrong_row_is_caught_without_recording(wrong_multiply):
    # Unrecorded, x * w's output would be replayed from the wrong row, so a
    # consumer needing it could disagree first; a sum needs no values.
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    loss = (x * w).sum()
    explanation = graphexplain.explain(loss)
    assert explanation.status == "mismatch"
    assert explanation.first_mismatch().op == "MulBackward0"


def test_the_right_row_is_back_after_the_wrong_one():
    assert TABLE["MulBackward0"].forward == "self*other"
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert graphexplain.explain((x * x).sum()).status == "verified"
