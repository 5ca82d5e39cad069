"""The modules of torch's module_db that record the rows of issue #9 part 4
(GLU, Bilinear, MultiMarginLoss, MultiLabelMarginLoss): each of their first
samples, in float64, explained and verified node by node, with the row
itself deriving its gradient (the rows' own samples are in
tests/rule_samples_more.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import graphexplain

MODULES = {  # module_db's class name → the node its forward records
    "GLU": "GluBackward0",
    "Bilinear": "TrilinearBackward0",
    "MultiMarginLoss": "MultiMarginLossBackward0",
    "MultiLabelMarginLoss": "MultilabelMarginLossBackward0",
}
SAMPLES_PER_MODULE = 4


def _module_samples():
    from torch.testing._internal.common_modules import module_db

    params = []
    for info in module_db:
        name = info.module_cls.__name__
        if name not in MODULES:
            continue
        inputs = info.module_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=True, training=True)
        for number, module_input in enumerate(inputs[:SAMPLES_PER_MODULE]):
            params.append(pytest.param(info, module_input, MODULES[name], id=f"{name}-{number}"))
    return params


def _weighted_total(output: torch.Tensor) -> torch.Tensor:
    weights = torch.rand(output.shape, generator=torch.Generator().manual_seed(0), dtype=output.dtype) + 0.5
    return (output * weights).sum()


@pytest.mark.parametrize("info, module_input, op", _module_samples())
def test_module_db_sample_verifies(info, module_input, op):
    constructor, forward = module_input.constructor_input, module_input.forward_input
    torch.manual_seed(0)
    module = info.module_cls(*constructor.args, **constructor.kwargs).to(torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explanation = graphexplain.explain(_weighted_total(module(*forward.args, **forward.kwargs)))
    assert explanation.status == "verified", [(s.op, s.status, s.derivation.note) for s in explanation.steps]
    used = [step for step in explanation.steps if step.node.op == op]
    assert used and all(step.derivation.status == "derived" for step in used)


# --- a wrong torch number at one of these rows is caught -------------------------------

from rule_sampling import BASIC  # noqa: E402
from test_rules import SAMPLES, run  # noqa: E402
from test_verify import off_from, with_node  # noqa: E402

from graphexplain.model import frozen_array  # noqa: E402
from graphexplain.verify import verify  # noqa: E402

NEW_ROWS = ["GluBackward0", "TrilinearBackward0", "MultiMarginLossBackward0", "MultilabelMarginLossBackward0",
            "NativeDropoutBackwardBackward0", "LuUnpackBackward0", "FrexpBackward0", "GridSampler2DBackward0",
            "GridSampler3DBackward0", "UpsampleBilinear2DAaBackward0"]
ZERO_GRADIENT_ROWS = ["BernoulliBackward0", "BernoulliBackward1", "NormalBackward1", "NormalBackward3"]


def _row_node(explanation, op: str) -> int:
    return next(step.node.id for step in explanation.steps if step.node.op == op)


@pytest.mark.parametrize("op, case", [(op, BASIC) for op in NEW_ROWS] + [
    ("GridSampler2DBackward0", "bicubic-reflection-align-corners"), ("GridSampler2DBackward0", "float32"),
    ("MultiMarginLossBackward0", "p-2"), ("MultiMarginLossBackward0", "float32")])
def test_torch_off_by_1e_3_at_the_row_is_caught(op, case):
    explanation = run(SAMPLES[op][case]).explanation
    start = _row_node(explanation, op)
    verification = verify(explanation.graph, explanation.derivation,
                          off_from(explanation.graph, explanation.observed, start))
    assert verification.status == "mismatch" and verification.first_mismatch == start


@pytest.mark.parametrize("op", ZERO_GRADIENT_ROWS)
def test_a_gradient_where_torch_gives_none_is_caught(op):
    """torch's gradient through a sample is 0; 1e-9 instead is a mismatch."""
    explanation = run(SAMPLES[op][BASIC]).explanation
    start = _row_node(explanation, op)
    node = explanation.observed.node(start)
    shifted = tuple(None if d is None else frozen_array(np.asarray(d) + 1e-9) for d in node.downstream)
    verification = verify(explanation.graph, explanation.derivation, with_node(explanation.observed, start,
                                                                               downstream=shifted))
    assert verification.status == "mismatch" and verification.first_mismatch == start
