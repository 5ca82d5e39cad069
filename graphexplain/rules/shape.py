"""Shape ops: the output is the input's elements, moved, copied or dropped.

Each forward is a routing function of `graphexplain.derive.routing` applied
to the operands; sympy derives ∂result[k]/∂self[j] = δ(j, pi(k)) for all of
them, so the gradient routes each upstream element back where it came from.
`tensors` is the whole list of an op's tensor operands (cat, stack); ops with
several outputs (split, unbind) return them all, and each output's upstream
goes back along its own map (Note [positions of several inputs and outputs]
in derive/routing.py). Padding, tril's zeros and diag_embed's zeros come
from no input and send nothing back.

The in-place forms (``squeeze_``, ``unsqueeze_``, ``t_``, ``transpose_``)
record nodes of their own; ``a @ b`` with a vector ``a`` records
SqueezeBackward4. The ``*_copy`` ops (``view_copy``, ``t_copy``, ...)
record ``<Node>_copy`` nodes with the forward of the view they copy.
"""

from dataclasses import replace

from .kinds import Routing

VIEWS = (
    Routing("ViewBackward0", "view", "reshape(self, result_shape)"),
    Routing("UnsafeViewBackward0", "view", "reshape(self, result_shape)"),
    Routing("ReshapeAliasBackward0", "reshape", "reshape(self, result_shape)"),
    Routing("AliasBackward0_copy", "copy", "reshape(self, result_shape)"),
    Routing("LiftFreshBackward0_copy", "copy", "reshape(self, result_shape)"),
    Routing("ExpandBackward0", "expand (broadcast)", "broadcast_to(self, result_shape)"),
    Routing("SqueezeBackward0", "squeeze", "reshape(self, result_shape)"),
    Routing("SqueezeBackward1", "squeeze a dim", "reshape(self, result_shape)", params=("dim",)),
    Routing("SqueezeBackward2", "squeeze dims", "reshape(self, result_shape)", params=("dim",)),
    Routing("SqueezeBackward3", "squeeze in place", "reshape(self, result_shape)"),
    Routing("SqueezeBackward4", "squeeze a dim in place", "reshape(self, result_shape)", params=("dim",)),
    Routing("SqueezeBackward5", "squeeze dims in place", "reshape(self, result_shape)", params=("dim",)),
    Routing("UnsqueezeBackward0", "unsqueeze", "expand_dims(self, dim)", params=("dim",)),
    Routing("UnsqueezeBackward1", "unsqueeze in place", "expand_dims(self, dim)", params=("dim",)),
    Routing("TBackward0", "transpose", "transpose(self)"),
    Routing("TBackward1", "transpose in place", "transpose(self)"),
    Routing("TransposeBackward0", "transpose dims", "swapaxes(self, dim0, dim1)", params=("dim0", "dim1")),
    Routing("TransposeBackward1", "transpose dims in place", "swapaxes(self, dim0, dim1)", params=("dim0", "dim1")),
    Routing("PermuteBackward0", "permute dims", "permute(self, dims)", params=("dims",)),
    Routing("SelectBackward0", "select", "select(self, dim, index)", params=("dim", "index")),
    Routing("SliceBackward0", "slice", "slice(self, dim, start, end, step)", params=("dim", "start", "end", "step")),
    Routing("NarrowCopyBackward0", "narrow", "narrow(self, dim, start, length)", params=("dim", "start", "length")),
    Routing("DiagonalBackward0", "diagonal", "diagonal(self, offset, dim1, dim2)", params=("offset", "dim1", "dim2")),
    Routing("UnfoldBackward0", "sliding windows", "unfold(self, dimension, size, step)",
            params=("dimension", "size", "step")),
    # as_strided reads self's storage; capture says where self lies in it
    Routing("AsStridedBackward0", "as_strided", "as_strided(self, size, stride, storage_offset, self_geometry)",
            params=("size", "stride", "storage_offset", "self_geometry")),
    Routing("SplitBackward0", "split", "split(self, split_size, dim)", params=("split_size", "dim")),
    Routing("SplitWithSizesBackward0", "split into sizes", "split_with_sizes(self, split_sizes, dim)",
            params=("split_sizes", "dim")),
    Routing("UnbindBackward0", "unbind", "unbind(self, dim)", params=("dim",)),
)

# torch's `*_copy` ops record `<view's node>_copy`, with the view's forward.
COPIED = {"AsStridedBackward0", "DiagonalBackward0", "ExpandBackward0", "PermuteBackward0",
          "ReshapeAliasBackward0", "SelectBackward0", "SliceBackward0", "SplitBackward0",
          "SplitWithSizesBackward0", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2",
          "TBackward0", "TransposeBackward0", "UnbindBackward0", "UnfoldBackward0", "UnsqueezeBackward0",
          "ViewBackward0"}

ROWS = VIEWS + tuple(replace(row, op=f"{row.op}_copy", title=f"{row.title} (a copy)")
                     for row in VIEWS if row.op in COPIED) + (
    Routing("UnsafeSplitBackward0", "split", "split(self, split_size, dim)", params=("split_size", "dim")),
    Routing("UnsafeSplitWithSizesBackward0", "split into sizes", "split_with_sizes(self, split_sizes, dim)",
            params=("split_sizes", "dim")),
    Routing("CatBackward0", "concatenate", "cat(tensors, dim)", ("tensors",), params=("dim",)),
    Routing("StackBackward0", "stack", "stack(tensors, dim)", ("tensors",), params=("dim",)),
    Routing("BlockDiagBackward0", "block diagonal", "block_diag(tensors)", ("tensors",)),
    Routing("FlipBackward0", "flip", "flip(self, dims)", params=("dims",)),
    Routing("RollBackward0", "roll", "roll(self, shifts, dims)", params=("shifts", "dims")),
    Routing("Rot90Backward0", "rotate by 90°", "rot90(self, k, dims)", params=("k", "dims")),
    Routing("RepeatBackward0", "repeat (tile)", "repeat(self, repeats)", params=("repeats",)),
    Routing("DiagEmbedBackward0", "place on a diagonal", "diag_embed(self, offset, dim1, dim2)",
            params=("offset", "dim1", "dim2")),
    Routing("TrilBackward0", "lower triangle", "tril(self, diagonal)", params=("diagonal",)),
    Routing("TriuBackward0", "upper triangle", "triu(self, diagonal)", params=("diagonal",)),
    # torch keeps no pad value: mapping needs none, replaying the numbers does
    Routing("ConstantPadNdBackward0", "pad with a constant", "constant_pad(self, pad, value)",
            params=("pad", "value")),
    Routing("ReflectionPad1DBackward0", "reflection pad", "reflection_pad(self, padding)", params=("padding",)),
    Routing("ReflectionPad2DBackward0", "reflection pad", "reflection_pad(self, padding)", params=("padding",)),
    Routing("ReflectionPad3DBackward0", "reflection pad", "reflection_pad(self, padding)", params=("padding",)),
    Routing("ReplicationPad1DBackward0", "replication pad", "replication_pad(self, padding)", params=("padding",)),
    Routing("ReplicationPad2DBackward0", "replication pad", "replication_pad(self, padding)", params=("padding",)),
    Routing("ReplicationPad3DBackward0", "replication pad", "replication_pad(self, padding)", params=("padding",)),
    Routing("PixelShuffleBackward0", "pixel shuffle", "pixel_shuffle(self, upscale_factor)",
            params=("upscale_factor",)),
    Routing("PixelUnshuffleBackward0", "pixel unshuffle", "pixel_unshuffle(self, downscale_factor)",
            params=("downscale_factor",)),
    Routing("ChannelShuffleBackward0", "channel shuffle", "channel_shuffle(self, groups)", params=("groups",)),
    Routing("Im2ColBackward0", "unfold into blocks", "im2col(self, kernel_size, dilation, padding, stride)",
            params=("kernel_size", "dilation", "padding", "stride")),
    Routing("Col2ImBackward0", "fold blocks (overlaps add up)",
            "col2im(self, result_shape, kernel_size, dilation, padding, stride)",
            params=("kernel_size", "dilation", "padding", "stride")),
    Routing("UpsampleNearest1DBackward0", "nearest upsampling", "upsample_nearest(self, output_size, scales)",
            params=("output_size", "scales")),
    Routing("UpsampleNearest2DBackward0", "nearest upsampling",
            "upsample_nearest(self, output_size, scales_h, scales_w)", params=("output_size", "scales_h", "scales_w")),
    Routing("UpsampleNearest3DBackward0", "nearest upsampling",
            "upsample_nearest(self, output_size, scales_d, scales_h, scales_w)",
            params=("output_size", "scales_d", "scales_h", "scales_w")),
    Routing("UpsampleNearestExact1DBackward0", "nearest upsampling (exact)",
            "upsample_nearest_exact(self, output_size, scales)", params=("output_size", "scales")),
    Routing("UpsampleNearestExact2DBackward0", "nearest upsampling (exact)",
            "upsample_nearest_exact(self, output_size, scales_h, scales_w)",
            params=("output_size", "scales_h", "scales_w")),
    Routing("UpsampleNearestExact3DBackward0", "nearest upsampling (exact)",
            "upsample_nearest_exact(self, output_size, scales_d, scales_h, scales_w)",
            params=("output_size", "scales_d", "scales_h", "scales_w")),
    # averages and interpolation: each output element a weighted sum of input elements
    Routing("AvgPool2DBackward0", "average pool",
            "avg_pool(self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)",
            params=("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")),
    Routing("AvgPool3DBackward0", "average pool",
            "avg_pool(self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)",
            params=("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")),
    Routing("AdaptiveAvgPool2DBackward0", "adaptive average pool", "adaptive_avg_pool2d(self, result_shape)"),
    Routing("AdaptiveAvgPool3DBackward0", "adaptive average pool", "adaptive_avg_pool3d(self, result_shape)"),
    Routing("UpsampleLinear1DBackward0", "linear upsampling",
            "upsample_linear(self, output_size, align_corners, scales)",
            params=("output_size", "align_corners", "scales")),
    Routing("UpsampleBilinear2DBackward0", "bilinear upsampling",
            "upsample_linear(self, output_size, align_corners, scales_h, scales_w)",
            params=("output_size", "align_corners", "scales_h", "scales_w")),
    Routing("UpsampleTrilinear3DBackward0", "trilinear upsampling",
            "upsample_linear(self, output_size, align_corners, scales_d, scales_h, scales_w)",
            params=("output_size", "align_corners", "scales_d", "scales_h", "scales_w")),
    Routing("UpsampleBicubic2DBackward0", "bicubic upsampling",
            "upsample_bicubic(self, output_size, align_corners, scales_h, scales_w)",
            params=("output_size", "align_corners", "scales_h", "scales_w")),
    # every element overwritten: by a number (no input), or by src
    Routing("ZeroBackward0", "zero in place", "filled(self)"),
    Routing("FillBackward0", "fill with a number", "filled(self, value)", params=("value",)),
    Routing("FillBackward2", "fill with a number in place", "filled(self, value)", params=("value",)),
    Routing("FillBackward1", "fill with a tensor's number", "filled(self, value)", ("self", "value")),
    Routing("FillBackward3", "fill with a tensor's number in place", "filled(self, value)", ("self", "value")),
    Routing("CopyBackwards", "copy into (copy_)", "copied(self, src)", ("self", "src")),
    # self, with the elements a view reads replaced by src
    Routing("SliceScatterBackward0", "write into a slice", "slice_scatter(self, src, dim, start, end, step)",
            ("self", "src"), params=("dim", "start", "end", "step")),
    Routing("SelectScatterBackward0", "write into a select", "select_scatter(self, src, dim, index)",
            ("self", "src"), params=("dim", "index")),
    Routing("DiagonalScatterBackward0", "write into a diagonal", "diagonal_scatter(self, src, offset, dim1, dim2)",
            ("self", "src"), params=("offset", "dim1", "dim2")),
    # AsStridedScatterBackward0 has no row: torch 2.13's gradient for self is
    # the complement of the right one (gradcheck fails on it), so no forward
    # formula can match it.
)

# Complex elements and their real pairs (Note [complex routing] in
# derive/routing.py): z is (re z, im z), and x + i·y is the pair (x, y).
ROWS += (
    Routing("ViewAsRealBackward0", "view complex numbers as real pairs", "view_as_real(self)"),
    Routing("ViewAsComplexBackward0", "view real pairs as complex numbers", "view_as_complex(self)"),
)
