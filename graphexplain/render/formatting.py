"""Numbers as people read them: four significant digits, small tensors in
full, large ones summarised (shape, first values, norm). Plain strings, so
every renderer shows the same text.

    >>> number(1 / 3)
    '0.3333'
    >>> array([2.0, 4.0, 6.0])
    '[2, 4, 6]'
    >>> array(list(range(100)))
    '(100,) [0, 1, 2, … 99] ‖·‖=573'
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..digest import Digest, l2_norm
from ..model import numbers
from ..notation import label, shorten

SMALL = 6  # tensors up to this many elements are shown whole


def number(value) -> str:
    if isinstance(value, (complex, np.complexfloating)) or np.iscomplexobj(value):
        value = complex(np.asarray(value).reshape(()))
        if value.imag == 0:
            return number(value.real)
        sign = "-" if value.imag < 0 else "+"
        return f"{number(value.real)}{sign}{number(abs(value.imag))}j"
    value = float(value)
    if value == 0:
        return "0"
    if np.isnan(value) or np.isinf(value):
        return str(value)
    text = f"{value:.4g}"
    return text


def array(data: Optional[np.ndarray], small: int = SMALL) -> str:
    if data is None:
        return "?"
    if isinstance(data, Digest):  # a big array's shown numbers (Note [a big array's last use] in digest.py)
        head = ", ".join(number(v) for v in data.head[:3])
        return f"{tuple(data.shape)} [{head}, … {number(data.last)}] ‖·‖={number(data.norm)}"
    data = numbers(data)
    if data.ndim == 0 or data.size == 1 and data.ndim == 0:
        return number(data.reshape(()))
    if data.size <= small:
        return _nested(data)
    flat = data.reshape(-1)
    head = ", ".join(number(v) for v in flat[:3])
    return f"{tuple(data.shape)} [{head}, … {number(flat[-1])}] ‖·‖={number(l2_norm(flat))}"


def norm(data) -> float:
    """The L2 norm of an array or a Digest."""
    return data.norm if isinstance(data, Digest) else l2_norm(data)


def _nested(data: np.ndarray) -> str:
    if data.ndim == 0:
        return number(data)
    return "[" + ", ".join(_nested(part) for part in data) + "]"


def shape(dims) -> str:
    return "scalar" if len(dims) == 0 else str(tuple(dims))


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s" if not word.endswith("f") else f"{count} {word[:-1]}ves"


def local_statement(node, derived, local) -> str:
    """The local gradient as one statement, ∂result/∂operand = formula = with the numbers put in
    (the Markdown and HTML reports' `local` row)."""
    if local.expr.startswith("∂result["):
        return local.named
    if derived.steps and derived.steps[0].how == "matrix":
        statement = f"∂L/∂{label(shorten(local.label))} = {local.expr}"
    else:
        statement = f"∂{label(shorten(node.name))}/∂{label(shorten(local.label))} = {local.expr}"
    return statement + (f" = {local.named}" if local.named != local.expr else "")
