"""The forward functions of routing rows, on numpy arrays.

A routing op only moves elements, so running its forward on the *positions*
of the input, ``arange(numel).reshape(shape)``, gives the map pi with
result[k] = self[pi(k)]. The gradient then goes back along pi: each upstream
element is added to the input element it was taken from.

    >>> positions((2, 3)).tolist()
    [[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import ast
from typing import Callable, Dict, Tuple

import numpy as np


def positions(shape: Tuple[int, ...]) -> np.ndarray:
    return np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)


def _select(array, dim, index):
    return np.take(array, index, axis=dim)


def _slice(array, dim, start, end, step):
    # torch and Python clamp the bounds alike (a negative start counts from
    # the end, an end of 2**63 - 1 means "to the end"), so Python's slice
    # takes torch's saved start and end as they are.
    cut = [slice(None)] * array.ndim
    cut[dim] = slice(start, end, step)
    return array[tuple(cut)]


def _expand_dims(array, dim):
    return np.expand_dims(array, dim if dim >= 0 else array.ndim + 1 + dim)


FUNCTIONS: Dict[str, Callable] = {
    "reshape": lambda array, shape: np.reshape(array, shape),
    "broadcast_to": lambda array, shape: np.broadcast_to(array, shape),
    "transpose": lambda array: np.transpose(array),
    "swapaxes": lambda array, dim0, dim1: np.swapaxes(array, dim0, dim1),
    "permute": lambda array, dims: np.transpose(array, dims),
    "select": _select,
    "slice": _slice,
    "expand_dims": _expand_dims,
}


def route_back(index_map: np.ndarray, upstream: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """The adjoint of result = self[pi]: scatter-add upstream along pi."""
    flat = np.bincount(
        np.asarray(index_map).ravel(),
        weights=np.broadcast_to(upstream, index_map.shape).ravel(),
        minlength=int(np.prod(shape, dtype=np.int64)),
    )
    return flat.reshape(shape)


def index_map(forward: str, shape: Tuple[int, ...], arguments: Dict[str, object]) -> np.ndarray:
    """Run a routing row's forward, e.g. ``"swapaxes(self, dim0, dim1)"``,
    on the positions of an operand of `shape`: the map pi."""
    call = ast.parse(forward, mode="eval").body
    args = [positions(shape) if arg.id == "self" else arguments[arg.id] for arg in call.args]
    return FUNCTIONS[call.func.id](*args)
