"""What the reports show of a big array, kept in place of the array once no
later stage needs its elements (Note [a big array's last use]).

    >>> import numpy as np
    >>> d = Digest.of(np.arange(2000.0))
    >>> d.shape, d.size, d.last, d.summary["max"]
    ((2000,), 2000, 1999.0, 1999.0)

Note [a big array's last use]
On a 2000×2000 matmul every derived gradient, its error budget and each
local gradient is a 32 MB float64 array, and the explanation held them all
until the reports were written: three times the script's own peak memory.
Yet a report shows a tensor of more than LIMIT elements only as a summary:
its first values, last value, norms, min and max (the JSON's `summary`, the
walkthrough's and the picture's one line). So where nothing asks for the
whole arrays (the command line without --json-full, --html or --markdown),
each node is verified as soon as it is derived, and its big arrays are then
kept as a `Digest` of exactly those numbers; the arrays a later node still
needs (the gradient sent down, until its producer is derived and verified)
live on in the derivation until then. The library API keeps whole arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import numpy as np

LIMIT = 1000  # elements; render.json.SUMMARY_LIMIT, the smallest tensor any report summarises
HEAD = 6  # first values kept: the JSON shows 6, the walkthrough 3
# An array is let go only from this size (128 KB of float64): below it, what
# it holds is little, and digesting every array of a loop's every call cost
# more than it saved (a 300-step MLP, 8192-element layers: 0.25 s of 7).
# Between LIMIT and this, the reports summarise the whole array, as before.
RELEASED_FROM = 1 << 14


def l2_norm(array) -> float:
    """The L2 norm, without overflow or underflow in the squares: numpy's
    is sqrt(x·x), inf (with a warning on the user's terminal) once an
    element passes 1e154, where the norm itself may still be finite.

    >>> [float(f"{l2_norm(np.array(x)):.12g}") for x in ([3e200, 4e200], [3e-200, 4e-200], [])]
    [5e+200, 5e-200, 0.0]
    """
    array = np.asarray(array).reshape(-1)
    if not array.size:
        return 0.0
    if array.dtype.kind == "f" and array.itemsize < 8:  # Note [a float32 array digested as it is]
        squares = sum(float(np.dot(part, part)) for part in
                      (array[start:start + BLOCK].astype(np.float64) for start in range(0, array.size, BLOCK)))
        return math.sqrt(squares)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        norm = float(np.linalg.norm(array))
        if not 1e-140 <= norm < np.inf:  # 0, underflowed, overflowed or nan: scaled (nan stays nan)
            scale = float(np.max(np.abs(array)))
            if scale > 0 and np.isfinite(scale):
                norm = scale * float(np.linalg.norm(array / scale))
    return norm


# Note [a float32 array digested as it is]
# A big float32 budget (Note [a big budget in float32] in derive/chain.py)
# was converted to float64 whole to be digested: 32 MB for a moment on a
# 2000×2000 product, after its node and at the run's peak. Its min, max,
# first and last values are exact in float32, and its squares, summed in
# float64 a block at a time, neither overflow nor underflow; the digest
# holds the same float64 numbers as one made of the float64 copy.
BLOCK = 1 << 18


def numbers(data) -> np.ndarray:
    """float64 (complex128 for complex data), as every stage computes and shows numbers."""
    array = np.asarray(data)
    return array.astype(np.complex128 if np.iscomplexobj(array) else np.float64, copy=False)


@dataclass(frozen=True, eq=False)
class Digest:
    """A big array's shape, first and last values, norms, min and max, in
    float64 as the array is shown (model.numbers): what renderers read in
    place of the array. `summary` is the JSON's (render/json.summary)."""

    shape: Tuple[int, ...]
    head: np.ndarray  # the first HEAD elements, row-major
    last: Any  # the last element
    norm: Any  # L2 norm over every element (inf or nan where one is): the walkthrough's ‖·‖
    summary: Dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data) -> "Digest":
        from .render.json import summary  # (numpy only: no heavy import)

        array = np.asarray(data)
        if not (array.dtype.kind == "f" and array.itemsize < 8):  # Note [a float32 array digested as it is]
            array = numbers(array)
        flat = array.reshape(-1)
        return cls(tuple(array.shape), numbers(flat[:HEAD]).copy(), numbers(flat[-1]).item(), l2_norm(flat),
                   summary(array))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)


def digested(data):
    """`data` as a Digest when it is a big array, else as it is."""
    if isinstance(data, np.ndarray) and data.size >= RELEASED_FROM and data.dtype.kind in "fc":
        return Digest.of(data)
    return data
