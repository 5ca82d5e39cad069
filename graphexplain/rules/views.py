"""Writes into views, in place: torch's CopySlices node.

``x[:, 0] = v``, ``x[:, 1:].mul_(2)``, ``x.diagonal().add_(1)``, ``h[t] = ...``
in a loop, and F.pad's circular copies change a tensor through a view of
it. Torch records one CopySlices node: the base, with the elements the view
reads (the region R) replaced by fn(view, ...), where fn is the op written
into the view (a copy, a fill, mul_, clamp_, ...), whose own node torch
wraps inside CopySlices (Note [a write into a view] in
capture/view_writes.py).

The row states just that forward. The region comes from running the view's
as_strided geometry on the base's positions (derive/routing.py's
as_strided), fn's local gradient from fn's own row, so sympy derives it
like any other; outside R the base passes its upstream through, inside R
the base gets fn's gradient for its self (none for a copy or a fill) and
fn's other operands get fn's gradient for them (derive/copy_slices.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .kinds import Rule


@dataclass(frozen=True)
class ViewWrite(Rule):
    """result = self, with self's elements at as_strided(size, stride,
    storage_offset) (the region R, laid out by `base_geometry`) replaced
    by fn(self[R], ...): `wrapped` names fn's row, whose inputs after self
    are this node's after self."""

    family: ClassVar[str] = "view-write"


ROWS = (
    ViewWrite("CopySlices", "write into a view, in place",
              "view_write(self, size, stride, storage_offset, base_geometry, wrapped)",
              params=("size", "stride", "storage_offset", "base_geometry", "wrapped")),
)
