"""Broadcasting, handled once for every row.

When an operand was broadcast up to the result's shape, every copy of an
element received its own gradient; the operand's gradient is their sum.
When a reduction combined elements into one, each of them receives the
output's gradient: the upstream is spread back. Both are the adjoint of a
shape change, so they live here and no row repeats them.

    >>> sum_to(np.ones((2, 3)), (3,)).tolist()
    [2.0, 2.0, 2.0]
    >>> spread(np.array([1.0, 2.0]), (2, 3), dims=(1,), keepdim=False).tolist()
    [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..model import numbers


def broadcast_dims(shape: Tuple[int, ...], target: Tuple[int, ...]) -> Tuple[int, ...]:
    """The dims of `target` along which `shape` was copied."""
    lead = len(target) - len(shape)
    copied = list(range(lead))
    copied += [lead + i for i, size in enumerate(shape) if size == 1 and target[lead + i] != 1]
    return tuple(copied)


def sum_to(gradient: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sum a gradient of the broadcast shape back to an operand's `shape`."""
    gradient = numbers(gradient)
    if gradient.shape == tuple(shape):
        return gradient
    dims = broadcast_dims(tuple(shape), gradient.shape)
    summed = gradient.sum(axis=dims, keepdims=True) if dims else gradient
    return summed.reshape(shape)


def describe_sum(from_shape: Tuple[int, ...], to_shape: Tuple[int, ...]) -> Optional[str]:
    """How `sum_to` changed the shape, in words; None when it did nothing."""
    if tuple(from_shape) == tuple(to_shape):
        return None
    dims = broadcast_dims(tuple(to_shape), tuple(from_shape))
    which = "dim" if len(dims) == 1 else "dims"
    listed = ", ".join(str(d) for d in dims)
    return f"summed over broadcast {which} {listed}: {tuple(from_shape)} → {tuple(to_shape)}"


def reduced_dims(dims: Optional[Sequence[int]], ndim: int) -> Tuple[int, ...]:
    if dims is None or (isinstance(dims, (tuple, list)) and len(dims) == 0):
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = (dims,)
    if ndim == 0:
        return ()  # dim 0 or -1 of a 0-dim tensor names the one element: nothing to reduce
    return tuple(sorted(d % ndim for d in dims))


def spread(upstream: np.ndarray, shape: Tuple[int, ...], dims: Tuple[int, ...], keepdim: bool) -> np.ndarray:
    """Give every element of a reduced operand the upstream of the output
    element it was reduced into."""
    upstream = numbers(upstream)
    if not keepdim:
        for dim in sorted(dims):
            upstream = np.expand_dims(upstream, dim)
    return np.broadcast_to(upstream.reshape([1 if d in dims else s for d, s in enumerate(shape)]), shape)


def describe_spread(from_shape: Tuple[int, ...], to_shape: Tuple[int, ...]) -> Optional[str]:
    if tuple(from_shape) == tuple(to_shape):
        return None
    return f"spread back over the reduced elements: {tuple(from_shape)} → {tuple(to_shape)}"
