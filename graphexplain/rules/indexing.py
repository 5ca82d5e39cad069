"""Indexing ops: the output is input elements picked, written or added up
by an index: gather, advanced indexing, scatter, index_add, max over a dim,
sort, max_pool, embedding.

Each forward is a routing function of `graphexplain.derive.routing`. The
index is a tensor torch saved on the node (`_saved_index`, `_saved_indices`,
max_pool's `_saved_result1`), read as a parameter. Ops that add elements up
(scatter_add, index_add, accumulating index_put/put, embedding_bag, the mean
over tied maxima) are traced element by element, so ∂result[k]/∂input[j] is
the weight of input[j] in result[k] (Note [ops that add elements up]).

Torch's conventions, as the forwards state them:

- max(), min(), median(), nanmedian() without a dim, and amax/amin: the
  result is the *mean* of the elements equal to it, so tied elements share
  the gradient evenly, as torch's evenly_distribute_backward does.
  max/min/median/kthvalue/mode over a dim pick the one element torch saved
  in `indices`: that element alone gets the gradient.
- embedding: rows at `padding_idx` are constants (torch sends them no
  gradient); scale_grad_by_freq is refused (it divides the gradient by how
  often each row was used, which no forward says).
- scatter, index_copy, index_put and put without accumulate, max_unpool:
  where an index repeats, every element written to a place gets that
  place's gradient, as in torch (Note [writes that collide]).
- scatter_reduce and index_reduce: "sum" and "mean" route; for "amax" and
  "amin" the members equal to the result share the gradient evenly; "prod"
  is a product, not a routing, and is left to torch.
"""

from .kinds import Routing

BY_INDICES = ("indices", "dim", "keepdim")  # what a value-selecting reduction over a dim saved

ROWS = (
    # pick elements
    Routing("GatherBackward0", "gather", "gather(self, dim, index)", params=("dim", "index")),
    Routing("IndexSelectBackward0", "index_select", "index_select(self, dim, index)", params=("dim", "index")),
    Routing("IndexBackward0", "index", "getitem(self, indices)", params=("indices",)),
    Routing("UnsafeIndexBackward0", "index", "getitem(self, indices)", params=("indices",)),
    Routing("UnsafeMaskedIndexBackward0", "index where masked", "masked_index(self, mask, indices, fill)",
            params=("mask", "indices", "fill")),
    Routing("TakeBackward0", "take", "take(self, index)", params=("index",)),
    Routing("MaskedSelectBackward0", "masked_select", "masked_select(self, mask)", params=("mask",)),
    Routing("EmbeddingBackward0", "embedding", "embedding(weight, indices, padding_idx, scale_grad_by_freq)",
            ("weight",), params=("indices", "padding_idx", "scale_grad_by_freq")),
    # the element a reduction over a dim kept, as torch saved it
    Routing("MaxBackward0", "max over a dim", "take_along(self, indices, dim, keepdim)", params=BY_INDICES),
    Routing("MinBackward0", "min over a dim", "take_along(self, indices, dim, keepdim)", params=BY_INDICES),
    Routing("KthvalueBackward0", "k-th smallest", "take_along(self, indices, dim, keepdim)", params=BY_INDICES),
    Routing("MedianBackward1", "median over a dim", "take_along(self, indices, dim, keepdim)", params=BY_INDICES),
    Routing("NanmedianBackward1", "nanmedian over a dim", "take_along(self, indices, dim, keepdim)",
            params=BY_INDICES),
    Routing("ModeBackward0", "mode over a dim", "take_along(self, indices, dim, keepdim)", params=BY_INDICES),
    Routing("SortBackward0", "sort", "take_along(self, indices, dim)", params=("indices", "dim")),
    Routing("SortBackward1", "sort (stable)", "take_along(self, indices, dim)", params=("indices", "dim")),
    Routing("TopkBackward0", "top k", "take_along(self, indices, dim)", params=("indices", "dim")),
    Routing("CummaxBackward0", "running max", "take_along(self, indices, dim)", params=("indices", "dim")),
    Routing("CumminBackward0", "running min", "take_along(self, indices, dim)", params=("indices", "dim")),
    Routing("MaxPool2DWithIndicesBackward0", "max pool", "pooled2d(self, result1)", params=("result1",)),
    Routing("MaxPool3DWithIndicesBackward0", "max pool", "pooled3d(self, result1)", params=("result1",)),
    Routing("AdaptiveMaxPool2DBackward0", "adaptive max pool", "pooled2d(self, result1)", params=("result1",)),
    Routing("AdaptiveMaxPool3DBackward0", "adaptive max pool", "pooled3d(self, result1)", params=("result1",)),
    Routing("FractionalMaxPool2DBackward0", "fractional max pool", "pooled2d(self, result1)", params=("result1",)),
    Routing("FractionalMaxPool3DBackward0", "fractional max pool", "pooled3d(self, result1)", params=("result1",)),
    Routing("MaxUnpool2DBackward0", "max unpool", "unpooled2d(self, indices, result_shape)", params=("indices",)),
    Routing("MaxUnpool3DBackward0", "max unpool", "unpooled3d(self, indices, result_shape)", params=("indices",)),
    # ties share: the mean of the elements equal to the result
    Routing("MaxBackward1", "max", "mean_of_ties(self, result)"),
    Routing("MinBackward1", "min", "mean_of_ties(self, result)"),
    Routing("MedianBackward0", "median", "mean_of_ties(self, result)"),
    Routing("NanmedianBackward0", "nanmedian", "mean_of_ties(self, result)"),
    Routing("AmaxBackward0", "max over dims", "mean_of_ties(self, result, dim, keepdim)", params=("dim", "keepdim")),
    Routing("AminBackward0", "min over dims", "mean_of_ties(self, result, dim, keepdim)", params=("dim", "keepdim")),
    Routing("AminmaxBackward0", "min and max", "aminmax(self, min, max, dim, keepdim)",
            params=("min", "max", "dim", "keepdim")),
    # max_pool's backward, run as a forward (double backward): self lends its shape only
    Routing("MaxPool2DWithIndicesBackwardBackward0", "max pool's backward",
            "pooling_backward2d(grad_output, self, indices)", ("grad_output", "self"), params=("indices",)),
    Routing("MaxPool3DWithIndicesBackwardBackward0", "max pool's backward",
            "pooling_backward3d(grad_output, self, indices)", ("grad_output", "self"), params=("indices",)),
    # write into a copy of self
    Routing("ScatterBackward0", "scatter", "scatter(self, dim, index, src)", ("self", "src"), params=("dim", "index")),
    Routing("ScatterBackward1", "scatter a number", "scatter_fill(self, dim, index, value)",
            params=("dim", "index", "value")),
    Routing("IndexCopyBackward0", "index_copy", "index_copy(self, dim, index, source)", ("self", "source"),
            params=("dim", "index")),
    Routing("IndexFillBackward0", "index_fill", "index_fill(self, dim, index, value)",
            params=("dim", "index", "value")),
    Routing("IndexFillBackward1", "index_fill", "index_fill(self, dim, index, value)", ("self", "value"),
            params=("dim", "index")),
    Routing("MaskedScatterBackward0", "masked_scatter", "masked_scatter(self, mask, source)", ("self", "source"),
            params=("mask",)),
    # masked_fill is a pointwise row (rules/pointwise.py): Piecewise on the mask
    Routing("IndexPutBackward0", "index_put", "index_put(self, indices, values, accumulate)", ("self", "values"),
            params=("indices", "accumulate")),
    Routing("UnsafeIndexPutBackward0", "index_put", "index_put(self, indices, values, accumulate)",
            ("self", "values"), params=("indices", "accumulate")),
    Routing("IndexPutImplBackward0", "index_put", "index_put(self, indices, values, accumulate)",
            ("self", "values"), params=("indices", "accumulate")),
    Routing("PutBackward0", "put", "put(self, index, source, accumulate)", ("self", "source"),
            params=("index", "accumulate")),
    # add elements up
    Routing("ScatterAddBackward0", "scatter_add", "scatter_add(self, dim, index, src)", ("self", "src"),
            params=("dim", "index")),
    Routing("IndexAddBackward0", "index_add", "index_add(self, dim, index, source, alpha)", ("self", "source"),
            params=("dim", "index", "alpha")),
    # sum, mean, and amax/amin with ties sharing; torch's prod is a product, left to torch
    Routing("ScatterReduceBackward0", "scatter_reduce", "scatter_reduce(self, dim, index, src, reduce, include_self)",
            ("self", "src"), params=("dim", "index", "reduce", "include_self")),
    Routing("IndexReduceBackward0", "index_reduce", "index_reduce(self, dim, index, source, reduce, include_self)",
            ("self", "source"), params=("dim", "index", "reduce", "include_self")),
    Routing("UnsafeMaskedIndexPutAccumulateBackward0", "add into masked places",
            "masked_index_put(self, mask, indices, values)", ("self", "values"), params=("mask", "indices")),
    Routing("SegmentReduceBackward0", "segment reduce",
            "segment_reduce(data, reduce, lengths, offsets, axis, initial, result)",
            ("data",), params=("reduce", "lengths", "offsets", "axis", "initial")),
    Routing("EmbeddingBagBackward0", "embedding_bag",
            "embedding_bag(weight, per_sample_weights, indices, result1, mode, padding_idx, result3, result_shape)",
            ("weight", "per_sample_weights"), params=("indices", "result1", "mode", "padding_idx", "result3")),
    # F.interpolate(..., mode="bilinear", antialias=True): each output element
    # a weighted sum of the input elements under a triangle filter as wide as
    # the scale (weights from the geometry alone: Note [ops that add elements up]).
    Routing("UpsampleBilinear2DAaBackward0", "antialiased bilinear resampling",
            "upsample_bilinear_aa(self, output_size, align_corners, scales_h, scales_w)",
            params=("output_size", "align_corners", "scales_h", "scales_w")),
    # F.grid_sample: each output element reads the input where its grid point
    # says, a weighted sum of taps whose weights are formulas of the grid
    # (Note [routes made whole] in derive/routing.py): bilinear, nearest,
    # bicubic; padding zeros, border, reflection.
    Routing("GridSampler2DBackward0", "sampling at grid points",
            "grid_sample(input, grid, interpolation_mode, padding_mode, align_corners)", ("input", "grid"),
            params=("interpolation_mode", "padding_mode", "align_corners")),
    Routing("GridSampler3DBackward0", "sampling at grid points in 3-D",
            "grid_sample(input, grid, interpolation_mode, padding_mode, align_corners)", ("input", "grid"),
            params=("interpolation_mode", "padding_mode", "align_corners")),
)
