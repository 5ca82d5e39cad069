"""Every row of the rule table, checked against torch in float64.

SAMPLES is the table's twin, in the manner of JAX's ``grad_test_spec``: for
each grad_fn name in `graphexplain.rules.TABLE`, the ways to make torch
record that node, each from float64 leaves on a domain where the op is
smooth (positive numbers for log, away from 0 for abs). A row without a
sample fails `test_row`, so adding a row means adding its sample here.

Each case reduces the op's output to a number with a fixed random weighting
(so the upstream gradient is not all ones), explains it, and checks that

- the explanation verifies against torch, node by node,
- the row itself derived a gradient (no torch passthrough),
- each leaf's derived gradient equals ``torch.autograd.grad``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphexplain
from graphexplain.rules import TABLE
from graphexplain.verify import SAFETY

aten = torch.ops.aten
DTYPE = torch.float64
SEED = 0


from rule_sampling import (  # noqa: E402  (tests/ is on sys.path under pytest)
    BASIC, DTYPE, FLOAT32, MATRIX, NONZERO, POSITIVE, PROBABILITY, REAL, TARGET, WEIGHT, Domain, Sample,
    constant, nonzero, positive, probability, real, sample,
)

SAMPLES: Dict[str, Dict[str, Sample]] = {
    # --- pointwise ---
    "AccumulateGrad": {BASIC: sample(lambda x: x, x=real(3))},
    "AddBackward0": {
        BASIC: sample(lambda x, y: x + y, x=real(3, 4), y=real(3, 4)),
        "bias-broadcast": sample(lambda b, x: b + x, b=real(2), x=real(5, 2)),
        "alpha": sample(lambda x, y: torch.add(x, y, alpha=2.5), x=real(3), y=real(3)),
        "number": sample(lambda x: x + 2, x=real(3)),
    },
    "AddBackward1": {BASIC: sample(lambda x: aten.add.Scalar(x, 2, alpha=3), x=real(3))},
    "SubBackward0": {
        BASIC: sample(lambda x, y: x - y, x=real(3, 4), y=real(3, 4)),
        "broadcast": sample(lambda x, y: x - y, x=real(3, 1), y=real(1, 4)),
        "alpha": sample(lambda x, y: torch.sub(x, y, alpha=0.5), x=real(3), y=real(3)),
    },
    "SubBackward1": {BASIC: sample(lambda x: aten.sub.Scalar(x, 2, alpha=3), x=real(3))},
    "RsubBackward0": {BASIC: sample(lambda x, y: torch.rsub(x, y, alpha=2), x=real(3), y=real(3))},
    "RsubBackward1": {BASIC: sample(lambda x: 2 - x, x=real(3))},
    "MulBackward0": {
        BASIC: sample(lambda x, y: x * y, x=real(3, 4), y=real(3, 4)),
        "broadcast": sample(lambda x, y: x * y, x=real(3, 1), y=real(1, 4)),
        "scalar-tensor": sample(lambda s, v: s * v, s=real(), v=real(4)),
        "number": sample(lambda x: x * 2, x=real(3)),
    },
    "MulBackward1": {BASIC: sample(lambda x: aten.mul.Scalar(x, 2.5), x=real(3))},
    "DivBackward0": {
        BASIC: sample(lambda x, y: x / y, x=real(3, 4), y=nonzero(3, 4)),
        "broadcast": sample(lambda x, y: x / y, x=real(3, 2), y=nonzero(2)),
        "number": sample(lambda x: x / 4, x=real(3)),
    },
    "DivBackward1": {BASIC: sample(lambda x: aten.div.Scalar(x, 4), x=real(3))},
    "NegBackward0": {BASIC: sample(lambda x: -x, x=real(3))},
    "ReciprocalBackward0": {BASIC: sample(torch.reciprocal, x=nonzero(3))},
    "PowBackward0": {
        BASIC: sample(lambda x: x ** 3, x=real(3)),
        "negative-exponent": sample(lambda x: x ** -0.5, x=positive(3)),
    },
    "PowBackward1": {
        BASIC: sample(lambda x, y: x ** y, x=positive(3), y=real(3)),
        "scalar-exponent": sample(lambda x, y: x ** y, x=positive(3, 2), y=real()),
    },
    "PowBackward2": {BASIC: sample(lambda x: 2 ** x, x=real(3))},
    "ExpBackward0": {BASIC: sample(torch.exp, x=real(3))},
    "LogBackward0": {BASIC: sample(torch.log, x=positive(3))},
    "SqrtBackward0": {BASIC: sample(torch.sqrt, x=positive(3))},
    "RsqrtBackward0": {BASIC: sample(torch.rsqrt, x=positive(3))},
    "SinBackward0": {BASIC: sample(torch.sin, x=real(3))},
    "CosBackward0": {BASIC: sample(torch.cos, x=real(3))},
    "TanhBackward0": {BASIC: sample(torch.tanh, x=real(3))},
    "SigmoidBackward0": {BASIC: sample(torch.sigmoid, x=real(3))},
    "ReluBackward0": {BASIC: sample(torch.relu, x=nonzero(6)), "functional": sample(F.relu, x=nonzero(6))},
    "AbsBackward0": {BASIC: sample(torch.abs, x=nonzero(6))},
    "ToCopyBackward0": {
        BASIC: sample(lambda x: x.to(torch.float64), x=(FLOAT32, (3,))),
        "to-float32": sample(lambda x: x.to(torch.float32), x=real(3)),
    },
    "CloneBackward0": {BASIC: sample(torch.clone, x=real(3))},
    "AliasBackward0": {BASIC: sample(aten.alias, x=real(3))},
    # lift_fresh hands back its input with a new grad_fn; a leaf would stop being one.
    "LiftFreshBackward0": {BASIC: sample(lambda x: aten.lift_fresh(x * 1), x=real(3))},
    # --- reductions ---
    "SumBackward0": {BASIC: sample(torch.sum, x=real(3, 4))},
    "SumBackward1": {
        BASIC: sample(lambda x: x.sum(1), x=real(3, 4)),
        "keepdim": sample(lambda x: x.sum(-1, keepdim=True), x=real(3, 4)),
        "negative-dim": sample(lambda x: x.sum(-1), x=real(2, 3, 4)),
        "dims": sample(lambda x: x.sum((0, -1)), x=real(2, 3, 4)),
        "dims-keepdim": sample(lambda x: x.sum((0, 2), keepdim=True), x=real(2, 3, 4)),
    },
    "MeanBackward0": {BASIC: sample(torch.mean, x=real(3, 4))},
    "MeanBackward1": {
        BASIC: sample(lambda x: x.mean(0), x=real(3, 4)),
        "keepdim": sample(lambda x: x.mean(-1, keepdim=True), x=real(3, 4)),
        "negative-dim": sample(lambda x: x.mean(-2), x=real(2, 3, 4)),
        "dims-keepdim": sample(lambda x: x.mean((0, -1), keepdim=True), x=real(2, 3, 4)),
    },
    "MseLossBackward0": {
        BASIC: sample(F.mse_loss, prediction=real(2, 3), target=real(2, 3)),
        "sum": sample(lambda p, t: F.mse_loss(p, t, reduction="sum"), p=real(2, 3), t=real(2, 3)),
        "none": sample(lambda p, t: F.mse_loss(p, t, reduction="none"), p=real(2, 3), t=real(2, 3)),
        "constant-target": sample(lambda p: F.mse_loss(p, TARGET), p=real(2, 3)),
    },
    "BinaryCrossEntropyBackward0": {
        BASIC: sample(lambda p: F.binary_cross_entropy(p, TARGET), p=probability(2, 3)),
        "sum": sample(lambda p: F.binary_cross_entropy(p, TARGET, reduction="sum"), p=probability(2, 3)),
        "none": sample(lambda p: F.binary_cross_entropy(p, TARGET, reduction="none"), p=probability(2, 3)),
        "weight": sample(lambda p: F.binary_cross_entropy(p, TARGET, weight=WEIGHT), p=probability(2, 3)),
        "weight-sum": sample(lambda p: F.binary_cross_entropy(p, TARGET, weight=WEIGHT, reduction="sum"),
                             p=probability(2, 3)),
        "weight-none": sample(lambda p: F.binary_cross_entropy(p, TARGET, weight=WEIGHT, reduction="none"),
                              p=probability(2, 3)),
        "weight-broadcast": sample(lambda p: F.binary_cross_entropy(p, TARGET, weight=WEIGHT[0]),
                                   p=probability(2, 3)),
    },
    # --- routing ---
    "ViewBackward0": {
        BASIC: sample(lambda x: x.view(6), x=real(2, 3)),
        "reshape": sample(lambda x: x.reshape(3, 2), x=real(2, 3)),
        "flatten": sample(torch.flatten, x=real(2, 3, 2)),
    },
    "UnsafeViewBackward0": {BASIC: sample(lambda x: x.t().reshape(6), x=real(2, 3))},
    "ReshapeAliasBackward0": {BASIC: sample(lambda x: aten._reshape_alias(x, (3, 2), (2, 1)), x=real(2, 3))},
    "ExpandBackward0": {
        BASIC: sample(lambda x: x.expand(3, 4), x=real(3, 1)),
        "leading-dims": sample(lambda x: x.expand(2, 3, 4), x=real(3, 1)),
        "minus-one": sample(lambda x: x.expand(-1, 4), x=real(3, 1)),
        "scalar": sample(lambda x: x.expand(2, 3), x=real()),
    },
    "SqueezeBackward0": {BASIC: sample(torch.squeeze, x=real(3, 1, 2))},
    "SqueezeBackward1": {
        BASIC: sample(lambda x: x.squeeze(0), x=real(1, 3)),
        "negative-dim": sample(lambda x: x.squeeze(-1), x=real(3, 1)),
        "not-one": sample(lambda x: x.squeeze(1), x=real(3, 2)),
    },
    "SqueezeBackward2": {BASIC: sample(lambda x: x.squeeze((0, -1)), x=real(1, 3, 1))},
    "SqueezeBackward3": {BASIC: sample(lambda x: x.clone().unsqueeze(0).squeeze_(), x=real(2, 3))},
    "SqueezeBackward4": {
        BASIC: sample(lambda v, m: v @ m, v=real(3), m=real(3, 2)),  # matmul squeezes in place
        "in-place": sample(lambda x: x.clone().unsqueeze(1).squeeze_(-2), x=real(2, 3)),
    },
    "SqueezeBackward5": {BASIC: sample(lambda x: x.clone().unsqueeze(0).squeeze_((0, -1)), x=real(2, 1))},
    "UnsqueezeBackward0": {
        BASIC: sample(lambda x: x.unsqueeze(0), x=real(3)),
        "negative-dim": sample(lambda x: x.unsqueeze(-1), x=real(2, 3)),
        "none-index": sample(lambda x: x[None], x=real(3)),
    },
    "UnsqueezeBackward1": {BASIC: sample(lambda x: x.clone().unsqueeze_(-1), x=real(2, 3))},
    "TBackward0": {BASIC: sample(torch.t, x=real(2, 3))},
    "TBackward1": {BASIC: sample(lambda x: x.clone().t_(), x=real(2, 3))},
    "TransposeBackward0": {
        BASIC: sample(lambda x: x.transpose(0, 2), x=real(2, 3, 4)),
        "negative-dims": sample(lambda x: x.mT, x=real(2, 3, 4)),
    },
    "TransposeBackward1": {BASIC: sample(lambda x: x.clone().transpose_(0, -1), x=real(2, 3, 4))},
    "PermuteBackward0": {
        BASIC: sample(lambda x: x.permute(2, 0, 1), x=real(2, 3, 4)),
        "negative-dims": sample(lambda x: x.permute(-1, 0, 1), x=real(2, 3, 4)),
        "dot-T": sample(lambda x: x.T, x=real(2, 3)),
    },
    "SelectBackward0": {
        BASIC: sample(lambda x: x[0], x=real(3, 2)),
        "negative-index": sample(lambda x: x[:, -1], x=real(3, 2)),
        "negative-dim": sample(lambda x: x.select(-1, 1), x=real(3, 2)),
    },
    "SliceBackward0": {
        BASIC: sample(lambda x: x[:, 1:], x=real(3, 4)),
        "negative": sample(lambda x: x[:, -3:-1], x=real(3, 4)),
        "step": sample(lambda x: x[::2], x=real(5, 4)),
        "end-past-the-end": sample(lambda x: x[1:100], x=real(5, 4)),
        "start-before-the-start": sample(lambda x: x[-100:2], x=real(5, 4)),
        "negative-end": sample(lambda x: x[:-2], x=real(5, 4)),
    },
    # --- matrix ---
    "MmBackward0": {
        BASIC: sample(lambda x, y: x @ y, x=real(3, 2), y=real(2, 4)),
        "mm": sample(torch.mm, x=real(3, 2), y=real(2, 4)),
        "constant-left": sample(lambda y: MATRIX @ y, y=real(2, 4)),
        "batch-times-matrix": sample(lambda x, y: x @ y, x=real(2, 3, 4), y=real(4, 5)),
    },
    "AddmmBackward0": {
        BASIC: sample(torch.addmm, b=real(4), x=real(3, 2), y=real(2, 4)),
        "linear": sample(F.linear, x=real(5, 3), w=real(2, 3), b=real(2)),
        "scaled": sample(lambda b, x, y: torch.addmm(b, x, y, beta=0.5, alpha=2.0),
                         b=real(3, 4), x=real(3, 2), y=real(2, 4)),
        "bias-row": sample(torch.addmm, b=real(1, 4), x=real(3, 2), y=real(2, 4)),
        "bias-column": sample(torch.addmm, b=real(3, 1), x=real(3, 2), y=real(2, 4)),
        "bias-scalar": sample(torch.addmm, b=real(), x=real(3, 2), y=real(2, 4)),
    },
    "MvBackward0": {BASIC: sample(lambda m, v: m @ v, m=real(2, 3), v=real(3))},
    "DotBackward0": {BASIC: sample(lambda a, b: a @ b, a=real(3), b=real(3))},
    "BmmBackward0": {
        BASIC: sample(torch.bmm, x=real(2, 3, 4), y=real(2, 4, 5)),
        "matmul": sample(lambda x, y: x @ y, x=real(2, 2, 3, 4), y=real(2, 2, 4, 5)),
    },
}


# Families added later keep their samples in modules of their own,
# tests/rule_samples_<family>.py, each defining SAMPLES like the dict above.
for _module in sorted(Path(__file__).parent.glob("rule_samples_*.py")):
    for _op, _cases in importlib.import_module(_module.stem).SAMPLES.items():
        SAMPLES.setdefault(_op, {}).update(_cases)


def cases() -> List:
    """One pytest param per (row, case); a row without a sample is a case
    that fails."""
    params = []
    for op in TABLE:
        for case in SAMPLES.get(op, {None: None}):
            name = op if not case else f"{op}-{case}"
            params.append(pytest.param(op, case, id=name))
    return params


# --- checking one case ----------------------------------------------------------------


def explain_with_names(loss: torch.Tensor, leaves: Dict[str, torch.Tensor]):
    """`graphexplain.explain(loss)`, called from a frame whose variables are
    the leaves, so that the explanation calls each leaf by its sample's name."""
    namespace = dict(leaves, loss=loss, explain=graphexplain.explain)
    exec("explanation = explain(loss)", namespace)
    return namespace["explanation"]


def weighted_total(output: torch.Tensor) -> torch.Tensor:
    """Σ w·output with fixed random weights w, so every output element sends
    back a different upstream gradient."""
    generator = torch.Generator().manual_seed(SEED + 1)
    weights = torch.randn(output.shape, dtype=DTYPE, generator=generator)
    return (output * weights).sum()


def tolerance(*dtypes: torch.dtype) -> Dict[str, float]:
    """Tight for float64; where torch computed in a narrower dtype on the
    way (a float32 leaf, a float32 copy), ten of that dtype's epsilons."""
    epsilon = max(torch.finfo(dtype).eps for dtype in dtypes)
    rtol = max(1e-10, 10 * epsilon)
    return {"rtol": rtol, "atol": rtol / 10}


@dataclass(frozen=True)
class Run:
    explanation: graphexplain.Explanation
    leaves: Dict[str, torch.Tensor]
    torch_grads: Dict[str, torch.Tensor]
    output_dtype: torch.dtype


def run(sample_: Sample, leaves: Optional[Dict[str, torch.Tensor]] = None) -> Run:
    """Explain one sample, and ask torch for its leaves' gradients; the
    leaves are drawn from the sample's domains unless given."""
    if leaves is None:
        leaves = sample_.make_leaves(torch.Generator().manual_seed(SEED))
    output = sample_.build(*leaves.values())
    loss = weighted_total(output)
    explanation = explain_with_names(loss, leaves)
    torch_grads = torch.autograd.grad(loss, list(leaves.values()))
    return Run(explanation, leaves, dict(zip(leaves, torch_grads)), output.dtype)


def assert_row_used(explanation, op: str) -> None:
    used = [step for step in explanation.steps if step.node.op == op]
    assert used, f"torch recorded no {op}: {[step.op for step in explanation.steps]}"
    derived = [step for step in used if step.derivation.status == "derived"]
    assert derived, f"{op} was not derived: {[step.derivation.note for step in used]}"


def assert_leaves_match_torch(result: Run) -> None:
    for name, tensor in result.leaves.items():
        derived = result.explanation.leaf(name).derived_grad
        assert derived is not None, f"no derived gradient for {name}"
        expected = result.torch_grads[name].resolve_conj().to(torch.complex128 if tensor.is_complex() else torch.float64).numpy()
        # torch's float32 kernels round on the way; how far that can go is the leaf's error budget
        position = next(k for k, leaf in enumerate(result.explanation.graph.leaves) if leaf.name == name)
        budget = result.explanation.derivation.leaves[position].budget
        rounding = 0.0 if budget is None else SAFETY * np.asarray(budget)
        close = np.isclose(derived, expected, **tolerance(tensor.dtype, result.output_dtype))
        assert np.all(close | (np.abs(derived - expected) <= rounding)), (
            f"∂loss/∂{name}: derived {derived}, torch {expected}")


@pytest.mark.parametrize("op, case", cases())
def test_row(op, case):
    assert op in SAMPLES, f"the row {op} has no sample in tests/test_rules.py SAMPLES"
    result = run(SAMPLES[op][case])
    assert result.explanation.status == "verified", [
        (step.op, step.status, step.derivation.note) for step in result.explanation.steps]
    assert_row_used(result.explanation, op)
    assert_leaves_match_torch(result)


def test_every_sample_is_for_a_row():
    assert sorted(set(SAMPLES) - set(TABLE)) == []


def test_every_row_has_a_plain_case():
    assert [op for op, cases_ in SAMPLES.items() if BASIC not in cases_] == []


# --- an input torch did not keep ------------------------------------------------------

NOT_KEPT = [pytest.param(op, case, id=f"{op}-{case}")
            for op, cases_ in SAMPLES.items() for case in cases_ if case.startswith("input-not-kept")]


@pytest.mark.parametrize("op, case", NOT_KEPT)
def test_an_input_not_kept_is_told_by_the_result(op, case):
    """These cases reach the row with its input known to no node, so its
    gradient is written in the result (Note [an input told by its result]
    in derive/formula.py), not read from the input."""
    explanation = run(SAMPLES[op][case]).explanation
    gradients = [gradient.expr for step in explanation.steps if step.node.op == op
                 for gradient in step.derivation.local_gradients]
    assert gradients and all("result" in expr and not re.search(r"\bself\b", expr) for expr in gradients), gradients


# --- kinks: torch's convention is a gradient of 0 at the kink --------------------------


@pytest.mark.parametrize("op, function", [("ReluBackward0", torch.relu), ("AbsBackward0", torch.abs)],
                         ids=["relu", "abs"])
def test_kink_at_zero_follows_torch(op, function):
    x = torch.tensor([-1.5, 0.0, 0.0, 2.0], dtype=DTYPE, requires_grad=True)
    result = run(sample(function, x=real(4)), {"x": x})
    assert result.explanation.status == "verified"
    assert_row_used(result.explanation, op)
    derived = result.explanation.leaf("x").derived_grad
    assert derived[1] == 0.0 and derived[2] == 0.0
    assert_leaves_match_torch(result)
