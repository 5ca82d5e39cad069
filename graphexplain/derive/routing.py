"""The forward functions of routing rows, on numpy arrays, and the routes
every routing row's gradient goes back along.

Most rows' maps come from torch's own forward, run by capture on positions
and recorded on the node (capture/positions.py; Note [forwards torch runs]
below): `routes` then only reads them. The forwards still here are those
with several operands or outputs, a fill value, a convention of their own
(colliding writes, ties, embedding's padding row), or a view the derivation
also needs without a node (CopySlices' region, as_strided).

A routing op only moves, copies, drops or adds up elements, so running its
forward on the *positions* of its inputs, ``arange(numel).reshape(shape)``,
gives the map pi with result[k] = self[pi(k)]. The gradient then goes back
along pi: each upstream element is added to the input element it was taken
from (sympy's ∂result[k]/∂self[j] = δ(j, pi(k)), summed over k).

    >>> positions((2, 3)).tolist()
    [[0, 1, 2], [3, 4, 5]]
    >>> index_map("swapaxes(self, dim0, dim1)", (2, 3), {"dim0": 0, "dim1": 1}).tolist()
    [[0, 3], [1, 4], [2, 5]]

Note [positions of several inputs and outputs]
Each tensor operand's elements are numbered after those of the operands
before it: for ``cat([a, b])`` with 2 elements in a and 3 in b, a's
positions are 0, 1 and b's are 2, 3, 4. The forward runs on these arrays,
so an output element holding position 3 is b's element 1. An output element
that comes from no input (padding, the zeros of tril or diag_embed, a scalar
fill value) holds EMPTY, and no gradient goes back from it. An op with
several outputs (split, unbind) returns a list of arrays; their elements are
numbered one output after another, and so are their upstreams (zeros for an
output nothing used, as torch does). Every route is then an edge
(output element, input element), and one central `gradients` sends each
upstream element back along its edges to whichever operand owns the input.

Note [ops that add elements up]
scatter_add, index_add, index_put/put with accumulate=True, embedding_bag,
scatter_reduce, fold and the mean over tied maxima (max(), amax) make one
output element out of *several* input elements, a sum or a mean: one
position per output element cannot say that. Their forwards (SUMMING) run
instead on traced elements:
each input element is a `Linear`, {its position: 1}, and the forward's own
+, * and / combine them, so every output element ends up as
{position: weight}: result[k] = Σ_j w[k, j]·input[j], and sympy's
∂result[k]/∂input[j] is w[k, j]. Positions are thereby tracked from the input
side: scatter_add keeps each src[j] as a term of the output element it was
added to, so src[j]'s gradient is that element's upstream (torch's
grad.gather(dim, index)) without anyone writing the gather, and self[k]'s is
upstream[k]. The gradient is the transpose: input.grad[j] = Σ_k w[k, j]·
upstream[k], a weighted bincount. Tracing costs a Python object per element,
so only SUMMING forwards are traced; forwards that only move elements run on
integer positions, and scatter_add, index_add, index_put, put and the mean
over tied maxima give their edges for all elements at once
(ROUTES_MADE_WHOLE: the places their index names are the edges).

Note [products of inputs]
A few forwards multiply input elements: scatter_reduce and index_reduce with
reduce="prod", embedding_bag's per_sample_weights times the rows. A Linear
element refuses to be multiplied by another, and such a forward is traced
once more on sympy symbols, one per input element. Each output element is
then a sympy expression; sympy differentiates it by each symbol in it, and
the derivative, evaluated at the operands' numbers, is the weight of that
edge: for result[k] = a·b·c, ∂result[k]/∂a = b·c, the product of the others,
which is what torch computes (also where an element is 0).

Note [writes that collide]
scatter, index_copy, index_put and put without accumulate, and max_unpool
write elements into places an index names. Where several land on one place,
torch keeps one of them (which one is not defined), but its backward sends
every one of them the gradient of that place (src.grad = grad.gather(dim,
index)). The forward says so: colliding writes all count as written there,
so each is a term of that output element. Positions cannot hold several
elements, so a forward that meets a collision is traced instead; replayed on
numbers, the last write is kept.

Note [a fill, a constant copy, and data that picks elements]
A forward argument named `fill` says what an output element that comes from
no input holds (torch's pad value, tril's 0). Mapping puts EMPTY there, and
replaying the forward on numbers (derive/replay.py) puts the real fill there.
When the row binds `fill` to a tensor operand (index_fill or fill_ with a
tensor value), that operand is routed like any other. embedding's padding row is
copied in the forward but is a constant for torch (it never gets a
gradient): the forward states this by marking those elements as coming from
no input while mapping. A forward whose choice of elements depends on the
numbers (the tied maxima of max()) takes a keyword `numbers`: the numbers
of its operands, in order, which pick the elements; the elements themselves
are still positions.
"""

from __future__ import annotations

import ast
import functools
import inspect
import operator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..model import PositionMap

EMPTY = -1  # the position held by an output element that comes from no input
VARIADIC = "tensors"  # the row word for an op's whole list of tensor operands (cat, stack)

Shape = Tuple[int, ...]


def positions(shape: Shape, offset: int = 0) -> np.ndarray:
    return offset + np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


class _NotLinear(Exception):
    """A traced forward multiplied two input elements (Note [products of inputs])."""


class Linear:
    """A traced element: Σ weight·input[position], as {position: weight}
    (Note [ops that add elements up]).

    >>> (Linear({0: 1.0}) + Linear({3: 1.0}) + Linear({0: 1.0})) / 2
    Linear({0: 1.0, 3: 0.5})
    """

    __slots__ = ("terms",)

    def __init__(self, terms: Dict[int, float]):
        self.terms = terms

    def __add__(self, other):
        if isinstance(other, Linear):
            terms = dict(self.terms)
            for position, weight in other.terms.items():
                terms[position] = terms.get(position, 0.0) + weight
            return Linear(terms)
        if isinstance(other, np.ndarray):
            return NotImplemented  # numpy adds element by element
        if isinstance(other, (int, float, np.number)):  # the 0 a sum starts from, a constant element:
            return self  # it moves the value, not how the value depends on the inputs
        raise TypeError("a routing adds elements only to elements and numbers")

    __radd__ = __add__

    def __mul__(self, factor):
        if isinstance(factor, np.ndarray):
            return NotImplemented
        if isinstance(factor, Linear):
            raise _NotLinear()
        return Linear({position: weight * float(factor) for position, weight in self.terms.items()})

    __rmul__ = __mul__

    def __truediv__(self, divisor):
        if isinstance(divisor, np.ndarray):
            return NotImplemented
        if isinstance(divisor, Linear):
            raise _NotLinear()
        return self * (1.0 / float(divisor))

    def __neg__(self):
        return self * -1.0

    def __repr__(self):
        return f"Linear({self.terms})"


def _traced(position_array: np.ndarray) -> np.ndarray:
    """Each position as a traced element, {position: 1}."""
    traced = np.empty(position_array.shape, dtype=object)
    traced.reshape(-1)[:] = [Linear({position: 1.0}) for position in position_array.reshape(-1).tolist()]
    return traced


# --- helpers the forwards share ------------------------------------------------------


def _axis(dim: int, ndim: int) -> int:
    return dim % ndim if ndim else 0


def _index_array(index) -> np.ndarray:
    """A saved index tensor as numpy indices (bool masks stay masks)."""
    index = np.asarray(index)
    return index if index.dtype == bool else index.astype(np.int64)


def _full(shape: Shape, fill, like: np.ndarray) -> np.ndarray:
    return np.full(shape, fill, dtype=like.dtype if like.dtype != bool else np.int64)


class _Collision(Exception):
    """Positions met a write of several elements to one place: the forward
    must be traced instead (Note [writes that collide])."""


def _written(array: np.ndarray, where: np.ndarray, source, add: bool = False) -> np.ndarray:
    """`array` with the flat positions `where` replaced by (or, with `add`,
    increased by) `source`, broadcast to `where`'s shape."""
    flat = np.array(array, copy=True).reshape(-1)
    source = np.broadcast_to(np.asarray(source, dtype=flat.dtype), np.shape(where)).reshape(-1)
    where = np.asarray(where, dtype=np.int64).reshape(-1)
    collide = not add and np.unique(where).size < where.size
    if collide and flat.dtype == np.int64:  # positions: one per place cannot say it
        raise _Collision()
    if add or (collide and flat.dtype == object):  # Note [writes that collide]
        if not add:
            flat[where] = 0
        np.add.at(flat, where, source)
    else:
        flat[where] = source
    return flat.reshape(np.shape(array))


def _scattered_into(view: Callable[[np.ndarray], np.ndarray]):
    """The *_scatter op of a view: self, with the elements the view reads
    replaced by src (slice_scatter is slice's, select_scatter select's)."""
    def scatter(array, source, *args):
        return _written(array, view(positions(np.shape(array)), *args), source)
    return scatter


def _grid(index: np.ndarray, dim: int) -> Tuple[tuple, tuple]:
    """For gather/scatter along `dim`: (the element of self or result that
    each index element addresses, the element of index or src it sits at)."""
    at = list(np.indices(index.shape, sparse=True))
    addressed = list(at)
    addressed[dim] = index
    return tuple(addressed), tuple(at)


def _along(dim: int, ndim: int, index) -> tuple:
    return (slice(None),) * _axis(dim, ndim) + (index,)


def _index_key(indices) -> tuple:
    """torch's saved `indices` (None for a whole dim) as a numpy index; a
    bool mask becomes the positions it selects, as torch does."""
    key = []
    for index in indices:
        if index is None:
            key.append(slice(None))
            continue
        index = _index_array(index)
        key.extend(np.nonzero(index) if index.dtype == bool else (index,))
    return tuple(key)


# --- forwards that move elements ---------------------------------------------------


def _select(array, dim, index):
    return np.take(array, index, axis=dim)


def _slice(array, dim, start, end, step):
    # torch and Python clamp the bounds alike (a negative start counts from
    # the end, an end of 2**63 - 1 means "to the end"), so Python's slice
    # takes torch's saved start and end as they are.
    cut = [slice(None)] * array.ndim
    cut[dim] = slice(start, end, step)
    return array[tuple(cut)]


def _narrow(array, dim, start, length):
    start = start % array.shape[dim] if start < 0 else start
    return _slice(array, dim, start, start + length, 1)


def _expand_dims(array, dim):
    return np.expand_dims(array, dim if dim >= 0 else array.ndim + 1 + dim)


def _cat(arrays, dim):
    # torch.cat skips 1-D empty tensors, whatever the others' shape
    kept = [a for a in arrays if not (a.ndim == 1 and a.shape[0] == 0)] or list(arrays[:1])
    return np.concatenate(kept, axis=dim)


def _split(array, split_size, dim):
    length = array.shape[dim]
    cuts = list(range(split_size, length, split_size)) if split_size > 0 else []
    return np.split(array, cuts, axis=dim)


def _split_with_sizes(array, split_sizes, dim):
    return np.split(array, np.cumsum(split_sizes)[:-1].tolist(), axis=dim)


def _unbind(array, dim):
    return [np.take(array, i, axis=dim) for i in range(array.shape[dim])]


def _triangle(array, diagonal, fill, lower):
    rows, columns = array.shape[-2:]
    below = np.tri(rows, columns, diagonal if lower else diagonal - 1, dtype=bool)
    return np.where(below if lower else ~below, array, np.asarray(fill, dtype=array.dtype))


def _storage_positions(size, stride, storage_offset) -> np.ndarray:
    where = np.full(tuple(size), storage_offset, dtype=np.int64)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = n
        where = where + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    return where


def _as_strided(array, size, stride, storage_offset, self_geometry, fill=None):
    """as_strided reads self's *storage*: `self_geometry` (capture's word for
    self's storage offset and strides) says where self's elements lie in it.
    Storage that holds none of self's elements comes from no input."""
    if self_geometry is None:
        raise ValueError("torch does not say where self lies in its storage "
                         "(known for a leaf, or under graphexplain.recording())")
    start, strides = self_geometry
    held = _storage_positions(array.shape, strides, start).reshape(-1)
    read = _storage_positions(size, stride, start if storage_offset is None else storage_offset)
    length = 1 + max(int(held.max(initial=-1)), int(read.max(initial=-1)))
    covered = np.zeros(length, dtype=bool)
    covered[held] = True
    if fill is None and not covered[read].all():
        raise ValueError("as_strided reads storage outside self, whose numbers capture does not have")
    storage = _full((length,), 0 if fill is None else fill, array)
    storage[held] = np.asarray(array).reshape(-1)
    return storage[read]


def _block_diag(arrays, fill=0):
    blocks = [a.reshape(1, -1) if a.ndim < 2 else a for a in arrays]
    rows = sum(b.shape[0] for b in blocks)
    columns = sum(b.shape[1] for b in blocks)
    result = _full((rows, columns), fill, blocks[0] if blocks else np.zeros(0))
    row = column = 0
    for block in blocks:
        result[row:row + block.shape[0], column:column + block.shape[1]] = block
        row, column = row + block.shape[0], column + block.shape[1]
    return result


def _col2im(array, result_shape, kernel_size, dilation, padding, stride):
    """nn.functional.fold: each column's elements added back where its
    block lies; overlapping blocks add up."""
    batched = array.ndim == 3
    x = array if batched else array[None]
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel_size, dilation, padding, stride
    height, width = result_shape[-2:]
    rows = _block_places(height + 2 * ph, kh, dh, sh)
    columns = _block_places(width + 2 * pw, kw, dw, sw)
    blocks = x.reshape(x.shape[0], -1, kh, kw, rows.shape[1], columns.shape[1])
    result = np.zeros((x.shape[0], blocks.shape[1], height + 2 * ph, width + 2 * pw), dtype=x.dtype)
    np.add.at(result, (slice(None), slice(None), rows[:, None, :, None], columns[None, :, None, :]), blocks)
    result = result[:, :, ph:ph + height, pw:pw + width]
    return result if batched else result[0]


def _block_places(length: int, kernel: int, dilation: int, stride: int) -> np.ndarray:
    """(kernel, blocks): the place along one dim of each kernel tap in each block."""
    blocks = (length - dilation * (kernel - 1) - 1) // stride + 1
    return (np.arange(kernel) * dilation)[:, None] + (np.arange(max(blocks, 0)) * stride)[None, :]


# --- forwards that pick elements by an index ---------------------------------------


def _unpooled(array, indices, result_shape, spatial, fill=0):
    """max_unpool: each element goes to the flat position `indices` names in
    its (batch, channel) plane of the result; the rest hold 0."""
    indices = _index_array(indices)
    lead = tuple(result_shape[:-spatial])
    result = _full(lead + (int(np.prod(result_shape[-spatial:])),), fill, array)
    places = np.take_along_axis(positions(result.shape), indices.reshape(lead + (-1,)), axis=-1)
    return _written(result, places, array.reshape(lead + (-1,))).reshape(tuple(result_shape))


# --- forwards that write into a copy of self ---------------------------------------


def _scatter(array, dim, index, source):
    index = _index_array(index)
    addressed, at = _grid(index, _axis(dim, max(array.ndim, 1)))
    where = positions(array.shape)[addressed] if array.ndim else np.zeros(index.shape, np.int64)
    return _written(array, where, np.asarray(source)[at] if np.ndim(source) else source)


def _scatter_add(array, dim, index, source):
    index = _index_array(index)
    addressed, at = _grid(index, _axis(dim, max(array.ndim, 1)))
    where = positions(array.shape)[addressed] if array.ndim else np.zeros(index.shape, np.int64)
    return _written(array, where, np.asarray(source)[at] if np.ndim(source) else source, add=True)


def _index_write(array, dim, index, source, add=False):
    index = _index_array(index).reshape(-1)
    if array.ndim == 0:
        return _written(array, np.zeros(index.shape, np.int64), np.asarray(source).reshape(-1), add)
    where = positions(array.shape)[_along(dim, array.ndim, index)]
    return _written(array, where, source, add)


def _index_add(array, dim, index, source, alpha=1):
    return _index_write(array, dim, index, alpha * np.asarray(source), add=True)


def _index_copy(array, dim, index, source):
    return _index_write(array, dim, index, source)


def _index_fill(array, dim, index, fill):
    return _index_write(array, dim, index, fill)


def _index_put(array, indices, values, accumulate):
    where = positions(array.shape)[_index_key(indices)]
    return _written(array, where, values, add=bool(accumulate))


def _put(array, index, source, accumulate):
    where = _index_array(index).reshape(-1)
    return _written(array, where, np.asarray(source).reshape(-1), add=bool(accumulate))


def _masked_scatter(array, mask, source):
    shape = np.broadcast_shapes(np.shape(array), np.shape(mask))
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), shape)
    where = positions(shape)[mask]
    return _written(np.broadcast_to(array, shape), where, np.asarray(source).reshape(-1)[:where.size])


# --- forwards that add elements up (traced: Note [ops that add elements up]) -----


def _mean_of_ties(array, result, dim=None, keepdim=False, *, numbers):
    """The mean of the elements equal to the reduction's result: max(),
    median(), amax over `dim`. Its value is the result itself; as a formula
    it says what torch does: ties share the gradient evenly."""
    values = np.asarray(numbers[0])
    dims = tuple(range(values.ndim)) if dim is None or len(np.atleast_1d(dim)) == 0 or values.ndim == 0 else \
        tuple(sorted(_axis(d, values.ndim) for d in np.atleast_1d(dim)))
    peak = np.asarray(result)
    if not keepdim:
        peak = peak.reshape([1 if d in dims else n for d, n in enumerate(values.shape)])
    ties = (values == peak) | (np.isnan(values) & np.isnan(peak))
    count = np.maximum(ties.sum(axis=dims, keepdims=keepdim), 1)
    total = np.where(ties, array, np.zeros((), dtype=array.dtype)).sum(axis=dims, keepdims=keepdim)
    return np.asarray(total / count).reshape(np.shape(result))


def _embedding_bag(weight, per_sample_weights, indices, result1, mode, padding_idx, result3, result_shape,
                   fill=0):
    """The bags of embedding_bag: torch saved each index's bag (`result1`,
    offset2bag) and, in max mode, the row each output element took
    (`result3`). Rows at padding_idx are left out of sums, means and counts."""
    indices = _index_array(indices).reshape(-1)
    rows = weight[indices]
    if np.ndim(per_sample_weights) > 0:  # (absent, it stands in as one element: complete_shapes)
        rows = rows * np.asarray(per_sample_weights).reshape((-1,) + (1,) * (weight.ndim - 1))
    bags = int(result_shape[0])
    if mode == 2:  # max: torch saved which row gave each output element
        chosen = _index_array(result3)
        taken = np.take_along_axis(weight, np.maximum(chosen, 0), axis=0)
        return np.where(chosen >= 0, taken, np.asarray(fill, dtype=weight.dtype))
    bag_of = _index_array(result1).reshape(-1)
    counted = indices != padding_idx if padding_idx is not None and padding_idx >= 0 else np.ones(indices.shape, bool)
    result = _full((bags,) + weight.shape[1:], fill, weight)
    np.add.at(result, bag_of[counted], rows[counted])
    if mode == 1:
        sizes = np.bincount(bag_of[counted], minlength=bags).reshape((bags,) + (1,) * (weight.ndim - 1))
        result = result / np.maximum(sizes, 1)
    return result


def _aminmax(array, min, max, dim, keepdim, *, numbers):
    """Two outputs, min and max, each the mean of the elements equal to it."""
    return [_mean_of_ties(array, min, dim, keepdim, numbers=numbers),
            _mean_of_ties(array, max, dim, keepdim, numbers=numbers)]


def _pooling_backward(grad_output, array, indices, spatial):
    """max_pool's backward as a forward (its double backward): each
    grad_output element added at the place `indices` names in its plane of
    a zero tensor of self's shape; self only lends its shape."""
    indices = _index_array(indices)
    lead = array.shape[:-spatial]
    result = np.zeros(lead + (int(np.prod(array.shape[-spatial:])),), dtype=np.asarray(grad_output).dtype)
    places = np.take_along_axis(positions(result.shape), indices.reshape(lead + (-1,)), axis=-1)
    return _written(result, places, np.asarray(grad_output).reshape(lead + (-1,)), add=True).reshape(array.shape)


def _segment_reduce(data, reduce, lengths, offsets, axis, initial, result, *, numbers):
    """_segment_reduce: each run of `lengths` elements along `axis` combined
    into one, with `initial` taking part (a constant). max/min: the mean of
    the elements equal to the result (ties share, as in torch); an empty run
    or one `initial` wins holds a constant."""
    axis = _axis(axis, data.ndim)
    bounds = _index_array(offsets).reshape(-1) if offsets is not None else \
        np.concatenate([[0], np.cumsum(_index_array(lengths).reshape(-1))])
    extra = initial if initial is not None else (1 if reduce == "prod" else 0)
    parts = []
    for s, (low, high) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        run = np.take(data, np.arange(low, high), axis=axis)
        if reduce in ("max", "min"):
            if numbers[0] is None:
                raise ValueError(f"{reduce} needs the numbers of data")
            peak = np.take(np.asarray(result), s, axis=axis)
            ties = np.take(np.asarray(numbers[0]), np.arange(low, high), axis=axis) == np.expand_dims(peak, axis)
            count = ties.sum(axis=axis)
            chosen = np.where(ties, run, np.zeros((), dtype=run.dtype)).sum(axis=axis)
            parts.append(np.where(count > 0, chosen / np.maximum(count, 1), peak))
        elif reduce == "prod":  # Note [products of inputs]
            start = np.full(np.delete(np.asarray(run.shape), axis).tolist(), extra, dtype=run.dtype)
            parts.append(functools.reduce(operator.mul, (np.take(run, i, axis=axis) for i in range(high - low)), start))
        else:
            total = run.sum(axis=axis) + extra
            parts.append(total / max(high - low, 1) if reduce == "mean" else total)
    return np.stack([np.asarray(part) for part in parts], axis=axis)


def _combined(members: List[Tuple[Any, float]], reduce: str, excluded: Optional[float] = None):
    """One output element of scatter_reduce / index_reduce from its members
    (element, number): their sum or mean, or for amax/amin the mean of the
    members equal to the extreme (ties share, as in torch). torch also
    counts self's `excluded` number (include_self=False) among the ties when
    it equals the result, but sends it nothing: it is a constant tie."""
    elements = [element for element, _ in members]
    if reduce == "sum":
        return sum(elements)
    if reduce == "mean":
        return sum(elements) / len(elements)
    if reduce in ("amax", "amin"):
        numbers = [number for _, number in members]
        if any(number is None for number in numbers):
            raise ValueError(f"{reduce} needs the numbers of every operand")
        peak = max(numbers) if reduce == "amax" else min(numbers)
        tied = [element for element, number in members if number == peak or (number != number and peak != peak)]
        if excluded is not None and excluded == peak:
            tied.append(excluded)
        return sum(tied) / len(tied)
    if reduce == "prod":  # Note [products of inputs]
        return functools.reduce(operator.mul, elements)
    raise ValueError(f"reduce={reduce!r} is not a reduction torch has")


def _reduced_into(array, places, source, reduce, include_self, numbers):
    """self, with each source element combined into the place `places` names
    for it (and self's own element there too if include_self)."""
    self_numbers, source_numbers = (list(numbers) + [None, None])[:2]
    members: Dict[int, List[Tuple[Any, float]]] = {}
    source_numbers = np.broadcast_to(np.asarray(source_numbers, dtype=float), np.shape(source)) \
        if source_numbers is not None else np.full(np.shape(source), None)
    for place, element, number in zip(np.asarray(places).reshape(-1).tolist(), np.asarray(source).reshape(-1),
                                      source_numbers.reshape(-1)):
        members.setdefault(place, []).append((element, number))
    flat = np.array(array, copy=True).reshape(-1)
    own = np.asarray(self_numbers).reshape(-1) if self_numbers is not None else None
    for place, found in members.items():
        if include_self:
            found.append((flat[place], own[place] if own is not None else None))
        excluded = own[place] if not include_self and own is not None else None
        flat[place] = _combined(found, reduce, excluded)
    return flat.reshape(np.shape(array))


def _scatter_reduce(array, dim, index, source, reduce, include_self, *, numbers):
    index = _index_array(index)
    axis = _axis(dim, max(array.ndim, 1))
    addressed, at = _grid(index, axis)
    places = positions(array.shape)[addressed] if array.ndim else np.zeros(index.shape, np.int64)
    source_numbers = numbers[1] if len(numbers) > 1 and numbers[1] is not None else None
    picked_numbers = np.asarray(source_numbers)[at] if source_numbers is not None else None
    return _reduced_into(array, places, np.asarray(source)[at], reduce, include_self,
                         (numbers[0], picked_numbers))


def _index_reduce(array, dim, index, source, reduce, include_self, *, numbers):
    index = _index_array(index).reshape(-1)
    if array.ndim == 0:  # a scalar self: every source element goes to it
        flat = [None if n is None else np.asarray(n).reshape(-1) for n in numbers[1:2]]
        return _reduced_into(array, np.zeros(index.shape, np.int64), np.asarray(source).reshape(-1), reduce,
                             include_self, (numbers[0], *flat))
    places = positions(array.shape)[_along(dim, array.ndim, index)]
    return _reduced_into(array, places, source, reduce, include_self, numbers)


def _clamped(shape: Shape, indices) -> tuple:
    """_unsafe_masked_index's indices, clamped into range as torch does
    (those out of range are masked out anyway)."""
    return _index_key(tuple(None if index is None else np.clip(_index_array(index), -shape[d], shape[d] - 1)
                            for d, index in enumerate(indices)))


def _masked_index(array, mask, indices, fill):
    return np.where(np.asarray(mask, dtype=bool), array[_clamped(array.shape, indices)],
                    np.asarray(fill, dtype=array.dtype))


def _masked_index_put(array, mask, indices, values):
    places = positions(array.shape)[_clamped(array.shape, indices)]
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), places.shape)
    values = np.broadcast_to(values, places.shape)
    return _written(array, places[mask], values[mask], add=True)


FUNCTIONS: Dict[str, Callable] = {
    # move elements
    "reshape": lambda array, shape: np.reshape(array, shape),
    "broadcast_to": lambda array, shape: np.broadcast_to(array, shape),
    "transpose": lambda array: np.transpose(array),
    "swapaxes": lambda array, dim0, dim1: np.swapaxes(array, dim0, dim1),
    "permute": lambda array, dims: np.transpose(array, dims),
    "select": _select,
    "slice": _slice,
    "narrow": _narrow,
    "expand_dims": _expand_dims,
    "cat": _cat,
    "stack": lambda arrays, dim: np.stack(arrays, axis=dim),
    "split": _split,
    "split_with_sizes": _split_with_sizes,
    "unbind": _unbind,
    "as_strided": _as_strided,
    "block_diag": _block_diag,
    "col2im": _col2im,
    # write everything: all from no input (zero_, fill_), or from src (copy_)
    "filled": lambda array, fill=0: np.full(np.shape(array), fill, dtype=np.asarray(array).dtype) if np.ndim(fill) == 0
    else np.broadcast_to(fill, np.shape(array)),
    "copied": lambda array, source: np.broadcast_to(source, np.shape(array)),
    "slice_scatter": _scattered_into(_slice),
    "select_scatter": _scattered_into(_select),
    "diagonal_scatter": _scattered_into(lambda array, offset, dim1, dim2: np.diagonal(array, offset, dim1, dim2)),
    # pick elements by an index
    "masked_index": _masked_index,
    "unpooled2d": partial(_unpooled, spatial=2),
    "unpooled3d": partial(_unpooled, spatial=3),
    # write into a copy of self
    "scatter": _scatter,
    "scatter_fill": lambda array, dim, index, fill: _scatter(array, dim, index, fill),
    "index_copy": _index_copy,
    "index_fill": _index_fill,
    "masked_scatter": _masked_scatter,
    # add elements up
    "scatter_add": _scatter_add,
    "index_add": _index_add,
    "index_put": _index_put,
    "put": _put,
    "mean_of_ties": _mean_of_ties,
    "aminmax": _aminmax,
    "segment_reduce": _segment_reduce,
    "pooling_backward2d": partial(_pooling_backward, spatial=2),
    "pooling_backward3d": partial(_pooling_backward, spatial=3),
    "scatter_reduce": _scatter_reduce,
    "index_reduce": _index_reduce,
    "masked_index_put": _masked_index_put,
    "embedding_bag": _embedding_bag,
}

# Note [forwards torch runs]
# These rows' maps come from torch's own forward run on positions, which
# capture records on the node (capture/positions.py, Note [positions as
# numbers] and Note [weights from probes] there): no numpy twin of the
# forward here to drift from torch's. Their names stay callable so the rows
# read alike; called without a recorded map, they say why there is none.
RECORDED_BY_CAPTURE = ("upsample_nearest", "upsample_nearest_exact", "avg_pool", "adaptive_avg_pool2d",
                       "adaptive_avg_pool3d", "upsample_linear", "upsample_bicubic", "upsample_bilinear_aa",
                       "gather", "index_select", "take", "pooled2d", "pooled3d", "getitem", "masked_select",
                       "take_along", "flip", "roll", "rot90", "repeat", "diagonal", "diag_embed", "tril", "triu",
                       "unfold", "reflection_pad", "replication_pad", "pixel_shuffle", "pixel_unshuffle",
                       "channel_shuffle", "im2col", "embedding", "constant_pad")


def _recorded_only(*arguments, **keywords):
    raise ValueError("its map comes from torch's forward run on positions, which capture records "
                     "(capture/positions.py), and this node has none: torch's forward refused the saved arguments, "
                     "or the graph was not captured from torch")


FUNCTIONS.update((name, _recorded_only) for name in RECORDED_BY_CAPTURE)


def _embedding(weight, indices, padding_idx, scale_grad_by_freq=False):
    if scale_grad_by_freq:  # capture records no map for it
        raise ValueError("scale_grad_by_freq divides the gradient by how often each row is used, "
                         "which no forward formula says")
    _recorded_only()


FUNCTIONS["embedding"] = _embedding  # torch's forward on positions (capture/positions.py)


def _constant_pad(array, pad, fill=0):
    """The row binds the pad's value to `fill`: what a replay puts where the map says "from no input"."""
    _recorded_only()


FUNCTIONS["constant_pad"] = _constant_pad


def _padding_row_constant(found: "Routes", arguments: Dict[str, Any]) -> "Routes":
    """embedding's convention: the rows at padding_idx are copied by the
    forward but are constants for torch (its backward sends them nothing),
    so their edges are dropped (Note [a fill, a constant copy, and data that
    picks elements])."""
    padding_idx = arguments.get("padding_idx")
    if padding_idx is None or padding_idx < 0 or not found.output_shapes[0]:
        return found
    row = max(int(found.output_shapes[0][-1]), 1)  # the elements of one embedding vector
    kept = np.asarray(arguments["indices"]).reshape(-1)[found.outputs // row] != padding_idx
    return replace(found, outputs=found.outputs[kept], inputs=found.inputs[kept])


# Where torch's backward follows a convention rather than the forward's map,
# applied to a recorded map (docs/rules.md names them).
CONVENTIONS: Dict[str, Callable[["Routes", Dict[str, Any]], "Routes"]] = {"embedding": _padding_row_constant}

# Forwards whose result is self, written into (its shape is self's).
WRITES_INTO_SELF = frozenset({
    "slice_scatter", "select_scatter", "diagonal_scatter", "scatter", "scatter_fill", "scatter_reduce", "index_reduce",
    "masked_index_put",
    "scatter_add", "index_copy", "index_fill", "index_add", "index_put", "put", "masked_scatter"})

# Forwards traced element by element (Note [ops that add elements up]).
SUMMING = frozenset({"embedding_bag",
                     "scatter_reduce", "index_reduce", "masked_index_put", "col2im",
                     "pooling_backward2d", "pooling_backward3d", "segment_reduce"})


# --- running a forward ----------------------------------------------------------------


@dataclass(frozen=True)
class Routes:
    """result[outputs[e]] holds weights[e]·input[inputs[e]] for each edge e:
    flat positions among all outputs and all inputs, one after another
    (Note [positions of several inputs and outputs]). `weights` is None
    where every edge is a plain copy."""

    outputs: np.ndarray
    inputs: np.ndarray
    weights: Optional[np.ndarray]
    output_shapes: Tuple[Shape, ...]
    # How far each weight may be off, in eps of |G|, where a weight is itself
    # computed from numbers (grid_sample's 1 - t: Note [routes made whole]).
    slack: Optional[np.ndarray] = None
    # With planes > 1, the edges of one plane (the last dims), the same for
    # each of `planes` planes before them (a recorded PositionMap's).
    planes: int = 1
    input_plane: int = 0
    output_plane: int = 0
    # The map read as strides, where it is one (Note [routes read as strides]).
    strided: Optional["Strided"] = None


@dataclass(frozen=True)
class Strided:
    """result[k] = input[offset + Σ_a k_a·strides[a]] for every output element
    k of `shape`, each input element taken from one k once the dims of
    stride 0 (`summed`) are set aside (Note [routes read as strides])."""

    offset: int
    shape: Shape
    strides: Tuple[int, ...]
    summed: Tuple[int, ...]  # dims of stride 0: broadcast copies, added up going back
    covers: bool  # every input element is taken
    identity: bool  # the map is the positions in order: the gradient is the upstream, reshaped


_MISSING = object()


def _call(forward: str, bind: Callable[[str], Any], mode: str, operand_names: Sequence[str], numbers=None):
    """Evaluate a forward call; `mode` is "map" (positions), "trace" (traced
    elements) or "numbers" (replaying the op on its numbers)."""
    call = ast.parse(forward, mode="eval").body
    name = call.func.id
    function = FUNCTIONS[name]
    signature = inspect.signature(function)
    bound = signature.bind_partial(*[bind(arg.id) for arg in call.args])
    names = {parameter: arg.id for parameter, arg in zip(signature.parameters, call.args)}
    if "fill" in signature.parameters and mode != "numbers" and names.get("fill") not in operand_names:
        bound.arguments["fill"] = EMPTY if mode == "map" else 0
    if "numbers" in signature.parameters:
        bound.arguments["numbers"] = numbers
    missing = [names.get(p, p) for p, value in bound.arguments.items() if value is _MISSING]
    if missing:
        raise KeyError(", ".join(missing))
    return function(*bound.args, **bound.kwargs)


def _binder(operands: Sequence[Tuple[str, Any]], arguments: Dict[str, Any]) -> Callable[[str], Any]:
    by_name = dict(operands)

    def bind(word: str):
        if word == VARIADIC:
            return [array for _, array in operands]
        if word in by_name:
            return by_name[word]
        return arguments.get(word, _MISSING)
    return bind


def _outputs(result) -> List[np.ndarray]:
    return [np.asarray(part) for part in result] if isinstance(result, (list, tuple)) else [np.asarray(result)]


def function_name(forward: str) -> str:
    return ast.parse(forward, mode="eval").body.func.id


def routes(forward: str, shapes: Sequence[Tuple[str, Shape]], arguments: Dict[str, Any],
           numbers: Sequence[Optional[np.ndarray]] = ()) -> Routes:
    """Run a routing row's forward on the positions of operands of these
    shapes (in the node's operand order): every (output element, input
    element) edge, with its weight.

    >>> r = routes("cat(tensors, dim)", [("a", (2,)), ("b", (1,))], {"dim": 0})
    >>> r.outputs.tolist(), r.inputs.tolist()
    ([0, 1, 2], [0, 1, 2])
    """
    offsets = np.cumsum([0] + [int(np.prod(shape, dtype=np.int64)) for _, shape in shapes])
    position_arrays = [(name, positions(shape, int(offset))) for (name, shape), offset in zip(shapes, offsets)]
    names = [name for name, _ in shapes] + ([VARIADIC] if shapes else [])
    traced = function_name(forward) in SUMMING
    result = None
    if not traced:
        try:
            result = _outputs(_call(forward, _binder(position_arrays, arguments), "map", names, numbers))
        except _Collision:
            traced = True
    if traced:
        try:
            result = _outputs(_call(forward, _binder([(name, _traced(array)) for name, array in position_arrays],
                                                     arguments), "trace", names, numbers))
        except _NotLinear:
            return _differentiated(forward, position_arrays, names, arguments, numbers)
    output_shapes = tuple(part.shape for part in result)
    if not traced:
        flat = np.concatenate([part.reshape(-1) for part in result]).astype(np.int64) if result else \
            np.zeros(0, np.int64)
        taken = np.flatnonzero(flat != EMPTY)
        return Routes(taken, flat[taken], None, output_shapes)
    outputs, inputs, weights = [], [], []
    for k, element in enumerate(np.concatenate([part.reshape(-1) for part in result]).tolist()):
        if isinstance(element, Linear):
            for position, weight in element.terms.items():
                outputs.append(k)
                inputs.append(position)
                weights.append(weight)
    return Routes(np.asarray(outputs, np.int64), np.asarray(inputs, np.int64),
                  np.asarray(weights, np.float64), output_shapes)


def _differentiated(forward: str, position_arrays, names, arguments, numbers) -> Routes:
    """The routes of a forward that multiplies input elements: run on sympy
    symbols, each output differentiated by sympy (Note [products of inputs])."""
    import sympy as sp

    symbolic = [(name, np.vectorize(lambda p: sp.Symbol(f"p{p}", real=True), otypes=[object])(array)
                 if array.size else np.empty(array.shape, dtype=object)) for name, array in position_arrays]
    result = _outputs(_call(forward, _binder(symbolic, arguments), "trace", names, numbers))
    at: Dict[sp.Symbol, sp.Float] = {}  # each input element's number, where capture has it
    for (_, array), known in zip(symbolic, list(numbers) + [None] * len(symbolic)):
        if known is not None and np.size(known) == array.size:
            at.update(zip(array.reshape(-1).tolist(), map(sp.Float, np.asarray(known, dtype=float).reshape(-1))))
    outputs, inputs, weights = [], [], []
    for k, element in enumerate(np.concatenate([part.reshape(-1) for part in result]).tolist()):
        if not isinstance(element, sp.Expr):
            continue
        for symbol in sorted(element.free_symbols, key=lambda s: int(s.name[1:])):
            derivative = element.diff(symbol).xreplace(at)
            if derivative.free_symbols:
                raise ValueError(f"∂result/∂input needs numbers capture does not have: {derivative}")
            outputs.append(k)
            inputs.append(int(symbol.name[1:]))
            weights.append(float(derivative))
    return Routes(np.asarray(outputs, np.int64), np.asarray(inputs, np.int64), np.asarray(weights, np.float64),
                  tuple(part.shape for part in result))


def _cat_shape(shapes, result_shape, arguments) -> Optional[Shape]:
    """The one cat input whose size nobody kept: the result's, less the others'."""
    if sum(shape is None for _, shape in shapes) != 1 or not result_shape:
        return None
    axis = _axis(arguments["dim"], len(result_shape))
    known = sum(shape[axis] for _, shape in shapes if shape is not None and shape != (0,))
    return tuple(result_shape[:axis]) + (result_shape[axis] - known,) + tuple(result_shape[axis + 1:])


# For an operand whose shape nobody kept (a constant torch did not save):
# its shape, from the result's and the op's arguments, where the op says.
SHAPES_FROM_THE_RESULT: Dict[str, Callable[[str, list, Shape, Dict[str, Any]], Optional[Shape]]] = {
    "stack": lambda word, shapes, result, arguments: tuple(np.delete(
        np.asarray(result, dtype=np.int64), _axis(arguments["dim"], len(result))).tolist()),
    "cat": lambda word, shapes, result, arguments: _cat_shape(shapes, result, arguments),
    "pooling_backward2d": lambda word, shapes, result, arguments: (
        tuple(result) if word == "self" else np.shape(arguments["indices"])),
    "copied": lambda word, shapes, result, arguments: tuple(result) if word == "self" else None,
    "filled": lambda word, shapes, result, arguments: tuple(result) if word == "self" else None,
}
SHAPES_FROM_THE_RESULT["pooling_backward3d"] = SHAPES_FROM_THE_RESULT["pooling_backward2d"]


def complete_shapes(forward: str, shapes: Sequence[Tuple[str, Optional[Shape]]], result_shape: Shape,
                    arguments: Dict[str, Any]) -> List[Tuple[str, Shape]]:
    """The operands' shapes, with those nobody recorded (a constant tensor in
    a cat: torch keeps neither it nor its size) worked out from the result
    where the op allows (SHAPES_FROM_THE_RESULT; a self the op writes into
    has the result's shape). A shape left unknown becomes (): one element
    that broadcasts (index_put's values), or a shape the forward refuses."""
    shapes = list(shapes)
    if all(shape is not None for _, shape in shapes):
        return shapes
    name = function_name(forward)
    def worked_out(word: str) -> Optional[Shape]:
        if name in WRITES_INTO_SELF and word == "self":
            return tuple(result_shape)
        rule = SHAPES_FROM_THE_RESULT.get(name)
        return rule(word, shapes, tuple(result_shape), arguments) if rule is not None else None
    return [(word, shape if shape is not None else (worked_out(word) or ())) for word, shape in shapes]


# Note [routes read as strides]
# The map of a view, a reshape, a transpose, a permute, an expand, a select
# or a slice, found by running the forward on positions, takes input element
# offset + Σ_a k_a·s_a into output element k: an affine map, which numpy can
# state as strides. Read that way (`read_as_strides`, checked element by
# element against the map itself, and against two output elements taking one
# input element outside the dims of stride 0), sending the upstream back
# along the edges is one strided copy of it into the input's place, after
# adding it up over the dims of stride 0 (an expand's copies), instead of a
# bincount over every edge: the same sums, the same map, from the same
# forward. A reshape's map is the positions in order, and its gradient is the
# upstream itself, reshaped. Maps that are not affine (an index, a cat, a
# pad's reflections) keep the bincount.
def read_as_strides(found: Routes, sizes: Sequence[int]) -> Routes:
    """`found` with its map read as strides where it is one (Note [routes
    read as strides]); `found` unchanged otherwise.

    >>> r = read_as_strides(routes("swapaxes(self, dim0, dim1)", [("self", (2, 3))], {"dim0": 0, "dim1": 1}), [6])
    >>> r.strided.strides, [g.tolist() for g in gradients(r, np.arange(6.0), [6])]
    ((1, 3), [[0.0, 2.0, 4.0, 1.0, 3.0, 5.0]])
    """
    if found.weights is not None or found.slack is not None or _by_plane(found) or len(found.output_shapes) != 1 \
            or len(sizes) != 1 or not sizes[0]:
        return found
    shape, size = tuple(found.output_shapes[0]), int(sizes[0])
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0 or len(found.outputs) != count or not np.array_equal(found.outputs, np.arange(count)):
        return found  # an output element from no input (a pad, tril's zeros)
    source = found.inputs.reshape(shape)
    offset = int(source.flat[0])
    strides = tuple(int(source[tuple(1 if d == axis else 0 for d in range(len(shape)))]) - offset if n > 1 else 0
                    for axis, n in enumerate(shape))
    low = offset + sum(min(0, (n - 1) * stride) for n, stride in zip(shape, strides))
    high = offset + sum(max(0, (n - 1) * stride) for n, stride in zip(shape, strides))
    if low < 0 or high >= size:
        return found
    affine = np.full(shape, offset, dtype=np.int64)
    for axis, (n, stride) in enumerate(zip(shape, strides)):
        if stride:
            affine += (np.arange(n, dtype=np.int64) * stride).reshape((-1,) + (1,) * (len(shape) - axis - 1))
    if not np.array_equal(affine, source):
        return found
    summed = tuple(axis for axis, (n, stride) in enumerate(zip(shape, strides)) if stride == 0 and n > 1)
    kept = source[tuple(0 if axis in summed else slice(None) for axis in range(len(shape)))]
    if kept.size and int(np.bincount(kept.reshape(-1), minlength=size).max()) > 1:
        return found  # two output elements take one input element: not a copy, the bincount adds them
    identity = not summed and count == size and np.array_equal(found.inputs, np.arange(size))
    return replace(found, strided=Strided(offset, shape, strides, summed, kept.size == size, identity))


def most_collected(found: Routes, sizes: Sequence[int]) -> int:
    """The most edges that reach one input element (how many numbers torch
    adds into it)."""
    if found.strided is not None:
        return max(1, int(np.prod([found.strided.shape[axis] for axis in found.strided.summed], dtype=np.int64)))
    if not len(found.inputs):
        return 1
    return int(np.max(np.bincount(found.inputs, minlength=int(np.sum(sizes))), initial=1))


def _strided_gradient(strided: Strided, upstream: np.ndarray, size: int) -> np.ndarray:
    """The upstream sent back along a map read as strides (Note [routes read as strides])."""
    upstream = np.asarray(upstream, dtype=np.float64).reshape(strided.shape)
    if strided.identity:
        return upstream.reshape(-1)
    if strided.summed:
        upstream = upstream.sum(axis=strided.summed)
    strides = [stride for axis, stride in enumerate(strided.strides) if axis not in strided.summed]
    gradient = np.empty(size) if strided.covers else np.zeros(size)
    place = np.lib.stride_tricks.as_strided(gradient[strided.offset:], upstream.shape,
                                            [stride * gradient.itemsize for stride in strides])
    place[...] = upstream  # in bounds and one input element per output element: read_as_strides checked both
    return gradient


def gradients(found: Routes, upstream: np.ndarray, sizes: Sequence[int]) -> List[np.ndarray]:
    """Each input's gradient, flat: every upstream element (all outputs',
    flat, one after another) sent back along its edges, and added up where
    several edges reach one input element."""
    if found.strided is not None and found.weights is None:
        return [_strided_gradient(found.strided, upstream, int(sizes[0]))]
    if _by_plane(found):
        return [_plane_gradient(found, upstream)]
    contributions = np.asarray(upstream, dtype=np.float64).reshape(-1)[found.outputs]
    if found.weights is not None:
        contributions = contributions * found.weights
    total = int(np.sum(sizes))
    flat = np.bincount(found.inputs, weights=contributions, minlength=total) if total else np.zeros(0)
    return np.split(flat, np.cumsum(sizes)[:-1].tolist())


def _by_plane(found: Routes) -> bool:
    """Whether the edges are one plane's (a recorded map's, of any number of planes, 0 too)."""
    return found.planes != 1 or found.input_plane > 0


def _plane_gradient(found: Routes, upstream: np.ndarray) -> np.ndarray:
    """One operand's gradient, flat, where the edges are one plane's: the
    upstream's planes times the plane's sparse matrix of weights."""
    import scipy.sparse

    weights = np.ones(len(found.outputs)) if found.weights is None else found.weights
    matrix = scipy.sparse.csr_matrix((weights, (found.outputs, found.inputs)),
                                     shape=(found.output_plane, found.input_plane))
    upstream = np.asarray(upstream, dtype=np.float64).reshape(found.planes, found.output_plane)
    return np.asarray(upstream @ matrix).reshape(-1)


def _recorded_routes(recorded: PositionMap) -> Routes:
    return Routes(recorded.outputs, recorded.inputs, recorded.weights, tuple(recorded.output_shapes), None,
                  recorded.planes, recorded.input_plane, recorded.output_plane)


def _fill_of(forward: str, arguments: Dict[str, Any]):
    """What an output element from no input holds: the argument the row binds
    to its function's `fill` (Note [a fill, a constant copy, and data that
    picks elements]), else 0."""
    call = ast.parse(forward, mode="eval").body
    for parameter, argument in zip(inspect.signature(FUNCTIONS[call.func.id]).parameters, call.args):
        if parameter == "fill":
            if arguments.get(argument.id) is None:
                raise KeyError(argument.id)  # torch kept no pad value: the replay cannot say the output
            return arguments[argument.id]
    return 0


def _recorded_replay(recorded: PositionMap, operands: Sequence[Tuple[str, np.ndarray]], fill=0) -> List[np.ndarray]:
    """The op's outputs from its recorded map and its operands' numbers
    (an output element from no input holds `fill`)."""
    found = _recorded_routes(recorded)
    values = np.concatenate([np.asarray(array, dtype=np.float64).reshape(-1) for _, array in operands])
    if _by_plane(found):
        import scipy.sparse

        weights = np.ones(len(found.outputs)) if found.weights is None else found.weights
        matrix = scipy.sparse.csr_matrix((weights, (found.outputs, found.inputs)),
                                         shape=(found.output_plane, found.input_plane))
        flat = np.asarray(values.reshape(found.planes, found.input_plane) @ matrix.T).reshape(-1)
    else:
        taken = values[found.inputs] * (1.0 if found.weights is None else found.weights)
        total = int(sum(np.prod(s, dtype=np.int64) for s in found.output_shapes))
        flat = np.bincount(found.outputs, weights=taken, minlength=total)
        if np.any(np.asarray(fill) != 0):
            flat[np.bincount(found.outputs, minlength=total) == 0] = float(np.asarray(fill).reshape(-1)[0])
    cuts = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in found.output_shapes])[:-1].tolist()
    return [part.reshape(shape) for part, shape in zip(np.split(flat, cuts), found.output_shapes)]


def replay(forward: str, operands: Sequence[Tuple[str, np.ndarray]], arguments: Dict[str, Any]) -> List[np.ndarray]:
    """The forward run on the operands' numbers: the op's outputs."""
    if arguments.get(PositionMap.PARAM) is not None:
        return _recorded_replay(arguments[PositionMap.PARAM], operands, _fill_of(forward, arguments))
    names = [name for name, _ in operands]
    return _outputs(_call(forward, _binder(operands, arguments), "numbers", names,
                          [array for _, array in operands]))


# --- the single-input map, as the simple rows use it ----------------------------------


def route_back(index_map: np.ndarray, upstream: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """The adjoint of result = self[pi]: scatter-add upstream along pi."""
    pi = np.asarray(index_map).ravel()
    taken = pi != EMPTY
    flat = np.bincount(
        pi[taken],
        weights=np.broadcast_to(upstream, np.shape(index_map)).ravel()[taken],
        minlength=int(np.prod(shape, dtype=np.int64)),
    )
    return flat.reshape(shape)


def index_map(forward: str, shape: Tuple[int, ...], arguments: Dict[str, object]) -> np.ndarray:
    """Run a routing row's forward, e.g. ``"swapaxes(self, dim0, dim1)"``,
    on the positions of an operand of `shape`: the map pi."""
    (result, *_) = _outputs(_call(forward, _binder([("self", positions(shape))], arguments), "map", ["self"]))
    return result


# --- complex numbers --------------------------------------------------------------------

# Note [complex routing]
# A routing op moves complex elements whole: result[k] = self[pi(k)] is
# holomorphic, ∂result[k]/∂self[j] = δ(j, pi(k)) and ∂/∂conj(self[j]) = 0, so
# torch's conjugate Wirtinger gradient (Note [complex gradients] in
# derive/complex.py) is u·conj(δ) = u: the complex upstream goes back along
# the same routes, its real and imaginary parts each as a real one would (a
# real weight w of a pool or an interpolation is its own conjugate). A real
# operand of a complex result keeps the real part, as torch's engine does.
#
# view_as_real and view_as_complex change what an element is: a complex z
# is the pair (re z, im z), so they are routings between complex elements and
# their real pairs. Their forwards run on `Parts`: traced elements holding
# result[k] = Σ_j a[k, j]·z[j] + b[k, j]·conj(z[j]), whose coefficients are the
# two Wirtinger derivatives, built by the forward's own operations from
# re(z) = (z + conj(z))/2 and im(z) = (z − conj(z))/2i, the definitions sympy
# uses for pointwise rows. The gradient of input j is then
# Σ_k conj(u[k])·b[k, j] + u[k]·conj(a[k, j]), real for a real operand.


def complex_gradients(found: Routes, upstream: np.ndarray, sizes: Sequence[int]) -> List[np.ndarray]:
    """`gradients` for a complex upstream: its real and imaginary parts
    each sent back along the routes (Note [complex routing]).

    >>> r = routes("broadcast_to(self, shape)", [("self", (2,))], {"shape": (2, 2)})
    >>> complex_gradients(r, np.array([[1 + 2j, 3 - 1j], [1, 1]]), [2])[0].tolist()
    [(2+2j), (4-1j)]
    """
    upstream = np.asarray(upstream)
    real_parts = gradients(found, upstream.real, sizes)
    imaginary_parts = gradients(found, upstream.imag, sizes)
    return [re + 1j * im for re, im in zip(real_parts, imaginary_parts)]


class Parts:
    """A traced element Σ a·z[p] + b·conj(z[p]), as {p: (a, b)} (Note
    [complex routing]).

    >>> Parts({0: (1, 0)}).real
    Parts({0: ((0.5+0j), (0.5+0j))})
    """

    __slots__ = ("terms",)

    def __init__(self, terms: Dict[int, Tuple[complex, complex]]):
        self.terms = terms

    def __add__(self, other):
        if isinstance(other, (int, float, complex, np.number)) and other == 0:
            return self
        if not isinstance(other, Parts):
            return NotImplemented
        terms = dict(self.terms)
        for p, (a, b) in other.terms.items():
            a0, b0 = terms.get(p, (0j, 0j))
            terms[p] = (a0 + a, b0 + b)
        return Parts(terms)

    __radd__ = __add__

    def __mul__(self, factor):
        if isinstance(factor, (Parts, np.ndarray)):
            return NotImplemented
        factor = complex(factor)
        return Parts({p: (a * factor, b * factor) for p, (a, b) in self.terms.items()})

    __rmul__ = __mul__

    def __sub__(self, other):
        return self + other * -1

    def conjugate(self):
        return Parts({p: (np.conj(b), np.conj(a)) for p, (a, b) in self.terms.items()})

    @property
    def real(self):
        return (self + self.conjugate()) * 0.5

    @property
    def imag(self):
        return (self - self.conjugate()) * (1 / 2j)

    def __repr__(self):
        return f"Parts({ {p: (complex(a), complex(b)) for p, (a, b) in self.terms.items()} })"


def _as_parts(position_array: np.ndarray) -> np.ndarray:
    """Each position as a traced complex element, z[p] = {p: (1, 0)}."""
    traced = np.empty(position_array.shape, dtype=object)
    traced.reshape(-1)[:] = [Parts({p: (1 + 0j, 0j)}) for p in position_array.reshape(-1).tolist()]
    return traced


def _real_pairs(array):
    """view_as_real's forward: each element as the pair (re z, im z)."""
    array = np.asarray(array)
    if array.dtype == object:
        return np.stack([np.vectorize(lambda e: e.real, otypes=[object])(array),
                         np.vectorize(lambda e: e.imag, otypes=[object])(array)], axis=-1)
    return np.stack([array.real, array.imag], axis=-1)


def _complex_of_pairs(array):
    """view_as_complex's forward: each pair (x, y) of the last dim as x + i·y."""
    array = np.asarray(array)
    return array[..., 0] + array[..., 1] * 1j


PART_FUNCTIONS = {"view_as_real": _real_pairs, "view_as_complex": _complex_of_pairs}
FUNCTIONS.update(PART_FUNCTIONS)


def part_routes(forward: str, shapes: Sequence[Tuple[str, Shape]], arguments: Dict[str, Any]):
    """The forward of a PART_FUNCTIONS row run on Parts: (output shapes,
    outputs, inputs, a, b) for every edge (Note [complex routing])."""
    offsets = np.cumsum([0] + [int(np.prod(shape, dtype=np.int64)) for _, shape in shapes])
    traced = [(name, _as_parts(positions(shape, int(offset)))) for (name, shape), offset in zip(shapes, offsets)]
    names = [name for name, _ in shapes]
    result = _outputs(_call(forward, _binder(traced, arguments), "trace", names))
    outputs, inputs, a, b = [], [], [], []
    for k, element in enumerate(np.concatenate([part.reshape(-1) for part in result]).tolist()):
        for p, (dz, dz_conjugate) in (element.terms.items() if isinstance(element, Parts) else ()):
            outputs.append(k)
            inputs.append(p)
            a.append(dz)
            b.append(dz_conjugate)
    return (tuple(part.shape for part in result), np.asarray(outputs, np.int64), np.asarray(inputs, np.int64),
            np.asarray(a, np.complex128), np.asarray(b, np.complex128))


def part_gradients(edges, upstream: np.ndarray, sizes: Sequence[int], weights=None) -> List[np.ndarray]:
    """Σ_k conj(u[k])·b[k, j] + u[k]·conj(a[k, j]) for each input j, from
    `part_routes`' edges; `weights` replaces the pair (a, b) by |a| + |b|
    for the budget (Note [complex routing])."""
    _, outputs, inputs, a, b = edges
    u = np.asarray(upstream).reshape(-1)[outputs]
    each = u * weights if weights is not None else np.conj(u) * b + u * np.conj(a)
    total = int(np.sum(sizes))
    flat = (np.bincount(inputs, weights=np.real(each), minlength=total)
            + 1j * np.bincount(inputs, weights=np.imag(each), minlength=total)) if total else np.zeros(0, complex)
    return np.split(flat, np.cumsum(sizes)[:-1].tolist())


# Forwards whose routes depend on comparing numbers (max's ties, sorting) or
# that multiply elements: not defined, or not routed, for complex numbers.
NOT_COMPLEX = frozenset({"embedding_bag"})


def complex_ready(forward: str) -> bool:
    """Whether a routing forward routes complex numbers (Note [complex routing])."""
    name = function_name(forward)
    return name not in NOT_COMPLEX and "numbers" not in inspect.signature(FUNCTIONS[name]).parameters
# --- lu_unpack: the two triangles of a packed LU ---------------------------------------


def _lu_unpack(array, fill=0):
    """L and U from the packed LU of a (*, m, n) matrix, k = min(m, n): L is
    (*, m, k), the part below the diagonal with 1 on it; U is (*, k, n), the
    diagonal and above. The 1s and 0s come from no input."""
    rows, columns = array.shape[-2:]
    k = min(rows, columns)
    unit = EMPTY if fill == EMPTY else 1
    lower = _triangle(array[..., :, :k], -1, fill, lower=True)
    lower[..., np.arange(k), np.arange(k)] = unit
    upper = _triangle(array[..., :k, :], 0, fill, lower=False)
    return [lower, upper]


FUNCTIONS["lu_unpack"] = _lu_unpack


# --- grid_sample: weights that are formulas of the grid -------------------------------

# Note [routes made whole]
# grid_sample's output element is Σ_taps W(grid)·input[tap]: a routing of the
# input with weights, as interpolation is, but the weights are functions of
# the grid, itself an operand. Its Jacobian is still sparse: ∂result[k]/∂input
# at each tap is W, and ∂result[k]/∂grid at the grid point k reads is
# Σ_taps ∂W/∂grid·input[tap]. sympy derives ∂W/∂grid once per mode from the
# formulas below (where a grid coordinate reads, then each tap's weight), and
# numpy evaluates the weights and their derivatives for every output element
# at once: a forward in ROUTES_MADE_WHOLE gives its Routes itself, edges to
# the input's taps and to the grid's coordinates, rather than being traced
# element by element (which for grid_sampler_3d's 5-million-element inputs
# would be millions of Python objects). Which tap a coordinate falls next to
# (floor, or round for nearest) is constant between grid lines, so its
# derivative is 0 (Note [piecewise-constant functions] in derive/functions.py).
# The routing budget counts each weight's rounding relative to the weight,
# but a weight such as 1 - t, with t = place - floor(place), errs by about
# eps·|place| however small it is (without this, larger random grids gave a
# false mismatch: 1e-14 at 1.7 in float64). So these Routes carry `slack`,
# each edge's weight error in eps, which _routing_budget adds.

# Where a grid coordinate x in [-1, 1] reads along a dim of `size` places,
# in stages, each a formula of the place x the stage before gave. First
# torch's grid_sampler_unnormalize, by align_corners:
_UNNORMALIZED = {True: "(x + 1)/2*(size - 1)", False: "((x + 1)*size - 1)/2"}
# padding_mode 1 (border) clips the place into the input; torch passes no
# gradient at the bounds themselves, so they sit in the constant pieces.
_CLIPPED = "Piecewise((0, x <= 0), (size - 1, x >= size - 1), (x, True))"
# padding_mode 2 (reflection) reflects the place off [low, low + span] (the
# edges' centres with align_corners, else their outer sides), then clips.
_REFLECTED = {
    True: "Piecewise((0, Eq(size, 1)), (Abs(x) - (size - 1)*floor(Abs(x)/(size - 1)), "
          "Eq(Mod(floor(Abs(x)/(size - 1)), 2), 0)), (size - 1 - Abs(x) + (size - 1)*floor(Abs(x)/(size - 1)), True))",
    False: "Piecewise((Abs(x + 1/2) - size*floor(Abs(x + 1/2)/size) - 1/2, Eq(Mod(floor(Abs(x + 1/2)/size), 2), 0)),"
           " (size - Abs(x + 1/2) + size*floor(Abs(x + 1/2)/size) - 1/2, True))",
}
_PADDINGS = {0: (), 1: (_CLIPPED,), 2: (None, _CLIPPED)}  # None: the reflection for the align_corners in force
# Each tap's weight along one dim, in t = x - base: base is floor(x) for
# bilinear (taps base, base + 1) and bicubic (base - 1 to base + 2: Keys'
# cubic convolution with A = -0.75, as torch's), round(x) for nearest.
_CUBIC_NEAR = "((A + 2)*s - (A + 3))*s**2 + 1"
_CUBIC_FAR = "((A*s - 5*A)*s + 8*A)*s - 4*A"
_TAPS = {  # interpolation_mode: (rounding, first tap's offset from base, the taps' weights)
    0: ("floor", 0, ("1 - t", "t")),
    1: ("round", 0, ("1",)),
    2: ("floor", -1, tuple(piece.replace("s", f"({at})") for piece, at in (
        (_CUBIC_FAR, "t + 1"), (_CUBIC_NEAR, "t"), (_CUBIC_NEAR, "1 - t"), (_CUBIC_FAR, "2 - t")))),
}


@functools.lru_cache(maxsize=None)
def _grid_formulas(mode: int, padding: int, align_corners: bool):
    """numpy functions, each with its derivative derived by sympy: the
    stages of where a coordinate reads, the padding of a tap's place
    (bicubic pads its taps, not the place it reads), and the taps' weights.
    The chain through the stages is multiplied out in numbers, as the
    chain rule is everywhere else."""
    import sympy as sp

    from . import functions

    x, t, size = sp.symbols("x t size", real=True)
    local = dict(functions.NAMES, x=x, t=t, size=size, A=sp.Rational(-3, 4))
    modules = functions.NUMPY_MODULES

    def pair(text: str, variable: sp.Symbol):
        expr = sp.parse_expr(text, local_dict=local)
        return (sp.lambdify((variable, size), expr, modules=modules),
                sp.lambdify((variable, size), sp.diff(expr, variable), modules=modules))

    paddings = [text or _REFLECTED[bool(align_corners)] for text in _PADDINGS[padding]]
    read = [pair(_UNNORMALIZED[bool(align_corners)], x)] + ([] if mode == 2 else [pair(p, x) for p in paddings])
    tap_padding = [pair(p, x)[0] for p in paddings] if mode == 2 else []
    rounding, first, pieces = _TAPS[mode]
    return read, tap_padding, rounding, first, [pair(piece, t) for piece in pieces]


def _grid_taps(input_shape: Shape, grid: np.ndarray, mode: int, padding: int, align_corners: bool):
    """For every grid point (n, *out) and each tap: the input place it reads
    (per spatial dim, inside or not), its weight, and the weight's
    derivative in each grid coordinate."""
    if mode not in _TAPS or padding not in _PADDINGS:
        raise ValueError(f"grid_sample's interpolation mode {mode} or padding mode {padding} is not one the row knows")
    read, tap_padding, rounding, first, weights = _grid_formulas(mode, padding, bool(align_corners))
    spatial = len(input_shape) - 2
    grid = np.asarray(grid, dtype=np.float64)
    per_dim = []  # per grid coordinate d (x, y, z): for each tap, (place, weight, derivative in the coordinate)
    with np.errstate(all="ignore"):
        for d in range(spatial):
            size = float(input_shape[-1 - d])
            place, slope = grid[..., d], np.ones(grid.shape[:-1])
            for value, derivative in read:
                place, slope = np.broadcast_to(value(place, size), slope.shape), slope * derivative(place, size)
            base = np.round(place) if rounding == "round" else np.floor(place)
            base = np.nan_to_num(base, nan=-4.0, posinf=size + 4, neginf=-4.0)
            taps = []
            for offset, (weight, derivative) in enumerate(weights):
                tap = base + first + offset
                for value in tap_padding:
                    tap = value(tap, size)
                taps.append((np.trunc(tap).astype(np.int64), np.broadcast_to(weight(place - base, size), base.shape),
                             np.broadcast_to(derivative(place - base, size) * slope, base.shape)))
            per_dim.append(taps)
    for choice in np.ndindex(*(len(taps) for taps in per_dim)):
        chosen = [per_dim[d][t] for d, t in enumerate(choice)]
        inside = np.ones(grid.shape[:-1], dtype=bool)
        for d, (tap, _, _) in enumerate(chosen):
            inside &= (tap >= 0) & (tap < input_shape[-1 - d])
        weight = np.prod([w for _, w, _ in chosen], axis=0)
        by_coordinate = [np.prod([dw if e == d else w for e, (_, w, dw) in enumerate(chosen)], axis=0)
                         for d in range(spatial)]
        yield [tap for tap, _, _ in chosen], inside, weight, by_coordinate


def _grid_input_index(input_shape: Shape, taps: List[np.ndarray], inside: np.ndarray) -> np.ndarray:
    """The flat position, within one channel of one sample, of each tap
    (0 where it is outside: its weight is then dropped)."""
    flat = np.zeros(inside.shape, dtype=np.int64)
    for d, tap in enumerate(reversed(taps)):  # taps are x, y, z; places are (z, y, x)
        axis = len(input_shape) - len(taps) + d
        flat = flat * input_shape[axis] + np.where(inside, tap, 0)
    return flat


def _grid_sample(array, grid, interpolation_mode, padding_mode, align_corners, numbers=None):
    """The forward on numbers (for replay): Σ_taps weight·input[tap]."""
    array = np.asarray(array, dtype=np.float64)
    batch, channels = array.shape[:2]
    planes = array.reshape(batch, channels, -1)
    result = np.zeros((batch, channels) + np.shape(grid)[1:-1])
    samples = np.arange(batch).reshape((batch,) + (1,) * (np.ndim(grid) - 2))
    for taps, inside, weight, _ in _grid_taps(array.shape, grid, interpolation_mode, padding_mode, align_corners):
        values = planes[samples, :, _grid_input_index(array.shape, taps, inside)]  # (n, *out, C)
        result += np.moveaxis(np.where(inside[..., None], values * weight[..., None], 0.0), -1, 1)
    return result


def _grid_routes(shapes, arguments, numbers) -> Routes:
    """grid_sample's edges (Note [routes made whole]): result[n, c, *out] to
    input[n, c, tap] with the tap's weight, and to grid[n, *out, d] with
    Σ_taps ∂weight/∂grid[d]·input[n, c, tap]."""
    (_, input_shape), (_, grid_shape) = shapes
    array, grid = numbers[0], numbers[1]
    if grid is None:
        raise ValueError("grid_sample's weights need the grid's numbers, which capture does not have")
    batch, channels = input_shape[:2]
    out = tuple(grid_shape[1:-1])
    spatial = len(input_shape) - 2
    plane = int(np.prod(input_shape[2:], dtype=np.int64))
    points = int(np.prod(out, dtype=np.int64))
    result_index = np.arange(batch * channels * points, dtype=np.int64).reshape((batch, channels) + out)
    sample_of = np.arange(batch).reshape((batch,) + (1,) * len(out))
    channel_of = np.arange(channels).reshape((1, channels) + (1,) * len(out))
    input_size = int(np.prod(input_shape, dtype=np.int64))
    grid_index = input_size + np.arange(int(np.prod(grid_shape, dtype=np.int64)), dtype=np.int64).reshape(grid_shape)
    outputs, inputs, weights, slack = [], [], [], []
    values = None if array is None else np.asarray(array, dtype=np.float64).reshape(batch, channels, plane)
    # a weight such as 1 - t, t = place - floor(place), errs by about
    # eps·|place| whatever its size; bicubic's coefficients (and their
    # derivatives, up to ~3) a few times that
    places = float(sum(size + 1 for size in input_shape[2:]))
    factor = 4.0 if arguments["interpolation_mode"] == 2 else 1.0
    mode, padding, align = (arguments[name] for name in ("interpolation_mode", "padding_mode", "align_corners"))
    for taps, inside, weight, by_coordinate in _grid_taps(input_shape, grid, mode, padding, align):
        at = _grid_input_index(input_shape, taps, inside)  # (n, *out)
        keep = np.broadcast_to(inside[:, None], result_index.shape)
        source = (sample_of * channels)[:, None] * plane + channel_of * plane + at[:, None]
        outputs.append(result_index[keep])
        inputs.append(source[keep])
        weights.append(np.broadcast_to(weight[:, None], result_index.shape)[keep])
        slack.append(np.full(int(np.count_nonzero(keep)), 0.0 if mode == 1 else factor * places))
        if mode == 1:  # nearest's weight is 1 whatever the grid
            continue
        if values is None:
            raise ValueError("grid_sample's gradient in the grid needs the input's numbers")
        picked = np.take_along_axis(values, np.where(inside, at, 0).reshape(batch, 1, -1).repeat(channels, 1),
                                    axis=2).reshape(keep.shape)
        # one edge per tap and coordinate: the taps' terms add up in the
        # gradient, and their sizes, not their sum, size the error budget
        for d in range(spatial):
            outputs.append(result_index[keep])
            inputs.append(np.broadcast_to(grid_index[..., d][:, None], result_index.shape)[keep])
            weights.append((by_coordinate[d][:, None] * picked)[keep])
            scale = (input_shape[2 + spatial - 1 - d] + 1) / 2  # ∂place/∂x: the grid's x is the last dim's
            slack.append(factor * 3 * scale * places * np.abs(picked[keep]))
    return Routes(np.concatenate(outputs), np.concatenate(inputs), np.concatenate(weights).astype(np.float64),
                  ((batch, channels) + out,), np.concatenate(slack))


def _tie_edges(values: np.ndarray, result, dim, keepdim, offset: int):
    """(outputs, inputs, weights) of the mean of the elements equal to the
    result, for every element at once: torch's convention that tied
    elements share the gradient evenly (evenly_distribute_backward), as
    `_mean_of_ties` states it for one element."""
    dims = tuple(range(values.ndim)) if dim is None or len(np.atleast_1d(dim)) == 0 or values.ndim == 0 else \
        tuple(sorted(_axis(d, values.ndim) for d in np.atleast_1d(dim)))
    kept = tuple(1 if d in dims else n for d, n in enumerate(values.shape))
    peak = np.asarray(result, dtype=np.float64).reshape(kept)
    ties = (values == peak) | (np.isnan(values) & np.isnan(peak))
    count = np.maximum(ties.sum(axis=dims, keepdims=True), 1)
    inputs = np.flatnonzero(ties)
    outputs = np.broadcast_to(positions(kept, offset), values.shape).reshape(-1)[inputs]
    weights = np.broadcast_to(1.0 / count, values.shape).reshape(-1)[inputs]
    return outputs, inputs, weights


def _ties_routes(shapes, arguments, numbers) -> Routes:
    """mean_of_ties and aminmax (Note [ops that add elements up]), without
    tracing an element at a time: their edges come from the numbers."""
    if numbers[0] is None:
        raise ValueError("which elements tie with the result needs the numbers of self")
    values = np.asarray(numbers[0], dtype=np.float64)
    results = [arguments["min"], arguments["max"]] if "min" in arguments and "max" in arguments else \
        [arguments["result"]]
    dim, keepdim = arguments.get("dim"), bool(arguments.get("keepdim", False))
    edges, offset = [], 0
    for result in results:
        edges.append(_tie_edges(values, result, dim, keepdim, offset))
        offset += int(np.size(result))
    outputs, inputs, weights = (np.concatenate(part) for part in zip(*edges))
    return Routes(outputs.astype(np.int64), inputs.astype(np.int64), weights.astype(np.float64),
                  tuple(np.shape(result) for result in results))


# --- writes into self, all elements at once ---------------------------------------------
# scatter, scatter_add, index_copy, index_add, index_put and put name, for
# each source element, the place of self it is written to: those places
# (numpy on positions, as their forwards above) are the edges themselves.
# Self's element passes to its own place unless a write replaced it; every
# source element is a term of the place it was written to, colliding
# writes too (Note [writes that collide]), so no element is traced.


def _write_routes(self_shape: Shape, where: np.ndarray, sources: np.ndarray, weight: float, add: bool) -> Routes:
    size = int(np.prod(self_shape, dtype=np.int64))
    sources = np.broadcast_to(np.asarray(sources, dtype=np.int64), np.shape(where)).reshape(-1)
    where = np.asarray(where, dtype=np.int64).reshape(-1) % max(size, 1)  # (put's negative places count from the end)
    keep = np.ones(size, dtype=bool)
    if not add:
        keep[where] = False
    kept = np.flatnonzero(keep)
    weights = np.concatenate([np.ones(kept.size), np.full(where.size, float(weight))])
    return Routes(np.concatenate([kept, where]), np.concatenate([kept, sources]),
                  None if weight == 1 else weights, (tuple(self_shape),))


def _written_places(shapes, arguments) -> Tuple[Shape, np.ndarray, np.ndarray]:
    """For scatter and scatter_add: (self's shape, the place of self each
    index element names, the src element written there)."""
    (_, self_shape), (_, source_shape) = shapes
    index = _index_array(arguments["index"])
    size = int(np.prod(self_shape, dtype=np.int64))
    addressed, at = _grid(index, _axis(arguments["dim"], max(len(self_shape), 1)))
    where = positions(self_shape)[addressed] if self_shape else np.zeros(index.shape, np.int64)
    sources = positions(source_shape, size)[at] if source_shape else np.full(index.shape, size, np.int64)
    return self_shape, where, sources


def _indexed_places(shapes, arguments) -> Tuple[Shape, np.ndarray, np.ndarray]:
    """For index_copy and index_add: the places of self along dim that
    index names, and the source element written to each."""
    (_, self_shape), (_, source_shape) = shapes
    index = _index_array(arguments["index"]).reshape(-1)
    size = int(np.prod(self_shape, dtype=np.int64))
    sources = positions(source_shape, size)
    if not self_shape:
        return self_shape, np.zeros(index.shape, np.int64), sources.reshape(-1)
    return self_shape, positions(self_shape)[_along(arguments["dim"], len(self_shape), index)], sources


def _put_places(shapes, arguments) -> Tuple[Shape, np.ndarray, np.ndarray]:
    (_, self_shape), (_, source_shape) = shapes
    size = int(np.prod(self_shape, dtype=np.int64))
    if "indices" in arguments:  # index_put
        where = positions(self_shape)[_index_key(arguments["indices"])]
        return self_shape, where, np.broadcast_to(positions(source_shape, size), np.shape(where))
    return self_shape, _index_array(arguments["index"]).reshape(-1), positions(source_shape, size).reshape(-1)


ROUTES_OF_WRITES = {  # the places, whether the writes add, and their weight
    "scatter": (_written_places, lambda a: False, lambda a: 1),
    "scatter_add": (_written_places, lambda a: True, lambda a: 1),
    "index_copy": (_indexed_places, lambda a: False, lambda a: 1),
    "index_add": (_indexed_places, lambda a: True, lambda a: a.get("alpha", 1)),
    "index_put": (_put_places, lambda a: bool(a["accumulate"]), lambda a: 1),
    "put": (_put_places, lambda a: bool(a["accumulate"]), lambda a: 1),
}


def _write_routes_of(name: str):
    places_of, adds, weight_of = ROUTES_OF_WRITES[name]

    def made_whole(shapes, arguments, numbers) -> Routes:
        self_shape, where, sources = places_of(shapes, arguments)
        return _write_routes(self_shape, where, sources, float(np.asarray(weight_of(arguments))), adds(arguments))
    return made_whole


FUNCTIONS["grid_sample"] = _grid_sample
ROUTES_MADE_WHOLE: Dict[str, Callable[..., Routes]] = {"grid_sample": _grid_routes, "mean_of_ties": _ties_routes,
                                                       "aminmax": _ties_routes}
ROUTES_MADE_WHOLE.update((name, _write_routes_of(name)) for name in ROUTES_OF_WRITES)
_routes_element_by_element = routes


def routes(forward: str, shapes: Sequence[Tuple[str, Shape]], arguments: Dict[str, Any],  # noqa: F811
           numbers: Sequence[Optional[np.ndarray]] = ()) -> Routes:
    """Every (output element, input element) edge of a routing row's
    forward, with its weight: from the forward run on positions or traced
    elements, or, for a forward in ROUTES_MADE_WHOLE, from its own function
    (Note [routes made whole]).

    >>> grid = np.array([[[[0.5, 0.0]]]])  # one point, 3/4 of the way along x
    >>> r = routes("grid_sample(input, grid, interpolation_mode, padding_mode, align_corners)",
    ...            [("input", (1, 1, 1, 2)), ("grid", (1, 1, 1, 2))],
    ...            {"interpolation_mode": 0, "padding_mode": 0, "align_corners": True},
    ...            [np.array([[[[1.0, 3.0]]]]), grid])
    >>> [g.tolist() for g in gradients(r, np.ones(1), [2, 2])]  # the grid's x moves 0.25*1 + 0.75*3
    [[0.25, 0.75], [1.0, 0.0]]
    """
    if arguments.get(PositionMap.PARAM) is not None:  # torch's forward on positions (capture/positions.py)
        convention = CONVENTIONS.get(function_name(forward))
        found = _recorded_routes(arguments[PositionMap.PARAM])
        return convention(found, arguments) if convention is not None else found
    made_whole = ROUTES_MADE_WHOLE.get(function_name(forward))
    if made_whole is None:
        key = _routes_key(forward, shapes, arguments)
        if key is None:
            return _routes_element_by_element(forward, shapes, arguments, numbers)
        return _positions_routes(key, forward, shapes, arguments)
    return made_whole(shapes, arguments, list(numbers) + [None] * (len(shapes) - len(numbers)))


# Note [routes kept per shape]
# A forward run on positions depends on nothing but the operands' shapes
# and the arguments its call names: every layer of a model, and the local
# step verify.py runs again on torch's upstream, asks for the same map.
# Those maps are made once per (forward, shapes, arguments) and kept, read
# as strides (Note [routes read as strides]), their arrays read-only. Not
# kept: forwards that read the operands' numbers (ties, `numbers`), traced
# or made-whole ones, and arguments that are big arrays (an index).
_KEPT_ELEMENTS = 1 << 12  # an index array up to this size is part of a key; a bigger one is not kept


@functools.lru_cache(maxsize=None)
def _call_words(forward: str) -> Tuple[str, Tuple[str, ...], bool]:
    call = ast.parse(forward, mode="eval").body
    takes_numbers = "numbers" in inspect.signature(FUNCTIONS[call.func.id]).parameters
    return call.func.id, tuple(arg.id for arg in call.args), takes_numbers


def _key_part(value):
    if isinstance(value, np.ndarray):
        return None if value.size > _KEPT_ELEMENTS or value.dtype == object else \
            ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        parts = [_key_part(v) for v in value]
        return None if any(part is None and v is not None for part, v in zip(parts, value)) else \
            (type(value).__name__, tuple(parts))
    if value is None or isinstance(value, (bool, int, float, str, np.integer, np.floating, np.bool_)):
        return (type(value).__name__, value)
    return None


def _routes_key(forward: str, shapes, arguments: Dict[str, Any]):
    """The key of a map kept per shape, or None where it is not kept (Note [routes kept per shape])."""
    name, words, takes_numbers = _call_words(forward)
    if name in SUMMING or takes_numbers or any(shape is None for _, shape in shapes):
        return None
    operands = {word for word, _ in shapes} | {VARIADIC}
    parts = []
    for word in words:
        if word in operands:
            continue
        value = arguments.get(word, _MISSING)
        part = ("missing",) if value is _MISSING else _key_part(value)
        if part is None:
            return None
        parts.append((word, part))
    return forward, tuple((word, tuple(shape)) for word, shape in shapes), tuple(parts)


_KEPT_MAPS = 256  # distinct maps kept; the oldest goes first
_KEPT: Dict[tuple, Routes] = {}


def _positions_routes(key, forward: str, shapes, arguments: Dict[str, Any]) -> Routes:
    """The map of a forward run on positions, made once per key (Note [routes kept per shape])."""
    found = _KEPT.get(key)
    if found is not None:
        return found
    found = _routes_element_by_element(forward, list(shapes), arguments)
    if found.weights is not None:  # traced after a collision: not a map of positions alone
        return found
    found = read_as_strides(found, [int(np.prod(shape, dtype=np.int64)) for _, shape in shapes])
    for array in (found.outputs, found.inputs):
        array.setflags(write=False)
    if len(_KEPT) >= _KEPT_MAPS:
        _KEPT.pop(next(iter(_KEPT)))
    _KEPT[key] = found
    return found
