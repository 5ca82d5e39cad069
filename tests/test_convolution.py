"""The convolution row (ConvolutionBackward0) on torch's own test database,
on a float32 CNN, under `graphexplain trace`, and against wrong numbers.

tests/rule_samples_convolution.py holds the row's cases for test_rules.py;
here every sample PyTorch's op_db and module_db have for the convolution
ops and modules is explained in float64, and each convolution node must
verify. A float32 nn.Conv2d net (conv → relu → max_pool → conv → linear →
cross-entropy) must verify too, which the error budget allows
(Note [error budget] in derive/budget.py), and torch's numbers off by 0.1 %
from a convolution on must be caught there.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from torch import nn

import graphexplain
from graphexplain.derive import convolution
from graphexplain.rules import TABLE
from graphexplain.verify import verify
from test_verify import off_from

CONVOLUTION = "ConvolutionBackward0"
SCRIPT = Path(__file__).parent / "scripts" / "small_cnn.py"
OPS = ["nn.functional.conv1d", "nn.functional.conv2d", "nn.functional.conv3d",
       "nn.functional.conv_transpose1d", "nn.functional.conv_transpose2d", "nn.functional.conv_transpose3d"]
MODULES = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d", "LazyConvTranspose2d",
           "LazyConvTranspose3d"]


def weighted_total(output) -> torch.Tensor:
    """Σ output · fixed random weights, so no upstream is all ones."""
    generator = torch.Generator().manual_seed(0)
    outputs = output if isinstance(output, (tuple, list)) else (output,)
    return sum((t * (torch.rand(t.shape, generator=generator, dtype=t.dtype) + 0.5)).sum()
               for t in outputs if isinstance(t, torch.Tensor) and t.requires_grad)


def explain_quietly(loss):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return graphexplain.explain(loss)


def assert_convolutions_verify(explanation) -> int:
    convolutions = [step for step in explanation.steps if step.op == CONVOLUTION]
    for step in convolutions:
        assert step.derivation.status == "derived", step.derivation.note
        assert step.status == "verified", [(c.what, c.status, c.max_abs_error, c.allowed)
                                           for c in step.verification.checks]
    return len(convolutions)


# --- torch's op database and module database, in float64 ---------------------------------


def op_samples():
    from torch.testing._internal.common_methods_invocations import op_db

    params = []
    for op in op_db:
        if op.name not in OPS or not op.supports_autograd:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = list(op.sample_inputs("cpu", torch.float64, requires_grad=True))
        params += [pytest.param(op, sample, id=f"{op.name}-{number}") for number, sample in enumerate(samples)]
    return params


@pytest.mark.parametrize("op, sample", op_samples())
def test_op_db_sample_verifies(op, sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = weighted_total(op(sample.input, *sample.args, **sample.kwargs))
    explanation = explain_quietly(loss)
    assert assert_convolutions_verify(explanation) >= 1
    assert explanation.status == "verified"


def module_samples():
    from torch.testing._internal.common_modules import module_db

    params = []
    for info in module_db:
        if info.module_cls.__name__ not in MODULES:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs = info.module_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=True,
                                             training=True)
        params += [pytest.param(info, module_input, id=f"{info.module_cls.__name__}-{number}")
                   for number, module_input in enumerate(inputs)]
    return params


@pytest.mark.parametrize("info, module_input", module_samples())
def test_module_db_sample_verifies(info, module_input):
    """Every convolution node verifies; a padding_mode other than zeros pads
    with an F.pad node of its own first, which may have no row."""
    constructor, forward = module_input.constructor_input, module_input.forward_input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = info.module_cls(*constructor.args, **constructor.kwargs).to(torch.float64)
        loss = weighted_total(module(*forward.args, **forward.kwargs))
    assert assert_convolutions_verify(explain_quietly(loss)) >= 1


# --- a float32 CNN ---------------------------------------------------------------------------


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1, stride=1)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(torch.flatten(F.relu(self.conv2(x)), 1))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    net = SmallNet()
    images = torch.randn(2, 1, 8, 8)
    loss = F.cross_entropy(net(images), torch.tensor([1, 3]))
    return graphexplain.explain(loss)


def test_a_float32_cnn_verifies_end_to_end(cnn):
    assert cnn.status == "verified"
    assert assert_convolutions_verify(cnn) == 2
    assert all(leaf.status == "verified" for leaf in cnn.leaves)


@pytest.mark.parametrize("which", [0, 1], ids=["conv2", "conv1"])
def test_torch_numbers_off_from_a_convolution_are_caught_there(cnn, which):
    graph = cnn.graph
    start = [node.id for node in graph.nodes if node.op == CONVOLUTION][which]
    verification = verify(graph, cnn.derivation, off_from(graph, cnn.observed, start))
    assert verification.status == "mismatch"
    assert verification.first_mismatch == start
    assert verification.nodes[start].inherited_from is None


def test_a_wrong_forward_is_caught(monkeypatch):
    """A row whose forward forgets the dilation derives other numbers, and verify says so."""
    import dataclasses

    row = TABLE[CONVOLUTION]
    monkeypatch.setitem(TABLE, CONVOLUTION, dataclasses.replace(row, forward=row.forward.replace("k*dilation", "k")))
    x = torch.randn(1, 2, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain(weighted_total(F.conv1d(x, w, dilation=2)))
    assert explanation.status == "mismatch"


def test_trace_on_a_script_exits_0(launch, tmp_path):
    run = launch.graphexplain("trace", "--quiet", SCRIPT, cwd=tmp_path).result()
    assert run.returncode == 0, run.output
    assert "verified" in run.stdout


# --- what the walkthrough and the picture show ----------------------------------------------


def test_the_walkthrough_states_the_local_gradients_in_index_notation():
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    y = conv(x)
    explanation = graphexplain.explain(y.sum())
    (step,) = [step for step in explanation.steps if step.op == CONVOLUTION]
    shown = {local.input: local.named for local in step.derivation.local_gradients}
    assert shown == {
        "input": "∂y[n, o, i, j]/∂x[n, c, 2*i + k - 1, 2*j + l - 1] = conv.weight[o, c, k, l]",
        "weight": "∂y[n, o, i, j]/∂conv.weight[o, c, k, l] = x[n, c, 2*i + k - 1, 2*j + l - 1]",
        "bias": "∂y[n, o, i, j]/∂conv.bias[o] = 1",
    }
    assert shown["weight"] in " ".join(str(explanation).split())
    assert "conv2d 2→3, 3×3, stride 2, pad 1" in explanation.to_dot()


def test_sympy_derives_the_places_each_operand_is_read_at():
    row = TABLE[CONVOLUTION]
    (weight,) = convolution.derivative_terms(row, False, 2, "weight")
    assert [str(p) for p in weight.place] == ["o", "c", "k", "l"]
    assert str(weight.coefficient) == \
        "input[n, Cg*floor(o/Og) + c, dilation0*k + i*stride0 - padding0, dilation1*l + j*stride1 - padding1]"
    (transposed,) = convolution.derivative_terms(row, True, 1, "input")
    assert str(transposed.place[2]) == "(-dilation*k + i + padding)/stride"
    (bias,) = convolution.derivative_terms(row, False, 3, "bias")
    assert bias.coefficient == 1 and bias.limits == ()


def test_blocks_of_the_grid_add_up_to_the_whole(monkeypatch):
    """Over the grid (the way a term the offsets cannot take goes), cut into
    blocks of a few elements: the same gradients, still verified
    (Note [blocks of the grid])."""
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    loss = weighted_total(F.conv2d(x, w, stride=2, padding=1, groups=2))
    whole = graphexplain.explain(loss)
    monkeypatch.setattr(convolution, "_plan", lambda *arguments: None)
    monkeypatch.setattr(convolution, "BLOCK", 7)
    blocked = graphexplain.explain(loss)
    assert blocked.status == "verified"
    for name in ("x", "w"):
        assert np.allclose(blocked.leaf(name).derived_grad, whole.leaf(name).derived_grad, rtol=1e-13, atol=0)


GEOMETRIES = {
    "conv1d stride 2 pad 1": (F.conv1d, (2, 3, 9), (4, 3, 3), dict(stride=2, padding=1)),
    "conv2d groups dilation": (F.conv2d, (2, 4, 7, 6), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2),
                                                                           dilation=(1, 2), groups=2)),
    "conv2d depthwise": (F.conv2d, (2, 6, 5, 5), (6, 1, 3, 3), dict(padding=1, groups=6)),
    "conv3d": (F.conv3d, (1, 2, 5, 4, 4), (3, 2, 2, 3, 2), dict(padding=1)),
    "conv_transpose1d stride 3": (F.conv_transpose1d, (1, 2, 5), (2, 3, 4), dict(stride=3, padding=2)),
    "conv_transpose2d groups": (F.conv_transpose2d, (2, 4, 4, 3), (4, 3, 3, 2),
                                dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 1), groups=2,
                                     dilation=(1, 2))),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_the_offsets_give_the_grids_sums(name):
    """Note [the kernel's offsets, one at a time]: offset by offset, the
    same gradient, count of terms and error budget (Note [a convolution's
    budget, offset by offset]) as the grid's element-by-element sums, for
    every operand."""
    function, input_shape, weight_shape, options = GEOMETRIES[name]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, dtype=torch.float64, generator=generator, requires_grad=True)
    w = torch.randn(weight_shape, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(weight_shape[1] * options.get("groups", 1) if "transpose" in name else weight_shape[0],
                       dtype=torch.float64, generator=generator, requires_grad=True)
    graph = explain_quietly(function(x, w, bias, **options).sum()).graph
    (node,) = [node for node in graph.nodes if node.op == CONVOLUTION]
    row = TABLE[CONVOLUTION]
    where = convolution.geometry(row, node)
    random = np.random.default_rng(0)
    upstream, upstream_budget = random.normal(size=where.out_shape), random.uniform(size=where.out_shape)
    out = convolution.out_indices(row, where.ndim)
    rounding = 2.0
    for operand in ("input", "weight", "bias"):
        for term in convolution.derivative_terms(row, where.transposed, where.ndim, operand):
            plan = convolution._plan(row, where.transposed, where.ndim, operand, term)
            assert plan is not None, (operand, term)
            offsets = convolution._offsets(plan, where, operand)
            size = int(np.prod(where.shapes[operand]))
            count, gradient, error = np.zeros(size), np.zeros(size), np.zeros(size)
            convolution._count(offsets, count, where.shapes[operand])
            factor = np.maximum(count, 1) + rounding
            convolution._by_offsets(plan, offsets, where, operand, upstream, upstream_budget, factor, gradient, error)
            grid_gradient, magnitude, carried, grid_count = convolution._on_the_grid(
                term, out, where, operand, upstream, upstream_budget)
            grid_error = carried + (np.maximum(grid_count, 1) + rounding) * magnitude
            for what, by_offsets, on_the_grid in (("gradient", gradient, grid_gradient), ("count", count, grid_count),
                                                  ("error budget", error, grid_error)):
                assert np.allclose(by_offsets, on_the_grid, rtol=1e-12, atol=1e-12), (operand, what)


def test_a_node_without_its_numbers_is_left_to_torch():
    """A weight torch did not keep (here: no edge reads it) is no crash: the
    row says what it lacks. Built by hand, as capture never loses it."""
    from dataclasses import replace

    x = torch.randn(1, 1, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 1, 2, dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain(F.conv1d(x, w).sum())
    graph = explanation.graph
    (node,) = [node for node in graph.nodes if node.op == CONVOLUTION]
    operands = tuple(replace(o, value=replace(o.value, data=None)) if o.name == "input" else o for o in node.operands)
    from graphexplain.derive.chain import derive_node

    derived = derive_node(replace(node, operands=operands), np.ones((1, 1, 3)))
    assert derived.status == "rule-error"
    assert "input" in derived.note


def test_the_geometry_names_transposed_and_grouped_kernels():
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    conv = nn.ConvTranspose2d(4, 6, (3, 2), stride=2, output_padding=1, groups=2, dilation=(1, 2)).double()
    explanation = graphexplain.explain(conv(x).sum())
    (step,) = [step for step in explanation.steps if step.op == CONVOLUTION]
    assert step.derivation.geometry == \
        "conv_transpose2d 4→6, 3×2, stride 2, pad 0, dilation 1×2, groups 2, output padding 1"
    assert step.status == "verified"
    assert isinstance(convolution.expanded(TABLE[CONVOLUTION], True, 2), sp.Expr)


def test_a_float32_convolution_on_cuda_is_allowed_tf32s_rounding_of_each_product():
    """Note [TF32 on CUDA]: 2·eps(TF32) per term, in units of float32's eps;
    nothing extra on the CPU or in float64."""
    from graphexplain.model import Node, Value

    def node(dtype, device):
        return Node(0, CONVOLUTION, "y", (), (Value((1, 1, 2), dtype, None, device),))

    eps = 2.0 ** -23
    assert convolution._tf32_steps(node("float32", "cuda:0"), eps) == 2 * 2.0 ** -10 / eps
    assert convolution._tf32_steps(node("float32", "cpu"), eps) == 0.0
    assert convolution._tf32_steps(node("float64", "cuda:0"), 2.0 ** -52) == 0.0
