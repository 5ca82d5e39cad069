"""A training loop at a glance: the loss per backward call and each leaf's
gradient norm per call, with the calls that were explained marked, as
`--out/loop.png` (written when the script made two calls or more).

matplotlib is imported here only, and only when a plot is drawn. The plot
never touches the script's own matplotlib: no pyplot, no backend switch, no
figure of its own in pyplot's list (a `Figure` drawn on an Agg canvas), and
matplotlib's default style for the time of drawing only, so that the bytes
do not depend on what the script set (Note [a plot beside the script's]).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..notation import shorten

DPI = 100
SIZE = (8.0, 6.0)  # inches: 800 × 600 pixels
LEAVES_DRAWN = 10  # leaves with a line of their own; more are named as a count in the title
DECADES = 2.0  # a series spanning more than this many powers of ten is drawn on a log scale
MARKED = 60  # up to this many explained calls get a mark each; more are one band of marks

LOOP_PICTURE = "loop.png"
# A loop: more backward calls than the calls table lists in full. Fewer are
# read at a glance in that table, and the plot's matplotlib import (~0.45 s of
# CPU, a third of a small script's whole run) is not worth paying for them.
PLOTTED_FROM = 13


class PlotError(Exception):
    """The loop plot could not be drawn; the message says why, in one line."""


@dataclass(frozen=True)
class CallPoint:
    """One backward call, as the plot needs it."""

    index: int
    loss: Optional[float]  # the root's value, when it is a single number
    norms: Tuple[Tuple[str, float], ...]  # ‖.grad‖ of each leaf after the call
    explained: bool


def points(report) -> Tuple[CallPoint, ...]:
    """The plot's data: one point per backward call of `report` that ran
    (a call torch refused has no numbers).

        >>> points(type("R", (), {"calls": [], "explanations": {}})())
        ()
    """
    return tuple(CallPoint(record.index, record.summary.root_value, tuple(record.summary.leaf_norms),
                           record.index in report.explanations)
                 for record in report.calls if record.error is None)


def _spans_decades(values) -> bool:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if values.size < 2 or np.any(values <= 0):
        return False
    return bool(np.log10(values.max() / values.min()) > DECADES)


def _leaf_series(calls: Sequence[CallPoint]):
    """Each leaf's norms, by call, in the order the leaves first appear;
    NaN where a call has no norm for it."""
    names: dict = {}
    for call in calls:
        for name, _ in call.norms:
            names.setdefault(name, len(names))
    series = {name: np.full(len(calls), np.nan) for name in names}
    for position, call in enumerate(calls):
        for name, norm in call.norms:
            series[name][position] = norm
    return series


def plot(calls: Sequence[CallPoint], path: str, title: str = "") -> str:
    """Draw `calls` into the PNG file `path`; returns `path`. Raises
    PlotError, with a one-line message, when it cannot be drawn.

        >>> import os, tempfile
        >>> calls = [CallPoint(1, 0.9, (("w", 2.0),), True), CallPoint(2, 0.5, (("w", 1.0),), False)]
        >>> os.path.getsize(plot(calls, os.path.join(tempfile.mkdtemp(), "loop.png"))) > 0
        True
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("matplotlib is not installed, so the loop was not plotted "
                        "(pip install matplotlib, then run again).") from None
    try:
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a missing glyph or a NaN is no message for the user's stderr
            matplotlib.rcdefaults()  # not the script's style; restored when the block ends
            figure = _figure(Figure, calls, title)
            FigureCanvasAgg(figure)
            figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    except OSError as error:
        raise PlotError(f"{error.strerror or error}.") from None
    except Exception as error:  # matplotlib's own failure: one line, never a traceback
        said = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PlotError(f"matplotlib could not draw it: {shorten(said, 160)}") from None
    return path


def _figure(Figure, calls: Sequence[CallPoint], title: str):
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    loss_axes, norm_axes = figure.subplots(2, 1, sharex=True)
    x = np.array([call.index for call in calls], dtype=float)
    explained = [position for position, call in enumerate(calls) if call.explained]
    losses = np.array([np.nan if call.loss is None else call.loss for call in calls], dtype=float)

    if np.any(np.isfinite(losses)):
        loss_axes.plot(x, losses, color="#b45309", linewidth=1.2, label="root (loss)")
        if _spans_decades(losses):
            loss_axes.set_yscale("log")
        _mark(loss_axes, x, losses, explained)
        loss_axes.set_ylabel("loss")
    else:
        loss_axes.text(0.5, 0.5, "no call's root is a single number", ha="center", va="center",
                       transform=loss_axes.transAxes, color="gray")
        loss_axes.set_yticks([])
    loss_axes.set_title(title or "Loss per backward call", loc="left", fontsize=10)

    series = _leaf_series(calls)
    drawn = list(series)[:LEAVES_DRAWN]
    for name in drawn:
        norm_axes.plot(x, series[name], linewidth=1.0, label=f"‖{shorten(name, 40)}‖")
    if drawn:
        norms = np.concatenate([series[name] for name in drawn])
        if _spans_decades(norms[np.isfinite(norms)]):
            norm_axes.set_yscale("log")
        norm_axes.legend(fontsize=7, loc="best", ncol=2 if len(drawn) > 5 else 1)
    more = len(series) - len(drawn)
    heading = "‖.grad‖ of each leaf after each call" + (f" (the first {len(drawn)} of {len(series)} leaves)"
                                                       if more else "")
    norm_axes.set_title(heading, loc="left", fontsize=10)
    norm_axes.set_xlabel("backward call")
    norm_axes.set_ylabel("gradient norm")
    if explained:
        for axes in (loss_axes, norm_axes):
            _band(axes, x, explained)
    return figure


def _mark(axes, x, losses, explained) -> None:
    """The explained calls, as dots on the loss line."""
    if not explained or len(explained) > MARKED:  # too many to mark one by one: _band says how many
        return
    axes.plot(x[explained], losses[explained], linestyle="none", marker="o", markersize=4, color="#1d4ed8",
              label="explained (walkthrough, picture)")
    axes.legend(fontsize=7, loc="best")


def _band(axes, x, explained) -> None:
    """A thin line at each explained call, or, for many, a note in the corner."""
    if len(explained) <= MARKED:
        for position in explained:
            axes.axvline(x[position], color="#1d4ed8", alpha=0.25, linewidth=0.8)
        return
    axes.text(0.99, 0.97, f"{len(explained)} of {len(x)} calls explained", ha="right", va="top",
              transform=axes.transAxes, fontsize=7, color="#1d4ed8")


# Note [a plot beside the script's]
# The traced script runs in graphexplain's own process and may use
# matplotlib itself (the examples do: linear_regression saves a plot). By
# the time the loop is plotted the script has ended, but its figures,
# backend and rcParams are still there, and a --target or an API user may
# look at them. So: a `matplotlib.figure.Figure` on a `FigureCanvasAgg`,
# never pyplot (no figure enters pyplot's list, no backend is chosen), and
# `rc_context` around `rcdefaults()`, which restores the script's settings
# when drawing ends. The PNG has no "Software" entry and no date (PNG files
# written by Agg carry none), so a rerun on the same machine gives the
# same bytes.
