"""Samples for the routing rows that move, pick, write and add up elements:
shape ops (rules/shape.py) and indexing ops (rules/indexing.py).

Index tensors are fixed constants. Named cases cover what the general
mechanism has to get right: several inputs (cat, scatter's self and src),
constant inputs whose size torch did not keep, several outputs with some
left unused (split, unbind), elements that come from no input (padding,
tril), indices that repeat (scatter_add, index_put with accumulate), and
ties (max(), amax), where torch shares the gradient evenly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rule_sampling import BASIC, constant, real, sample

aten = torch.ops.aten


def ints(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def mask(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


ROWS_OF_3 = torch.tensor([[0, 2, 1], [2, 2, 0]])  # a gather/scatter index for (2, 3) tensors
REPEATED = ints(0, 2, 0)  # an index that repeats
WINDOW_OFFSETS_2D = constant(1, 2, 2, low=0, high=1)  # fractional_max_pool's random window offsets, fixed
WINDOW_OFFSETS_3D = constant(1, 1, 3, low=0, high=1)


def _spaced(x: torch.Tensor) -> torch.Tensor:
    """x plus a ramp that keeps its elements far apart, so that sort, max
    and median have no near-ties."""
    return x + torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape).flip(-1) * 5


SAMPLES = {
    # --- several inputs ------------------------------------------------------------
    "CatBackward0": {
        BASIC: sample(lambda x, y: torch.cat([x, y], 1), x=real(2, 3), y=real(2, 2)),
        "constant-between": sample(lambda x, y: torch.cat([x, constant(1, 3), y]), x=real(2, 3), y=real(3, 3)),
        "negative-dim": sample(lambda x, y: torch.cat([x, y], -1), x=real(2, 1), y=real(2, 2)),
        "one-tensor": sample(lambda x: torch.cat([x]), x=real(3)),
        "same-tensor-twice": sample(lambda x: torch.cat([x, x]), x=real(2, 2)),
    },
    "StackBackward0": {
        BASIC: sample(lambda x, y: torch.stack([x, y]), x=real(2, 3), y=real(2, 3)),
        "last-dim": sample(lambda x, y: torch.stack([x, constant(2, 3), y], -1), x=real(2, 3), y=real(2, 3)),
    },
    "BlockDiagBackward0": {
        BASIC: sample(torch.block_diag, x=real(2, 3), y=real(1, 2)),
        "vector-and-scalar": sample(lambda x, v, s: torch.block_diag(x, v, s), x=real(2, 2), v=real(3), s=real()),
    },
    # --- several outputs -------------------------------------------------------------
    "SplitBackward0": {
        BASIC: sample(lambda x: (lambda a, b, c: a * 2 + c)(*x.split(2, 1)), x=real(3, 6)),
        "uneven": sample(lambda x: (lambda a, b, c: torch.cat([c, a], 1))(*x.split(2, 1)), x=real(3, 5)),
        "chunk": sample(lambda x: x.chunk(3)[1], x=real(6, 2)),
    },
    "UnsafeSplitBackward0": {BASIC: sample(lambda x: torch.unsafe_split(x, 2, 1)[1], x=real(3, 5))},
    "SplitWithSizesBackward0": {
        BASIC: sample(lambda x: (lambda a, b: torch.cat([b, a], 1))(*x.split([1, 3], 1)), x=real(2, 4)),
        "unused-output": sample(lambda x: x.split([2, 1, 1], 0)[1], x=real(4, 2)),
    },
    "UnsafeSplitWithSizesBackward0": {
        BASIC: sample(lambda x: aten.unsafe_split_with_sizes(x, [2, 2], 1)[0], x=real(2, 4)),
    },
    "UnbindBackward0": {
        BASIC: sample(lambda x: torch.stack(x.unbind(1)[::-1]), x=real(2, 3)),
        "unused-outputs": sample(lambda x: x.unbind(0)[1], x=real(3, 2)),
    },
    # --- copies of views ---------------------------------------------------------
    "AliasBackward0_copy": {BASIC: sample(aten.alias_copy, x=real(3))},
    # lift_fresh_copy hands back a new tensor; a leaf would stop being one.
    "LiftFreshBackward0_copy": {BASIC: sample(lambda x: aten.lift_fresh_copy(x * 1), x=real(3))},
    "ViewBackward0_copy": {BASIC: sample(lambda x: aten.view_copy(x, (6,)), x=real(2, 3))},
    "ReshapeAliasBackward0_copy": {
        BASIC: sample(lambda x: aten._reshape_alias_copy(x, (3, 2), (2, 1)), x=real(2, 3)),
    },
    "ExpandBackward0_copy": {BASIC: sample(lambda x: aten.expand_copy(x, (2, 3, 4)), x=real(3, 1))},
    "TBackward0_copy": {BASIC: sample(aten.t_copy, x=real(2, 3))},
    "TransposeBackward0_copy": {BASIC: sample(lambda x: aten.transpose_copy(x, 0, -1), x=real(2, 3, 4))},
    "PermuteBackward0_copy": {BASIC: sample(lambda x: aten.permute_copy(x, (2, 0, 1)), x=real(2, 3, 4))},
    "SqueezeBackward0_copy": {BASIC: sample(aten.squeeze_copy, x=real(3, 1, 2))},
    "SqueezeBackward1_copy": {BASIC: sample(lambda x: aten.squeeze_copy(x, 1), x=real(3, 1, 2))},
    "SqueezeBackward2_copy": {BASIC: sample(lambda x: aten.squeeze_copy(x, (0, 2)), x=real(1, 3, 1))},
    "UnsqueezeBackward0_copy": {BASIC: sample(lambda x: aten.unsqueeze_copy(x, -1), x=real(2, 3))},
    "SelectBackward0_copy": {BASIC: sample(lambda x: aten.select_copy(x, 1, -1), x=real(2, 3))},
    "SliceBackward0_copy": {BASIC: sample(lambda x: aten.slice_copy(x, 1, 1, 3), x=real(2, 4))},
    "DiagonalBackward0_copy": {
        BASIC: sample(lambda x: aten.diagonal_copy(x, 1), x=real(3, 4)),
        "diag-of-matrix": sample(lambda x: torch.diag(x, -1), x=real(3, 3)),
    },
    "UnfoldBackward0_copy": {BASIC: sample(lambda x: aten.unfold_copy(x, 1, 2, 1), x=real(2, 4))},
    "AsStridedBackward0_copy": {BASIC: sample(lambda x: aten.as_strided_copy(x, (2, 2), (1, 2), 1), x=real(2, 3))},
    "SplitBackward0_copy": {BASIC: sample(lambda x: aten.split_copy(x, 2, 1)[2], x=real(2, 5))},
    "SplitWithSizesBackward0_copy": {
        BASIC: sample(lambda x: aten.split_with_sizes_copy(x, [1, 2], 0)[1], x=real(3, 2)),
    },
    "UnbindBackward0_copy": {BASIC: sample(lambda x: torch.stack(aten.unbind_copy(x, 1)), x=real(2, 3))},
    # --- move elements -------------------------------------------------------------
    "NarrowCopyBackward0": {
        BASIC: sample(lambda x: x.narrow_copy(1, 1, 2), x=real(2, 4)),
        "from-the-end": sample(lambda x: x.narrow_copy(0, 1, 2), x=real(3, 2)),
    },
    "UnfoldBackward0": {
        BASIC: sample(lambda x: x.unfold(1, 2, 1), x=real(2, 4)),
        "step": sample(lambda x: x.unfold(0, 2, 3), x=real(7, 2)),
    },
    "AsStridedBackward0": {
        BASIC: sample(lambda x: x.as_strided((2, 2), (1, 2), 1), x=real(2, 3)),
        "overlapping": sample(lambda x: x.as_strided((3, 3), (1, 1)), x=real(5)),
    },
    "FlipBackward0": {
        BASIC: sample(lambda x: x.flip(1), x=real(2, 3)),
        "two-dims": sample(lambda x: x.flip(0, -1), x=real(2, 3, 2)),
    },
    "RollBackward0": {
        BASIC: sample(lambda x: x.roll(1, 1), x=real(2, 3)),
        "flattened": sample(lambda x: x.roll(4), x=real(2, 3)),
        "two-dims": sample(lambda x: x.roll((1, -1), (0, 1)), x=real(2, 3)),
    },
    "Rot90Backward0": {
        BASIC: sample(lambda x: x.rot90(1, (0, 1)), x=real(2, 3)),
        "backwards": sample(lambda x: x.rot90(-1, (1, 2)), x=real(2, 3, 4)),
        "twice": sample(lambda x: x.rot90(2), x=real(2, 3)),
    },
    "RepeatBackward0": {
        BASIC: sample(lambda x: x.repeat(2, 3), x=real(2, 3)),
        "new-dims": sample(lambda x: x.repeat(2, 1, 2), x=real(3)),
    },
    "DiagonalBackward0": {
        BASIC: sample(torch.diagonal, x=real(3, 3)),
        "offset": sample(lambda x: x.diagonal(1), x=real(3, 4)),
        "negative-offset": sample(lambda x: x.diagonal(-1), x=real(3, 4)),
        "batch-dims": sample(lambda x: x.diagonal(0, 0, 2), x=real(3, 2, 3)),
    },
    "DiagEmbedBackward0": {
        BASIC: sample(torch.diag_embed, x=real(2, 3)),
        "offset": sample(lambda x: torch.diag_embed(x, 1, 0, 2), x=real(2, 3)),
        "negative-offset": sample(lambda x: torch.diag_embed(x, -2), x=real(3)),
        "diag": sample(torch.diag, x=real(3)),
        "dims-swapped": sample(lambda x: torch.diag_embed(x, 1, 2, 0), x=real(2, 3)),
    },
    "TrilBackward0": {
        BASIC: sample(torch.tril, x=real(3, 4)),
        "diagonal": sample(lambda x: x.tril(-1), x=real(2, 3, 3)),
    },
    "TriuBackward0": {
        BASIC: sample(torch.triu, x=real(3, 4)),
        "diagonal": sample(lambda x: x.triu(1), x=real(2, 4, 3)),
    },
    "ConstantPadNdBackward0": {
        BASIC: sample(lambda x: F.pad(x, (1, 2)), x=real(2, 3)),
        "value": sample(lambda x: F.pad(x, (1, 0, 0, 2), value=3.5), x=real(2, 3)),
        "negative-pad-crops": sample(lambda x: F.pad(x, (-1, 1, 1, -1)), x=real(3, 4)),
    },
    "ReflectionPad1DBackward0": {
        BASIC: sample(lambda x: F.pad(x, (2, 1), mode="reflect"), x=real(2, 4)),
        "negative-pad": sample(lambda x: F.pad(x, (-1, 2), mode="reflect"), x=real(2, 5)),
    },
    "ReflectionPad2DBackward0": {BASIC: sample(lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"), x=real(1, 3, 4))},
    "ReflectionPad3DBackward0": {
        BASIC: sample(lambda x: F.pad(x, (1, 0, 1, 1, 0, 1), mode="reflect"), x=real(1, 2, 2, 3)),
    },
    "ReplicationPad1DBackward0": {
        BASIC: sample(lambda x: F.pad(x, (2, 1), mode="replicate"), x=real(2, 3)),
        "negative-pad": sample(lambda x: F.pad(x, (-3, 2), mode="replicate"), x=real(2, 4)),
    },
    "ReplicationPad2DBackward0": {BASIC: sample(lambda x: F.pad(x, (1, 2, 2, 1), mode="replicate"), x=real(1, 2, 3))},
    "ReplicationPad3DBackward0": {
        BASIC: sample(lambda x: F.pad(x, (1, 0, 2, 1, 0, 1), mode="replicate"), x=real(1, 2, 2, 3)),
    },
    "PixelShuffleBackward0": {BASIC: sample(lambda x: F.pixel_shuffle(x, 2), x=real(1, 8, 2, 3))},
    "PixelUnshuffleBackward0": {BASIC: sample(lambda x: F.pixel_unshuffle(x, 2), x=real(1, 2, 4, 6))},
    "ChannelShuffleBackward0": {BASIC: sample(lambda x: F.channel_shuffle(x, 2), x=real(2, 4, 3))},
    "Im2ColBackward0": {
        BASIC: sample(lambda x: F.unfold(x, 2), x=real(1, 2, 3, 4)),
        "padding-stride-dilation": sample(lambda x: F.unfold(x, (2, 3), dilation=(2, 1), padding=1, stride=(1, 2)),
                                          x=real(2, 5, 4)),
    },
    "Col2ImBackward0": {
        BASIC: sample(lambda x: F.fold(x, (3, 3), 2), x=real(1, 8, 4)),
        "padding-stride": sample(lambda x: F.fold(x, (4, 5), 2, padding=1, stride=2), x=real(12, 9)),
    },
    "UpsampleNearest1DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, scale_factor=2), x=real(1, 2, 3)),
        "size": sample(lambda x: F.interpolate(x, size=7), x=real(1, 2, 3)),
        "shrink": sample(lambda x: F.interpolate(x, size=2), x=real(1, 1, 5)),
    },
    "UpsampleNearest2DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=(5, 4)), x=real(1, 2, 3, 3)),
        "scale": sample(lambda x: F.interpolate(x, scale_factor=(1.5, 0.7)), x=real(1, 1, 4, 5)),
    },
    "UpsampleNearest3DBackward0": {BASIC: sample(lambda x: F.interpolate(x, scale_factor=1.5), x=real(1, 1, 2, 3, 3))},
    "UpsampleNearestExact1DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=5, mode="nearest-exact"), x=real(1, 2, 3)),
        "scale": sample(lambda x: F.interpolate(x, scale_factor=2.5, mode="nearest-exact"), x=real(1, 1, 3)),
    },
    "UpsampleNearestExact2DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=(5, 2), mode="nearest-exact"), x=real(1, 2, 3, 3)),
    },
    "UpsampleNearestExact3DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=(3, 2, 5), mode="nearest-exact"), x=real(1, 1, 2, 3, 3)),
    },
    # --- averages and interpolation: fixed weights -------------------------------
    "AvgPool2DBackward0": {
        BASIC: sample(lambda x: F.avg_pool2d(x, 2), x=real(1, 2, 4, 4)),
        "padding-ceil-without-pad-count": sample(
            lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), x=real(1, 2, 5, 6)),
        "padding-counted": sample(lambda x: F.avg_pool2d(x, (2, 3), (1, 2), (1, 1)), x=real(2, 4, 5)),
        "divisor-override": sample(lambda x: F.avg_pool2d(x, 2, divisor_override=3), x=real(1, 1, 4, 4)),
        "avg_pool1d": sample(lambda x: F.avg_pool1d(x, 3, 2), x=real(2, 7)),
    },
    "AvgPool3DBackward0": {
        BASIC: sample(lambda x: F.avg_pool3d(x, 2), x=real(1, 1, 4, 4, 2)),
        "padding": sample(lambda x: F.avg_pool3d(x, 2, 1, 1, count_include_pad=False), x=real(1, 2, 3, 2)),
    },
    "AdaptiveAvgPool2DBackward0": {
        BASIC: sample(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), x=real(1, 2, 5, 5)),
        "adaptive_avg_pool1d": sample(lambda x: F.adaptive_avg_pool1d(x, 3), x=real(2, 7)),
    },
    "AdaptiveAvgPool3DBackward0": {BASIC: sample(lambda x: F.adaptive_avg_pool3d(x, 2), x=real(1, 3, 4, 5))},
    "UpsampleLinear1DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=5, mode="linear"), x=real(1, 2, 3)),
        "align-corners": sample(lambda x: F.interpolate(x, size=7, mode="linear", align_corners=True), x=real(1, 1, 4)),
        "scale": sample(lambda x: F.interpolate(x, scale_factor=0.6, mode="linear"), x=real(1, 1, 7)),
    },
    "UpsampleBilinear2DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=(4, 5), mode="bilinear"), x=real(1, 2, 3, 3)),
        "align-corners-scale": sample(lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear", align_corners=True),
                                      x=real(1, 1, 3, 2)),
    },
    "UpsampleTrilinear3DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=(2, 4, 5), mode="trilinear"), x=real(1, 1, 3, 3, 3)),
    },
    "UpsampleBicubic2DBackward0": {
        BASIC: sample(lambda x: F.interpolate(x, size=(4, 6), mode="bicubic"), x=real(1, 2, 3, 3)),
        "align-corners": sample(lambda x: F.interpolate(x, size=(5, 2), mode="bicubic", align_corners=True),
                                x=real(1, 1, 3, 4)),
    },
    "ZeroBackward0": {BASIC: sample(lambda x: torch.cat([x, x.clone().zero_()]), x=real(2, 3))},
    "FillBackward0": {BASIC: sample(lambda x: torch.cat([x, torch.fill(x, 2.5)]), x=real(2, 3))},
    "FillBackward2": {BASIC: sample(lambda x: torch.cat([x, x.clone().fill_(2.5)]), x=real(2, 3))},
    "FillBackward1": {BASIC: sample(lambda x, v: torch.fill(x, v), x=real(2, 3), v=real())},
    "FillBackward3": {BASIC: sample(lambda x, v: x.clone().fill_(v), x=real(2, 3), v=real())},
    "CopyBackwards": {
        BASIC: sample(lambda x, s: x.clone().copy_(s), x=real(2, 3), s=real(2, 3)),
        "broadcast": sample(lambda x, s: x.clone().copy_(s), x=real(2, 3), s=real(3)),
    },
    # --- write into a copy of self -------------------------------------------------
    "SliceScatterBackward0": {
        BASIC: sample(lambda x, s: torch.slice_scatter(x, s, 1, 0, 4, 2), x=real(2, 4), s=real(2, 2)),
        "constant-src": sample(lambda x: torch.slice_scatter(x, constant(1, 4), 0, 1, 2), x=real(3, 4)),
    },
    "SelectScatterBackward0": {
        BASIC: sample(lambda x, s: torch.select_scatter(x, s, 1, -1), x=real(2, 3), s=real(2)),
    },
    "DiagonalScatterBackward0": {
        BASIC: sample(lambda x, s: torch.diagonal_scatter(x, s, 1), x=real(3, 3), s=real(2)),
    },
    # --- pick elements by an index -----------------------------------------------
    "GatherBackward0": {
        BASIC: sample(lambda x: x.gather(1, ROWS_OF_3), x=real(2, 3)),
        "smaller-index": sample(lambda x: x.gather(0, ints(2, 0).reshape(1, 2)), x=real(3, 3)),
    },
    "IndexSelectBackward0": {
        BASIC: sample(lambda x: x.index_select(1, REPEATED), x=real(2, 3)),
        "scalar-index": sample(lambda x: x.index_select(0, torch.tensor(1)), x=real(2, 3)),
    },
    "IndexBackward0": {
        BASIC: sample(lambda x: x[ints(2, 0, 2)], x=real(3, 2)),
        "two-indices": sample(lambda x: x[ints(0, 1, 1), ints(2, 0, 2)], x=real(2, 3)),
        "after-a-slice": sample(lambda x: x[:, ints(1, 1)], x=real(2, 3)),
        "separated": sample(lambda x: x[ints(0, 1), :, ints(1, 0)], x=real(2, 3, 2)),
        "mask": sample(lambda x: x[mask(True, False, True)], x=real(3, 2)),
        "mask-of-all-dims": sample(lambda x: x[x.detach() > 0], x=real(3, 4)),
    },
    "UnsafeIndexBackward0": {BASIC: sample(lambda x: aten._unsafe_index(x, [ints(1, 0, 1), None]), x=real(2, 3))},
    "TakeBackward0": {BASIC: sample(lambda x: x.take(ints(5, 0, -1, 5)), x=real(2, 3))},
    "MaskedSelectBackward0": {
        BASIC: sample(lambda x: x.masked_select(mask([True, False, True], [False, False, True])), x=real(2, 3)),
        "broadcast-mask": sample(lambda x: x.masked_select(mask(True, False, True)), x=real(2, 3)),
    },
    "EmbeddingBackward0": {
        BASIC: sample(lambda w: F.embedding(ROWS_OF_3, w), w=real(3, 4)),
        "padding-row": sample(lambda w: F.embedding(ROWS_OF_3, w, padding_idx=2), w=real(3, 4)),
    },
    "MaxBackward0": {
        BASIC: sample(lambda x: _spaced(x).max(1)[0], x=real(2, 3)),
        "keepdim": sample(lambda x: _spaced(x).max(0, keepdim=True)[0], x=real(2, 3)),
    },
    "MinBackward0": {BASIC: sample(lambda x: _spaced(x).min(-1)[0], x=real(2, 3))},
    "KthvalueBackward0": {BASIC: sample(lambda x: _spaced(x).kthvalue(2, 1)[0], x=real(2, 3))},
    "MedianBackward1": {BASIC: sample(lambda x: _spaced(x).median(1, keepdim=True)[0], x=real(2, 4))},
    "NanmedianBackward1": {BASIC: sample(lambda x: _spaced(x).nanmedian(0)[0], x=real(3, 2))},
    "ModeBackward0": {BASIC: sample(lambda x: torch.cat([x, x[:, :1]], 1).mode(1)[0], x=real(2, 3))},
    "SortBackward0": {
        BASIC: sample(lambda x: x.sort(1)[0], x=real(2, 3)),
        "descending": sample(lambda x: x.sort(0, descending=True)[0], x=real(3, 2)),
    },
    "SortBackward1": {BASIC: sample(lambda x: x.sort(stable=True, dim=-1)[0], x=real(2, 3))},
    "TopkBackward0": {BASIC: sample(lambda x: x.topk(2, 1)[0], x=real(2, 4))},
    "CummaxBackward0": {BASIC: sample(lambda x: x.cummax(1)[0], x=real(2, 4))},
    "CumminBackward0": {BASIC: sample(lambda x: x.cummin(0)[0], x=real(3, 2))},
    "MaxPool2DWithIndicesBackward0": {
        BASIC: sample(lambda x: F.max_pool2d(x, 2), x=real(1, 2, 4, 4)),
        "overlapping-windows": sample(lambda x: F.max_pool2d(x, 3, stride=1, padding=1), x=real(2, 3, 3)),
        "max_pool1d": sample(lambda x: F.max_pool1d(x, 2), x=real(2, 5)),
    },
    "MaxPool3DWithIndicesBackward0": {BASIC: sample(lambda x: F.max_pool3d(x, 2), x=real(1, 1, 4, 4, 2))},
    "AdaptiveMaxPool2DBackward0": {BASIC: sample(lambda x: F.adaptive_max_pool2d(x, 2), x=real(1, 2, 5, 3))},
    "AdaptiveMaxPool3DBackward0": {BASIC: sample(lambda x: F.adaptive_max_pool3d(x, 2), x=real(1, 3, 3, 4))},
    "FractionalMaxPool2DBackward0": {
        BASIC: sample(lambda x: F.fractional_max_pool2d(x, 2, output_size=2, _random_samples=WINDOW_OFFSETS_2D),
                      x=real(1, 2, 5, 5)),
    },
    "FractionalMaxPool3DBackward0": {
        BASIC: sample(lambda x: F.fractional_max_pool3d(x, 2, output_size=2, _random_samples=WINDOW_OFFSETS_3D),
                      x=real(1, 1, 4, 4, 4)),
    },
    "MaxUnpool2DBackward0": {
        BASIC: sample(lambda x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2), x=real(1, 1, 4, 4)),
        "overlapping-windows": sample(lambda x: F.max_unpool2d(*F.max_pool2d(x, 3, 1, return_indices=True), 3, 1),
                                      x=real(1, 1, 4, 4)),
    },
    "MaxUnpool3DBackward0": {
        BASIC: sample(lambda x: F.max_unpool3d(*F.max_pool3d(x, 2, return_indices=True), 2), x=real(1, 1, 2, 4, 2)),
    },
    # ties share the gradient evenly
    "MaxBackward1": {
        BASIC: sample(torch.max, x=real(2, 3)),
        "ties": sample(lambda x: x.repeat(2, 1).max(), x=real(3)),
    },
    "MinBackward1": {
        BASIC: sample(torch.min, x=real(2, 3)),
        "ties": sample(lambda x: torch.cat([x, x, x[:1]]).min(), x=real(3)),
    },
    "MedianBackward0": {
        BASIC: sample(torch.median, x=real(2, 3)),
        "ties": sample(lambda x: x.repeat(3).median(), x=real(2)),
    },
    "NanmedianBackward0": {BASIC: sample(torch.nanmedian, x=real(5))},
    "AmaxBackward0": {
        BASIC: sample(lambda x: x.amax(1), x=real(2, 3)),
        "ties": sample(lambda x: x.repeat(1, 2).amax(-1, keepdim=True), x=real(2, 3)),
        "all-dims": sample(lambda x: torch.cat([x, x]).amax((0, 1)), x=real(2, 3)),
    },
    "AminBackward0": {
        BASIC: sample(lambda x: x.amin(0), x=real(2, 3)),
        "ties": sample(lambda x: x.expand(2, 3).amin(), x=real(3)),
    },
    "AminmaxBackward0": {
        BASIC: sample(lambda x: (lambda low, high: low * 2 + high)(*torch.aminmax(x, dim=1)), x=real(2, 3)),
        "all-with-ties": sample(lambda x: (lambda low, high: torch.stack([low, high]))(*torch.aminmax(x.repeat(2))),
                                x=real(3)),
        "max-unused": sample(lambda x: torch.aminmax(x, dim=0, keepdim=True)[0], x=real(2, 3)),
    },
    "MaxPool2DWithIndicesBackwardBackward0": {
        BASIC: sample(lambda g, x: aten.max_pool2d_with_indices_backward(
            g, x, [2, 2], [2, 2], [0, 0], [1, 1], False, F.max_pool2d(x.detach(), 2, return_indices=True)[1]),
            g=real(1, 1, 2, 2), x=real(1, 1, 4, 4)),
    },
    "MaxPool3DWithIndicesBackwardBackward0": {
        BASIC: sample(lambda g, x: aten.max_pool3d_with_indices_backward(
            g, x, [2, 2, 2], [1, 1, 1], [0, 0, 0], [1, 1, 1], False,
            F.max_pool3d(x.detach(), 2, 1, return_indices=True)[1]), g=real(1, 1, 1, 2, 2), x=real(1, 1, 2, 3, 3)),
    },
    # --- write and add into a copy of self ---------------------------------------
    "ScatterBackward0": {
        BASIC: sample(lambda x, s: x.scatter(1, ints(2, 0).reshape(1, 2), s), x=real(2, 3), s=real(1, 2)),
        "constant-self": sample(lambda s: torch.zeros(2, 3, dtype=s.dtype).scatter(0, ints(1, 0, 1).reshape(1, 3), s),
                                s=real(1, 3)),
        # Note [writes that collide]: both writes to (0, 2) get its gradient
        "repeated-index": sample(lambda x, s: x.scatter(1, ints(2, 2, 0).reshape(1, 3), s), x=real(2, 3), s=real(1, 3)),
    },
    "ScatterBackward1": {BASIC: sample(lambda x: x.scatter(1, ints(2, 0).reshape(1, 2), 1.5), x=real(2, 3))},
    "ScatterAddBackward0": {
        BASIC: sample(lambda x, s: x.scatter_add(1, ROWS_OF_3, s), x=real(2, 3), s=real(2, 3)),
        "smaller-index": sample(lambda x, s: x.scatter_add(0, ints(1, 1, 0).reshape(1, 3), s),
                                x=real(2, 3), s=real(1, 3)),
    },
    "IndexAddBackward0": {
        BASIC: sample(lambda x, s: x.index_add(1, REPEATED, s), x=real(2, 3), s=real(2, 3)),
        "alpha": sample(lambda x, s: x.index_add(0, ints(1, 1), s, alpha=-2.5), x=real(2, 3), s=real(2, 3)),
    },
    "IndexCopyBackward0": {
        BASIC: sample(lambda x, s: x.index_copy(1, ints(2, 0), s), x=real(2, 3), s=real(2, 2)),
        "repeated-index": sample(lambda x, s: x.index_copy(0, ints(1, 1), s), x=real(2, 3), s=real(2, 3)),
    },
    "IndexFillBackward0": {BASIC: sample(lambda x: x.index_fill(1, ints(2, 0), -1.5), x=real(2, 3))},
    "IndexFillBackward1": {BASIC: sample(lambda x, v: x.index_fill(1, ints(2, 0), v), x=real(2, 3), v=real())},
    "MaskedScatterBackward0": {
        BASIC: sample(lambda x, s: x.masked_scatter(mask([True, False, True], [False, True, True]), s),
                      x=real(2, 3), s=real(5)),
        "broadcast-mask": sample(lambda x, s: x.masked_scatter(mask(True, False, True), s), x=real(2, 3), s=real(6)),
    },
    "IndexPutBackward0": {
        BASIC: sample(lambda x, v: x.index_put((ints(2, 0),), v), x=real(3, 2), v=real(2, 2)),
        "accumulate": sample(lambda x, v: x.index_put((ints(0, 0, 1), ints(1, 1, 2)), v, accumulate=True),
                             x=real(2, 3), v=real(3)),
        "broadcast-values": sample(lambda x, v: x.index_put((mask(True, False, True),), v), x=real(3, 2), v=real(2)),
        "constant-values": sample(lambda x: x.index_put((ints(1),), constant(2)), x=real(3, 2)),
        "repeated-index": sample(lambda x, v: x.index_put((ints(0, 2, 0),), v), x=real(3, 2), v=real(3, 2)),
    },
    "UnsafeIndexPutBackward0": {
        BASIC: sample(lambda x, v: aten._unsafe_index_put(x, [ints(1, 0)], v), x=real(2, 3), v=real(2, 3)),
    },
    "IndexPutImplBackward0": {
        BASIC: sample(lambda x, v: aten._index_put_impl_(x.clone(), [ints(1)], v, True), x=real(2, 3), v=real(3)),
    },
    "PutBackward0": {
        BASIC: sample(lambda x, s: x.put(ints(0, 4), s), x=real(2, 3), s=real(2)),
        "repeated-index": sample(lambda x, s: x.put(ints(4, 1, 4), s), x=real(2, 3), s=real(3)),
        "accumulate": sample(lambda x, s: x.put(ints(5, 5, -1), s, accumulate=True), x=real(2, 3), s=real(3)),
    },
    "EmbeddingBagBackward0": {
        BASIC: sample(lambda w: F.embedding_bag(ints(0, 2, 2, 1), w, ints(0, 2), mode="sum"), w=real(3, 4)),
        "mean": sample(lambda w: F.embedding_bag(ints(0, 2, 2, 1, 0), w, ints(0, 3), mode="mean"), w=real(3, 4)),
        "max": sample(lambda w: F.embedding_bag(ints(0, 2, 2, 1), w, ints(0, 2), mode="max"), w=real(3, 4)),
        "padding-row": sample(lambda w: F.embedding_bag(ints(0, 2, 1, 1), w, ints(0, 2), mode="mean", padding_idx=1),
                              w=real(3, 4)),
        # Note [products of inputs]
        "per-sample-weights": sample(lambda w, p: F.embedding_bag(ints(0, 2, 2, 1), w, ints(0, 1), mode="sum",
                                                                  per_sample_weights=p), w=real(3, 4), p=real(4)),
    },
    "SegmentReduceBackward0": {
        BASIC: sample(lambda x: torch.segment_reduce(x, "sum", lengths=ints(2, 0, 3), initial=0.5), x=real(5)),
        "mean-of-rows": sample(lambda x: torch.segment_reduce(x, "mean", lengths=ints(1, 0, 2), initial=1.0),
                               x=real(3, 2)),
        "max-with-ties": sample(lambda x: torch.segment_reduce(torch.cat([x, x]), "max", offsets=ints(0, 2, 2, 6)),
                                x=real(3)),
        "min-initial-wins": sample(lambda x: torch.segment_reduce(x, "min", lengths=ints(2, 2), initial=-5.0),
                                   x=real(4)),
        "prod": sample(lambda x: torch.segment_reduce(x, "prod", lengths=ints(3, 1), initial=2.0), x=real(4)),
    },
    "ScatterReduceBackward0": {
        BASIC: sample(lambda x, s: x.scatter_reduce(1, ROWS_OF_3, s, "sum"), x=real(2, 3), s=real(2, 3)),
        "mean": sample(lambda x, s: x.scatter_reduce(0, ROWS_OF_3 % 2, s, "mean"), x=real(2, 3), s=real(2, 3)),
        "mean-without-self": sample(lambda x, s: x.scatter_reduce(0, ROWS_OF_3 % 2, s, "mean", include_self=False),
                                    x=real(2, 3), s=real(2, 3)),
        "amax": sample(lambda x, s: x.scatter_reduce(1, ROWS_OF_3, s, "amax"), x=real(2, 3), s=real(2, 3)),
        "amin-ties": sample(lambda x: x.scatter_reduce(1, ROWS_OF_3, x, "amin", include_self=False), x=real(2, 3)),
        "prod": sample(lambda x, s: x.scatter_reduce(1, ROWS_OF_3, s, "prod"), x=real(2, 3), s=real(2, 3)),
    },
    "IndexReduceBackward0": {
        BASIC: sample(lambda x, s: x.index_reduce(1, REPEATED, s, "mean"), x=real(2, 3), s=real(2, 3)),
        "amax-without-self": sample(lambda x, s: x.index_reduce(0, ints(1, 1), s, "amax", include_self=False),
                                    x=real(2, 3), s=real(2, 3)),
        "prod": sample(lambda x, s: x.index_reduce(1, REPEATED, s, "prod"), x=real(2, 3), s=real(2, 3)),
    },
    "UnsafeMaskedIndexBackward0": {
        # indices out of range where the mask is False: torch clamps them
        BASIC: sample(lambda x: aten._unsafe_masked_index(x, mask([True, False], [True, True]),
                                                          [ints(1, 5).reshape(2, 1), ints(2, 0).reshape(1, 2)], 0.5),
                      x=real(2, 3)),
    },
    "UnsafeMaskedIndexPutAccumulateBackward0": {
        BASIC: sample(lambda x, v: aten._unsafe_masked_index_put_accumulate(
            x, mask([True, False], [True, True]), [ints(1, 5).reshape(2, 1), ints(2, 2).reshape(1, 2)], v),
            x=real(2, 3), v=real(2, 2)),
    },
}
