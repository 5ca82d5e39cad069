"""Samples for the rows in index notation (rules/softmax.py,
rules/normalization.py, rules/accumulate.py).

Besides the plain case, each op is drawn along a negative dim, with keepdim,
and along several dims where it takes them. Named cases put elements where
torch follows a convention: zeros in a product, a zero vector under a norm,
ties for the largest element of an inf-norm, ignored targets of nll_loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

from rule_sampling import BASIC, DTYPE, Domain, constant, real, sample

aten = torch.ops.aten


@dataclass(frozen=True)
class WithZeros(Domain):
    """Uniform in [low, high], with every `every`-th element (in memory order) 0."""

    every: int = 3

    def leaf(self, shape: Tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        values = super().leaf(shape, generator).detach()
        values.view(-1)[::self.every] = 0.0
        return values.requires_grad_(True)


@dataclass(frozen=True)
class ZeroFirstRow(Domain):
    """Uniform in [low, high], with the first row all 0 (a zero vector)."""

    def leaf(self, shape: Tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        values = super().leaf(shape, generator).detach()
        values[0] = 0.0
        return values.requires_grad_(True)


@dataclass(frozen=True)
class Ties(Domain):
    """Whole numbers ±1, ±2: several elements share the largest |x|."""

    def leaf(self, shape: Tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        magnitude = torch.randint(1, 3, shape, generator=generator).to(DTYPE)
        signs = torch.randint(0, 2, shape, generator=generator).to(DTYPE) * 2 - 1
        return (magnitude * signs).requires_grad_(True)


def one_zero(*shape: int):
    return WithZeros(-2.0, 2.0, every=10 ** 6), shape


def zeros(*shape: int):
    return WithZeros(-2.0, 2.0, every=2), shape


def zero_row(*shape: int):
    return ZeroFirstRow(-2.0, 2.0), shape


def ties(*shape: int):
    return Ties(-2.0, 2.0), shape


TARGETS = torch.tensor([0, 3, 1])  # classes of 3 rows of 4
TARGETS_2D = torch.tensor([[[0, 2], [1, 1]], [[2, 0], [1, 2]]])  # (batch 2, 2, 2), 3 classes
IGNORED = torch.tensor([0, -100, 1])
CLASS_WEIGHT = constant(4, low=0.5, high=2.0, seed=11)
RUNNING_MEAN = constant(3, seed=12)
RUNNING_VAR = constant(3, low=0.5, high=2.0, seed=13)


def running():
    """Fresh running statistics (batch_norm updates them in place when training)."""
    return RUNNING_MEAN.clone(), RUNNING_VAR.clone()


def _all_outputs(outputs):
    """Every output of a multi-output op in one tensor, each broadcast to the first."""
    first, *later = tuple(outputs)
    total = first
    for output in later:
        total = total + output
    return total


SAMPLES = {
    # --- softmax and relatives (rules/softmax.py) ---
    "SoftmaxBackward0": {
        BASIC: sample(lambda x: x.softmax(1), x=real(3, 4)),
        "negative-dim": sample(lambda x: F.softmax(x, dim=-1), x=real(2, 3, 4)),
        "dim0": sample(lambda x: x.softmax(0), x=real(3, 4)),
        "scalar": sample(lambda x: x.softmax(0), x=real()),
    },
    "SafeSoftmaxBackward0": {
        BASIC: sample(lambda x: aten._safe_softmax(x, 1), x=real(3, 4)),
        "negative-dim": sample(lambda x: aten._safe_softmax(x, -2), x=real(2, 3, 4)),
    },
    "LogSoftmaxBackward0": {
        BASIC: sample(lambda x: x.log_softmax(1), x=real(3, 4)),
        "negative-dim": sample(lambda x: F.log_softmax(x, dim=-1), x=real(2, 3, 4)),
        "dim0": sample(lambda x: x.log_softmax(0), x=real(3, 4)),
    },
    "LogsumexpBackward0": {
        BASIC: sample(lambda x: x.logsumexp(1), x=real(3, 4)),
        "keepdim": sample(lambda x: x.logsumexp(-1, keepdim=True), x=real(3, 4)),
        "dims": sample(lambda x: x.logsumexp((0, -1)), x=real(2, 3, 4)),
        "dims-keepdim": sample(lambda x: x.logsumexp((0, 2), keepdim=True), x=real(2, 3, 4)),
    },
    "LogcumsumexpBackward0": {
        BASIC: sample(lambda x: x.logcumsumexp(1), x=real(3, 4)),
        "negative-dim": sample(lambda x: x.logcumsumexp(-3), x=real(2, 3, 4)),
    },
    "SoftmaxBackwardDataBackward0": {
        BASIC: sample(lambda g, y: aten._softmax_backward_data(g, y, 1, DTYPE), g=real(3, 4), y=real(3, 4)),
        "negative-dim": sample(lambda g, y: aten._softmax_backward_data(g, y, -1, DTYPE),
                               g=real(2, 3, 4), y=real(2, 3, 4)),
    },
    "LogSoftmaxBackwardDataBackward0": {
        BASIC: sample(lambda g, y: aten._log_softmax_backward_data(g, y, 1, DTYPE), g=real(3, 4), y=real(3, 4)),
    },
    "NllLossBackward0": {
        BASIC: sample(lambda x: F.nll_loss(x, TARGETS), x=real(3, 4)),
        "sum": sample(lambda x: F.nll_loss(x, TARGETS, reduction="sum"), x=real(3, 4)),
        "none": sample(lambda x: F.nll_loss(x, TARGETS, reduction="none"), x=real(3, 4)),
        "weight": sample(lambda x: F.nll_loss(x, TARGETS, weight=CLASS_WEIGHT), x=real(3, 4)),
        "weight-none": sample(lambda x: F.nll_loss(x, TARGETS, weight=CLASS_WEIGHT, reduction="none"),
                              x=real(3, 4)),
        "ignore-index": sample(lambda x: F.nll_loss(x, IGNORED), x=real(3, 4)),
        "ignore-index-none": sample(lambda x: F.nll_loss(x, IGNORED, reduction="none"), x=real(3, 4)),
        "one-row": sample(lambda x: F.nll_loss(x, TARGETS[1]), x=real(4)),
        "cross-entropy": sample(lambda x: F.cross_entropy(x, TARGETS, weight=CLASS_WEIGHT), x=real(3, 4)),
    },
    "NllLoss2DBackward0": {
        BASIC: sample(lambda x: F.nll_loss(x, TARGETS_2D), x=real(2, 3, 2, 2)),
        "none": sample(lambda x: F.nll_loss(x, TARGETS_2D, reduction="none"), x=real(2, 3, 2, 2)),
        "weight-sum": sample(lambda x: F.nll_loss(x, TARGETS_2D, weight=CLASS_WEIGHT[:3], reduction="sum"),
                             x=real(2, 3, 2, 2)),
        "cross-entropy": sample(lambda x: F.cross_entropy(x, TARGETS_2D), x=real(2, 3, 2, 2)),
    },
    # --- sum and mean along a dim of a 0-dim tensor (rules/reductions.py) ---
    "SumBackward1": {"zero-dim": sample(lambda x: x.sum(-1), x=real())},
    "MeanBackward1": {"zero-dim-keepdim": sample(lambda x: x.mean(0, keepdim=True), x=real())},
    # --- running sums and products (rules/accumulate.py) ---
    "CumsumBackward0": {
        BASIC: sample(lambda x: x.cumsum(1), x=real(3, 4)),
        "negative-dim": sample(lambda x: x.cumsum(-1), x=real(2, 3, 4)),
        "scalar": sample(lambda x: x.cumsum(0), x=real()),
    },
    "CumprodBackward0": {
        BASIC: sample(lambda x: x.cumprod(1), x=real(3, 4)),
        "negative-dim": sample(lambda x: x.cumprod(-2), x=real(2, 3, 4)),
        "zeros": sample(lambda x: x.cumprod(1), x=zeros(3, 4)),
    },
    "ProdBackward0": {
        BASIC: sample(torch.prod, x=real(3, 4)),
        "one-zero": sample(torch.prod, x=one_zero(3, 4)),
        "zeros": sample(torch.prod, x=zeros(3, 4)),
    },
    "ProdBackward1": {
        BASIC: sample(lambda x: x.prod(1), x=real(3, 4)),
        "keepdim": sample(lambda x: x.prod(-1, keepdim=True), x=real(3, 4)),
        "negative-dim": sample(lambda x: x.prod(-2), x=real(2, 3, 4)),
        "one-zero": sample(lambda x: x.prod(1), x=one_zero(3, 4)),
        "zeros": sample(lambda x: x.prod(1), x=zeros(3, 4)),
    },
    "NansumBackward0": {
        BASIC: sample(torch.nansum, x=real(3, 4)),
        "dim": sample(lambda x: x.nansum(1), x=real(3, 4)),
        "dims-keepdim": sample(lambda x: x.nansum((0, -1), keepdim=True), x=real(2, 3, 4)),
    },
    # --- norms (rules/normalization.py) ---
    "LinalgVectorNormBackward0": {
        BASIC: sample(torch.linalg.vector_norm, x=real(3, 4)),
        "dim": sample(lambda x: torch.linalg.vector_norm(x, dim=1), x=real(3, 4)),
        "keepdim": sample(lambda x: torch.linalg.vector_norm(x, dim=-1, keepdim=True), x=real(3, 4)),
        "dims": sample(lambda x: torch.linalg.vector_norm(x, dim=(0, -1)), x=real(2, 3, 4)),
        "ord-1": sample(lambda x: torch.linalg.vector_norm(x, 1, dim=1), x=real(3, 4)),
        "ord-3": sample(lambda x: torch.linalg.vector_norm(x, 3, dim=1), x=real(3, 4)),
        "ord-half": sample(lambda x: torch.linalg.vector_norm(x, 0.5, dim=1), x=real(3, 4)),
        "ord-0": sample(lambda x: torch.linalg.vector_norm(x, 0, dim=1) + x.sum(), x=real(3, 4)),
        "ord-inf": sample(lambda x: torch.linalg.vector_norm(x, float("inf"), dim=1), x=real(3, 4)),
        "ord-minus-inf": sample(lambda x: torch.linalg.vector_norm(x, -float("inf"), dim=1), x=real(3, 4)),
        "inf-ties": sample(lambda x: torch.linalg.vector_norm(x, float("inf"), dim=1), x=ties(3, 4)),
        "zero-vector": sample(lambda x: torch.linalg.vector_norm(x, dim=1), x=zero_row(3, 4)),
        "zero-vector-ord-3": sample(lambda x: torch.linalg.vector_norm(x, 3, dim=1), x=zero_row(3, 4)),
        "zeros-ord-half": sample(lambda x: torch.linalg.vector_norm(x, 0.5, dim=1), x=zeros(3, 4)),
        "zeros-ord-1": sample(lambda x: torch.linalg.vector_norm(x, 1, dim=1), x=zeros(3, 4)),
        "zeros-ord-3": sample(lambda x: torch.linalg.vector_norm(x, 3, dim=1), x=zeros(3, 4)),
    },
    "NormBackward0": {BASIC: sample(lambda x: aten.norm.Scalar(x, 3), x=real(3, 4))},
    "NormBackward1": {
        BASIC: sample(lambda x: aten.norm.ScalarOpt_dim(x, 3, [1]), x=real(3, 4)),
        "keepdim": sample(lambda x: aten.norm.ScalarOpt_dim(x, 2, [-1], True), x=real(3, 4)),
        "pairwise-distance": sample(F.pairwise_distance, x=real(3, 4), y=real(3, 4)),
    },
    "NormBackward2": {BASIC: sample(lambda x: aten.norm.ScalarOpt_dtype(x, 3, dtype=DTYPE), x=real(3, 4))},
    "NormBackward3": {
        BASIC: sample(lambda x: aten.norm.ScalarOpt_dim_dtype(x, 1, [0, -1], False, dtype=DTYPE), x=real(2, 3, 4)),
    },
    "DistBackward0": {
        BASIC: sample(torch.dist, x=real(3, 4), y=real(3, 4)),
        "p-1": sample(lambda x, y: torch.dist(x, y, 1), x=real(3, 4), y=real(3, 4)),
        "p-inf": sample(lambda x, y: torch.dist(x, y, float("inf")), x=real(3, 4), y=real(3, 4)),
        "broadcast": sample(lambda x, y: torch.dist(x, y, 3), x=real(3, 4), y=real(4)),
    },
    "CdistBackward0": {
        BASIC: sample(torch.cdist, x=real(3, 2), y=real(4, 2)),
        "batched": sample(torch.cdist, x=real(2, 3, 2), y=real(2, 4, 2)),
        "p-1": sample(lambda x, y: torch.cdist(x, y, 1), x=real(3, 2), y=real(4, 2)),
        "p-3": sample(lambda x, y: torch.cdist(x, y, 3), x=real(3, 2), y=real(4, 2)),
    },
    "PdistBackward0": {
        BASIC: sample(F.pdist, x=real(4, 3)),
        "p-1": sample(lambda x: F.pdist(x, 1), x=real(4, 3)),
        "p-inf": sample(lambda x: F.pdist(x, float("inf")), x=real(3, 2)),
    },
    "RenormBackward0": {
        BASIC: sample(lambda x: x.renorm(2, 0, 1.0), x=real(3, 4)),
        "negative-dim-p-1": sample(lambda x: x.renorm(1, -1, 1.5), x=real(3, 4)),
        "nothing-scaled": sample(lambda x: x.renorm(2, 0, 100.0), x=real(3, 4)),
    },
    # --- moments ---
    "VarBackward0": {
        BASIC: sample(torch.var, x=real(3, 4)),
        "dim": sample(lambda x: x.var(1), x=real(3, 4)),
        "keepdim": sample(lambda x: x.var(-1, keepdim=True), x=real(3, 4)),
        "dims": sample(lambda x: x.var((0, -1)), x=real(2, 3, 4)),
        "correction": sample(lambda x: torch.var(x, 1, correction=0), x=real(3, 4)),
        "fractional-correction": sample(lambda x: aten.var.correction(x, [1], correction=2.5), x=real(3, 4)),
    },
    "StdBackward0": {
        BASIC: sample(torch.std, x=real(3, 4)),
        "keepdim": sample(lambda x: x.std(-1, keepdim=True), x=real(3, 4)),
        "dims": sample(lambda x: x.std((0, 2), correction=0), x=real(2, 3, 4)),
        "constant-row": sample(lambda x: (x * 0 + 1).std(1) + x.sum(), x=real(3, 4)),
    },
    "VarMeanBackward0": {
        BASIC: sample(lambda x: _all_outputs(torch.var_mean(x, 1)), x=real(3, 4)),
        "keepdim": sample(lambda x: _all_outputs(torch.var_mean(x, -1, keepdim=True)), x=real(3, 4)),
        "mean-only": sample(lambda x: torch.var_mean(x, (0, 2))[1], x=real(2, 3, 4)),
        "var-only": sample(lambda x: torch.var_mean(x)[0], x=real(3, 4)),
    },
    "StdMeanBackward0": {
        BASIC: sample(lambda x: _all_outputs(torch.std_mean(x, 1)), x=real(3, 4)),
        "correction": sample(lambda x: _all_outputs(torch.std_mean(x, -1, correction=0, keepdim=True)),
                             x=real(3, 4)),
    },
    # --- normalization layers ---
    "NativeLayerNormBackward0": {
        BASIC: sample(lambda x, w, b: F.layer_norm(x, (4,), w, b), x=real(3, 4), w=real(4), b=real(4)),
        "no-affine": sample(lambda x: F.layer_norm(x, (4,)), x=real(3, 4)),
        "weight-only": sample(lambda x, w: F.layer_norm(x, (4,), w), x=real(3, 4), w=real(4)),
        "two-dims": sample(lambda x, w, b: F.layer_norm(x, (3, 4), w, b, eps=0.1),
                           x=real(2, 3, 4), w=real(3, 4), b=real(3, 4)),
        "all-outputs": sample(lambda x, w, b: _all_outputs(aten.native_layer_norm(x, (4,), w, b, 1e-5)),
                              x=real(3, 4), w=real(4), b=real(4)),
    },
    "NativeGroupNormBackward0": {
        BASIC: sample(lambda x, w, b: F.group_norm(x, 2, w, b), x=real(2, 4, 3), w=real(4), b=real(4)),
        "no-affine": sample(lambda x: F.group_norm(x, 2), x=real(2, 4, 3)),
        "images": sample(lambda x, w, b: F.group_norm(x, 3, w, b, eps=0.5),
                         x=real(2, 6, 2, 2), w=real(6), b=real(6)),
        # mean and rstd are outputs with gradients too (torch drops theirs
        # unless both reach the node: only the case of all three is sampled)
        "all-outputs": sample(lambda x, w, b: _all_outputs(
            (t.sum() for t in aten.native_group_norm(x, w, b, 2, 4, 3, 2, 1e-5))),
            x=real(2, 4, 3), w=real(4), b=real(4)),
    },
    "NativeBatchNormBackward0": {
        BASIC: sample(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                      x=real(4, 3), w=real(3), b=real(3)),
        "images": sample(lambda x, w, b: F.batch_norm(x, *running(), w, b, training=True, eps=0.1),
                         x=real(2, 3, 2, 2), w=real(3), b=real(3)),
        "eval": sample(lambda x, w, b: F.batch_norm(x, *running(), w, b, training=False),
                       x=real(2, 3, 4), w=real(3), b=real(3)),
        "no-affine": sample(lambda x: F.batch_norm(x, None, None, training=True), x=real(4, 3)),
        "all-outputs": sample(lambda x, w, b: _all_outputs(
            (aten.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5)[0],)
            + tuple(t.sum() for t in aten.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5)[1:])),
            x=real(4, 3), w=real(3), b=real(3)),
    },
    "NativeBatchNormLegitBackward0": {
        BASIC: sample(lambda x, w, b: aten._native_batch_norm_legit(x, w, b, *running(), True, 0.1, 1e-5)[0],
                      x=real(4, 3), w=real(3), b=real(3)),
        "eval": sample(lambda x, w, b: aten._native_batch_norm_legit(x, w, b, *running(), False, 0.1, 1e-5)[0],
                       x=real(4, 3), w=real(3), b=real(3)),
    },
    "NativeBatchNormLegitNoTrainingBackward0": {
        BASIC: sample(lambda x, w, b: aten._native_batch_norm_legit_no_training(x, w, b, *running(), 0.1, 1e-5)[0],
                      x=real(4, 3), w=real(3), b=real(3)),
    },
    "BatchNormWithUpdateBackward0": {
        BASIC: sample(lambda x, w, b: aten._batch_norm_with_update(x, w, b, *running(), 0.1, 1e-5)[0],
                      x=real(4, 3, 2), w=real(3), b=real(3)),
    },
    "BatchNormNoUpdateBackward0": {
        BASIC: sample(lambda x, w, b: aten._batch_norm_no_update(x, w, b, *running(), 0.1, 1e-5)[0],
                      x=real(4, 3), w=real(3), b=real(3)),
    },
}
