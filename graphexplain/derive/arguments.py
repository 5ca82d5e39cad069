"""A node's saved arguments, read the way the op was called.

Every stage of the derivation reads `dim`, `keepdim` and `reduction` through
here, so a quirk of how torch exposes them is handled once.

Note [saved ints read back unsigned]
torch's Python getters for saved int64 arguments (``grad_fn._saved_dim``,
``_saved_index``, ``_saved_start``, ...) hand a negative value back as its
unsigned 64-bit twin: ``x.sum(-1)`` saves ``dim=(18446744073709551615,)``,
which is 2**64 - 1. Any int at or above 2**63 cannot be a real argument (torch
ints are int64), so it is read back as the negative number it stands for.

    >>> signed(18446744073709551615), signed((0, 18446744073709551614)), signed(9223372036854775807)
    (-1, (0, -2), 9223372036854775807)
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from ..model import Node
from ..rules.kinds import Reduction
from .broadcast import reduced_dims

INT64_LIMIT = 2 ** 63
REDUCTION_MODES = {0: "none", 1: "mean", 2: "sum"}  # torch's `reduction` enum

# Note [string arguments read as numbers]
# A formula compares numbers, so torch's string arguments are read as the
# number of their choice: gelu's `approximate` ("none" 0, "tanh" 1) and
# div's `rounding_mode` (None 0 for true division, "trunc" 1, "floor" 2). A
# row then says ``Piecewise((tanh form, Eq(approximate, 1)), (erf form, True))``.
CHOICES: Dict[str, Dict[Any, int]] = {
    "approximate": {"none": 0, "tanh": 1},
    "rounding_mode": {None: 0, "trunc": 1, "floor": 2},
}


def signed(value: Any) -> Any:
    """`value` with every unsigned-wrapped int turned back into the negative
    int it stands for (Note [saved ints read back unsigned])."""
    if isinstance(value, (tuple, list)):
        return type(value)(signed(item) for item in value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= INT64_LIMIT:
        return value - 2 ** 64
    return value


def saved(node: Node) -> Dict[str, Any]:
    """The node's saved arguments, negative ints restored and string
    choices read as numbers (Note [string arguments read as numbers])."""
    return {name: _chosen(name, signed(value)) for name, value in node.params.items()}


def _chosen(name: str, value: Any) -> Any:
    if name in CHOICES and (value is None or isinstance(value, str)):
        return CHOICES[name].get(value, value)
    return value


def reduction_mode(rule: Reduction, node: Node) -> str:
    """"sum", "mean" or "none": the row's own, or the loss's `reduction`."""
    if rule.reduce == "reduction":
        return REDUCTION_MODES.get(int(node.params.get("reduction", 1)), "mean")
    return rule.reduce


def reduced(rule: Reduction, node: Node, ndim: int) -> Tuple[Tuple[int, ...], bool]:
    """(the dims a reduction node combined, whether it kept them), for an
    elementwise term of `ndim` dims."""
    if reduction_mode(rule, node) == "none":
        return (), True
    if rule.over == "dim":
        params = saved(node)
        return reduced_dims(params.get("dim"), ndim), bool(params.get("keepdim", False))
    return tuple(range(ndim)), False
