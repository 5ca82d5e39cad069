"""Samples for the rows of issue #9 part 4: glu, bilinear, the margin losses,
dropout's backward kernel, lu_unpack, the random samples, frexp, grid_sample
and antialiased bilinear upsampling.

Random ops draw their sample from a generator seeded here, so the sample is
the same on every run; their gradient is 0 whatever was drawn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rule_sampling import BASIC, FLOAT32, Domain, constant, positive, probability, real, sample

aten = torch.ops.aten


def _seeded(draw):
    """`draw` with torch's global generator seeded, so the sample repeats."""
    def build(*leaves):
        torch.manual_seed(3)
        return draw(*leaves)
    return build


DROPOUT_MASK = torch.tensor([[True, False, True], [True, True, False]])

SAMPLES = {
    "BernoulliBackward0": {BASIC: sample(_seeded(torch.bernoulli), p=probability(2, 3))},
    "BernoulliBackward1": {BASIC: sample(_seeded(lambda x, p: (x * 1).bernoulli_(p)), x=real(4), p=probability(4))},
    "BernoulliBackward2": {BASIC: sample(_seeded(lambda x: (x * 1).bernoulli_(0.3)), x=real(4))},
    "NormalBackward0": {BASIC: sample(_seeded(lambda x: (x * 1).normal_(1.0, 2.0)), x=real(4))},
    "NormalBackward1": {BASIC: sample(_seeded(lambda m: torch.normal(m, 2.0)), m=real(2, 3))},
    "NormalBackward2": {BASIC: sample(_seeded(lambda s: torch.normal(1.0, s)), s=positive(2, 3))},
    "NormalBackward3": {
        BASIC: sample(_seeded(torch.normal), m=real(2, 3), s=positive(2, 3)),
        "broadcast": sample(_seeded(torch.normal), m=real(3), s=positive(2, 3)),
    },
    "NativeDropoutBackwardBackward0": {
        BASIC: sample(lambda g: aten.native_dropout_backward(g, DROPOUT_MASK, 2.0), g=real(2, 3)),
        "scale-0": sample(lambda g: aten.native_dropout_backward(g, DROPOUT_MASK, 0.0), g=real(2, 3)),
    },
    "FrexpBackward0": {
        BASIC: sample(lambda x: torch.frexp(x * 7)[0], x=real(3, 4)),
        "float32": sample(lambda x: torch.frexp(x * 7)[0], x=(FLOAT32, (3, 4))),
    },
}


def _lu_unpacked(a):
    """lu_unpack of a packed LU that is a leaf itself: L and U weighted together."""
    pivots = torch.arange(1, min(a.shape[-2:]) + 1, dtype=torch.int32).expand(a.shape[:-2] + (-1,))
    _, lower, upper = torch.lu_unpack(a, pivots)
    return torch.cat([lower.reshape(-1), 2 * upper.reshape(-1)])


SAMPLES.update({
    "LuUnpackBackward0": {
        BASIC: sample(_lu_unpacked, a=real(3, 3)),
        "wide": sample(_lu_unpacked, a=real(3, 5)),
        "tall-batched": sample(_lu_unpacked, a=real(2, 4, 3)),
        "L-only": sample(lambda a: _lu_unpacked(a)[:6], a=real(3, 3)),
    },
})

SAMPLES.update({
    "GluBackward0": {
        BASIC: sample(lambda x: F.glu(x, -1), x=real(3, 4)),
        "dim-0": sample(lambda x: F.glu(x, 0), x=real(6, 2, 3)),
        "middle-dim": sample(lambda x: F.glu(x, 1), x=real(2, 6, 3)),
        "vector": sample(F.glu, x=real(2)),
        "module": sample(torch.nn.GLU(1), x=real(5, 6, 7)),
    },
})


def ints(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


CLASSES = ints(1, 0, 3)  # a target class for each of 3 samples of 4 classes
LABELS = torch.tensor([[3, 0, -1, 1], [1, 2, 3, -1], [-1, 0, 1, 2]])  # class lists, ended by -1
CLASS_WEIGHTS = constant(4, low=0.5, high=2.0, seed=11)

SAMPLES.update({
    "MultiMarginLossBackward0": {
        BASIC: sample(lambda x: F.multi_margin_loss(x, CLASSES), x=real(3, 4)),
        "p-2": sample(lambda x: F.multi_margin_loss(x, CLASSES, p=2), x=real(3, 4)),
        "margin-weight": sample(lambda x: F.multi_margin_loss(x, CLASSES, margin=0.7, weight=CLASS_WEIGHTS), x=real(3, 4)),
        "sum": sample(lambda x: F.multi_margin_loss(x, CLASSES, p=2, reduction="sum"), x=real(3, 4)),
        "none": sample(lambda x: F.multi_margin_loss(x, CLASSES, weight=CLASS_WEIGHTS, reduction="none"),
                       x=real(3, 4)),
        "one-sample": sample(lambda x: F.multi_margin_loss(x, ints(2)), x=real(4)),
        "float32": sample(lambda x: F.multi_margin_loss(x, CLASSES, p=2), x=(FLOAT32, (3, 4))),
    },
    "MultilabelMarginLossBackward0": {
        BASIC: sample(lambda x: F.multilabel_margin_loss(x, LABELS), x=real(3, 4)),
        "sum": sample(lambda x: F.multilabel_margin_loss(x, LABELS, reduction="sum"), x=real(3, 4)),
        "none": sample(lambda x: F.multilabel_margin_loss(x, LABELS, reduction="none"), x=real(3, 4)),
        "one-sample": sample(lambda x: F.multilabel_margin_loss(x, ints(2, 2, 0, -1)), x=real(4)),
        "float32": sample(lambda x: F.multilabel_margin_loss(x, LABELS), x=(FLOAT32, (3, 4))),
    },
})

SAMPLES.update({
    "TrilinearBackward0": {
        BASIC: sample(F.bilinear, x1=real(2, 3), x2=real(2, 4), w=real(5, 3, 4)),
        "bias": sample(F.bilinear, x1=real(2, 3), x2=real(2, 4), w=real(5, 3, 4), b=real(5)),
        "unbatched": sample(F.bilinear, x1=real(3), x2=real(4), w=real(5, 3, 4)),
        "batch-dims": sample(F.bilinear, x1=real(2, 2, 3), x2=real(2, 2, 4), w=real(1, 3, 4)),
        "trilinear-broadcast": sample(lambda a, b, c: torch._trilinear(a, b, c, [1], [0], [], [2]),
                                      a=real(3, 4), b=real(5, 4), c=real(3, 5, 4)),
        "float32": sample(F.bilinear, x1=(FLOAT32, (2, 3)), x2=(FLOAT32, (2, 4)), w=(FLOAT32, (5, 3, 4))),
    },
})


def _antialiased(**options):
    return lambda x: F.interpolate(x, mode="bilinear", antialias=True, **options)


SAMPLES.update({
    "UpsampleBilinear2DAaBackward0": {
        BASIC: sample(_antialiased(size=(3, 4)), x=real(1, 2, 7, 9)),
        "grow": sample(_antialiased(size=(6, 5)), x=real(2, 1, 3, 4)),
        "align-corners": sample(_antialiased(size=(3, 5), align_corners=True), x=real(1, 2, 7, 4)),
        "align-corners-grow": sample(_antialiased(size=(5, 7), align_corners=True), x=real(1, 1, 3, 4)),
        "scale-factor": sample(_antialiased(scale_factor=(0.6, 1.7)), x=real(1, 2, 6, 5)),
        "float32": sample(_antialiased(size=(4, 3)), x=(FLOAT32, (1, 2, 9, 8))),
    },
})


def _sampled(**options):
    return lambda x, grid: F.grid_sample(x, grid, **options)


_GRID_CASES = {}
for _mode in ("bilinear", "nearest", "bicubic"):
    for _padding in ("zeros", "border", "reflection"):
        for _align in (False, True):
            _name = f"{_mode}-{_padding}" + ("-align-corners" if _align else "")
            _GRID_CASES[_name] = sample(_sampled(mode=_mode, padding_mode=_padding, align_corners=_align),
                                        x=real(2, 2, 4, 5), grid=(Domain(-1.3, 1.3), (2, 3, 2, 2)))
_GRID_CASES[BASIC] = _GRID_CASES.pop("bilinear-zeros")
_GRID_CASES["float32"] = sample(_sampled(align_corners=False), x=(FLOAT32, (1, 2, 4, 5)),
                                grid=(Domain(-1.0, 1.0, dtype=torch.float32), (1, 3, 2, 2)))

_GRID_CASES_3D = {}
for _mode in ("bilinear", "nearest"):
    for _padding in ("zeros", "border", "reflection"):
        for _align in (False, True):
            _name = f"{_mode}-{_padding}" + ("-align-corners" if _align else "")
            _GRID_CASES_3D[_name] = sample(_sampled(mode=_mode, padding_mode=_padding, align_corners=_align),
                                           x=real(1, 2, 3, 4, 3), grid=(Domain(-1.3, 1.3), (1, 2, 2, 1, 3)))
_GRID_CASES_3D[BASIC] = _GRID_CASES_3D.pop("bilinear-zeros")

SAMPLES.update({"GridSampler2DBackward0": _GRID_CASES, "GridSampler3DBackward0": _GRID_CASES_3D})

SAMPLES["GluBackward0"]["float32"] = sample(lambda x: F.glu(x, -1), x=(FLOAT32, (3, 4)))
# a grid computed from a leaf (AffineGridGeneratorBackward0, affine_grid's node, has no row yet)
SAMPLES["GridSampler2DBackward0"]["computed-grid"] = sample(
    lambda x, g: F.grid_sample(x, 1.2 * torch.tanh(g), mode="bicubic", padding_mode="reflection", align_corners=False),
    x=real(2, 2, 4, 5), g=real(2, 3, 2, 2))
SAMPLES["GridSampler3DBackward0"]["computed-grid"] = sample(
    lambda x, g: F.grid_sample(x, 1.2 * torch.tanh(g), padding_mode="border", align_corners=True),
    x=real(1, 2, 3, 4, 3), g=real(1, 2, 2, 1, 3))
