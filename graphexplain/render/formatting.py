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


def summarised(data) -> bool:
    """Whether `array` shows this as a summary, which begins with the shape."""
    return isinstance(data, Digest) or data is not None and np.ndim(data) > 0 and np.size(data) > SMALL


def sized(dims, data) -> str:
    """A tensor's shape and its numbers, the shape said once: a summary already begins with it.

    >>> sized((3,), [1.0, 2.0, 3.0])
    '(3,) [1, 2, 3]'
    >>> sized((100,), list(range(100)))
    '(100,) [0, 1, 2, … 99] ‖·‖=573'
    """
    return array(data) if summarised(data) else f"{shape(dims)} {array(data)}"


def shape_note(dims, data) -> str:
    """` (3, 4)` after a value that `array` shows whole; "" after a summary, which begins with its shape."""
    return "" if summarised(data) else f" ({shape(dims)})"


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


# Note [a gradient that arrives by several paths]
# Where a tensor feeds several ops, or one op twice (y * y), its gradient is
# the sum of what each use sends back: the chain rule's sum over paths, the
# step a learner most often misses. The node's upstream then says so, with
# each arrival beside the step it came from, and a local gradient whose
# operand appears twice says which place it is for (self, other), as the
# chain rows under it do. Every renderer shows the same arrivals
# (`arrivals`, computed once for an explanation).
ARRIVALS_LISTED = 6


def arrivals(explanation) -> dict:
    """node id → [(step number, consumer name, operand word, repeated, chain step)] for
    each derived gradient the node's single output receives (Note [a gradient that
    arrives by several paths]); only nodes with more than one."""
    found: dict = {}
    for number_of, step in enumerate(explanation.steps, start=1):
        node = step.node
        chains = {chain.input: chain for chain in step.derivation.steps}
        labels = [operand.label for operand in node.operands]
        for operand in node.operands:
            if operand.producer is None:
                continue
            chain = chains.get(operand.name)
            known = chain is not None and chain.downstream is not None and operand.producer_output == 0
            # a use not derived, or a producer with several outputs: the sum is not shown at all
            found.setdefault(operand.producer, []).append(
                (number_of, node.name, operand.name, labels.count(operand.label) > 1, chain) if known else None)
    hooked = {step.node.id for step in explanation.steps if step.node.hooks}  # a hook may change what arrives
    return {node: uses for node, uses in found.items()
            if len(uses) > 1 and None not in uses and node not in hooked}


def arrival_parts(uses) -> list:
    """The terms of the sum: what each use sends back and the step it came from,
    ARRIVALS_LISTED of them, then what the rest send (every renderer's wording)."""
    parts = [f"{array(chain.downstream)} from step {number_of}, {shorten(consumer)}{f' ({word})' if repeated else ''}"
             for number_of, consumer, word, repeated, chain in uses[:ARRIVALS_LISTED]]
    if len(uses) > ARRIVALS_LISTED:
        parts.append(f"what {len(uses) - ARRIVALS_LISTED} more uses send")
    return parts


def arrivals_text(uses) -> str:
    """The arrivals on one line (the Markdown and HTML reports' upstream cell)."""
    return " + ".join(arrival_parts(uses))


def shape_after(constant, separator: str = " ") -> str:
    """A constant's shape to print after its name, or "" where the name says it already (Constant.shown_shape)."""
    return "" if constant.shown_shape is None else f"{separator}{shape(constant.shown_shape)}"


def place(derived, local, words: str = "") -> str:
    """` (self)` for a local gradient whose operand fills two places (y * y); `words` go before the place."""
    twice = sum(1 for other in derived.local_gradients if other.label == local.label) > 1
    return f" ({words}{local.input})" if twice else ""


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
