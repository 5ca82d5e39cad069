"""A training loop at a glance: the loss per backward call and each leaf's
gradient norm per call, with the calls that were explained marked, as
`--out/loop.dot` and `loop.png` (and each other --format asked for),
written when the script made a loop of calls (`PLOTTED_FROM`).

The plot is graphviz used as a plotter: every point, tick and label is a
node pinned where it belongs (`pos`, in points), every line an edge
between two of them, and graphviz's `nop2` layout (neato -n2, named in
the source: `dot -Tpng loop.dot` draws it) puts them where they are
told, with no layout of its own (Note [a plot drawn by graphviz]). So no
plotting library is imported, nothing of the script's own matplotlib is
touched, and the same calls give the same DOT bytes.

    >>> calls = [CallPoint(1, 0.9, (("w", 2.0),), True), CallPoint(2, 0.5, (("w", 1.0),), False)]
    >>> to_dot(calls).startswith("graph loop {")
    True
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..notation import shorten
from .dot import FORMATS, RenderError, _draw

WIDTH, HEIGHT = 576.0, 432.0  # points: 8 × 6 inches, 800 × 600 pixels at DPI
DPI = 100
LEAVES_DRAWN = 10  # leaves with a line of their own; more are named as a count in the title
DECADES = 2.0  # a series spanning more than this many powers of ten is drawn on a log scale
MARKED = 60  # up to this many explained calls get a mark each; more are one line of text
TICKS = 6  # about this many labelled ticks on an axis
COLUMN = 0.5  # points: a line keeps at most four of its points per this width (Note [a long loop's lines])

LOOP_NAME = "loop"  # loop.dot, loop.png, ...
# A loop: more backward calls than the calls table lists in full. Fewer are
# read at a glance in that table, and a picture beside them would be one
# more file for a script that has no loop to show (Note [a plot drawn by
# graphviz] has what the plot costs).
PLOTTED_FROM = 13

LOSS_COLOUR = "#b45309"  # the root's colour in the call pictures (dot.STYLES["root"])
EXPLAINED_COLOUR = "#1d4ed8"  # a leaf's colour there; the marks of the explained calls
BAND_COLOUR = "#1d4ed840"  # the same, a quarter opaque: a thin line at each explained call
LEAF_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # one per leaf drawn, in order
FONT = "Helvetica"
SIZES = {"title": 10, "label": 10, "tick": 8, "legend": 7, "note": 7}  # points
STYLES: Dict[str, Dict[str, str]] = {
    "graph": {"layout": "nop2", "dpi": str(DPI), "pad": "0", "splines": "line", "outputorder": "edgesfirst",
              "bgcolor": "white"},
    "node": {"shape": "point", "style": "invis", "width": "0", "height": "0", "label": "",
             "fontname": FONT, "margin": "0"},
    "edge": {"dir": "none", "headclip": "false", "tailclip": "false", "penwidth": "1.0"},
    "text": {"shape": "plaintext", "style": "solid", "fixedsize": "true"},
    "frame": {"shape": "rect", "style": "solid", "fixedsize": "true", "color": "gray15", "penwidth": "0.8"},
    "legend": {"shape": "rect", "style": "filled", "fixedsize": "true", "color": "gray80",
               "fillcolor": "#ffffffcc", "penwidth": "0.8"},
    "swatch": {"shape": "rect", "style": "filled", "fixedsize": "true", "penwidth": "0"},
    "mark": {"shape": "circle", "style": "filled", "fixedsize": "true", "color": EXPLAINED_COLOUR,
             "fillcolor": EXPLAINED_COLOUR, "width": f"{4 / 72:.4f}", "penwidth": "0"},
    "tick": {"color": "gray15", "penwidth": "0.8"},
    "band": {"color": BAND_COLOUR, "penwidth": "0.8"},
}

# The page, in points from the bottom left (graphviz's way up).
LEFT, RIGHT = 72.0, WIDTH - 12.0  # the frames' sides; the y labels and ticks are left of LEFT
FRAMES = ((238.0, HEIGHT - 26.0), (44.0, 204.0))  # (bottom, top) of the loss frame, then of the norms'
TICK = 3.5  # points: a tick's length, outside the frame
# Points of a line's path in one quoted DOT string; dot reads no string over
# 16384 characters, and a point is at most 14 ("576.00,432.00 "), so the path
# is written as pieces joined by DOT's `+`.
PATH_PIECE = 900


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
    return bool(np.log10(values.max()) - np.log10(values.min()) > DECADES)  # no quotient to overflow


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


# --- axes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    """One axis: the data range it shows (log10 of it on a log scale) and
    the points on the page that range spans."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    @classmethod
    def fitted(cls, values, start: float, end: float, log: bool = False, integer: bool = False) -> "Axis":
        """The range of the `values` it can show (`_shown`), with 5% to spare
        at each end, as most plots give."""
        values = _shown(values, log)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls(0.0, 1.0, start, end, log)
        low, high = float(values.min()), float(values.max())
        if high - low <= max(1e-12 * max(abs(low), abs(high)), NARROWEST):  # one value: a band around it
            spread = abs(low) * 0.1 if abs(low) > 10 * NARROWEST and not integer else 1.0
            low, high = low - spread, high + spread
        margin = 0.05 * (high - low)
        return cls(low - margin, high + margin, start, end, log)

    def at(self, values) -> np.ndarray:
        """Where `values` lie on the page; NaN for a value the axis cannot show."""
        return self._page(_shown(values, self.log))

    def ticks(self, integer: bool = False) -> Tuple[List[Tuple[float, str]], List[float]]:
        """(page position, label) of each labelled tick, and the positions of
        the unlabelled ones (a log scale's 2×, 3×, … 9×)."""
        if self.log:
            return self._log_ticks()
        values, labels = _linear_ticks(self.low, self.high, integer)
        return [(self._page(value), label) for value, label in zip(values, labels)], []

    def _page(self, measured: float) -> float:
        """Where a value the axis measures (log10 of it, on a log scale) lies."""
        return self.start + (measured - self.low) / (self.high - self.low) * (self.end - self.start)

    def _log_ticks(self):
        decades = list(range(math.ceil(self.low - 1e-9), math.floor(self.high + 1e-9) + 1))
        every = max(1, math.ceil(len(decades) / (TICKS + 2)))
        shown = [d for d in decades if d % every == 0]
        major = [(self._page(d), _power(d)) for d in shown]
        minor = []
        if every == 1:
            for decade in range(math.floor(self.low), math.ceil(self.high) + 1):
                for m in range(2, 10):
                    at = decade + math.log10(m)
                    if self.low <= at <= self.high:
                        minor.append(self._page(at))
        return major, minor


NARROWEST = 1e-290  # a range narrower than this is one value: its ticks' steps would underflow
WIDEST = 1e300  # on a linear scale a value past ± this is a break, as inf is: its range would overflow


def _shown(values, log: bool) -> np.ndarray:
    """`values` as the axis measures them, log10 of them on a log scale;
    NaN where it cannot show one: not finite, not positive on a log scale,
    past ±WIDEST on a linear one (a loop that diverged).

    >>> _shown([100.0, 0.0, 1e301], log=True).tolist(), _shown([1.0, 1e301, -np.inf], log=False).tolist()
    ([2.0, nan, 301.0], [1.0, nan, nan])
    """
    values = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log:
            return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
        return np.where(np.abs(values) <= WIDEST, values, np.nan)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power(decade: int) -> str:
    """A log scale's tick: ten to the power `decade`.

    >>> _power(-3), _power(0)
    ('10⁻³', '1')
    """
    return {0: "1", 1: "10"}.get(decade, "10" + str(decade).translate(SUPERSCRIPT))


def _linear_ticks(low: float, high: float, integer: bool = False) -> Tuple[List[float], List[str]]:
    """Round values between `low` and `high`, the most that are at most
    TICKS + 1, a step of 1, 2, 2.5 or 5 times a power of ten (no 2.5 for call
    numbers, and no step under 1), each written with the decimals its step
    needs and no more.

    >>> _linear_ticks(-0.05, 1.05)
    ([0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0], ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0'])
    >>> _linear_ticks(0.05, 20.95, integer=True)[1]
    ['5', '10', '15', '20']
    """
    factors = (1, 2, 5) if integer else (1, 2, 2.5, 5)
    power = math.floor(math.log10((high - low) / TICKS)) - 1
    while True:  # a step ten times the first's is always few enough: at most TICKS / 10 + 2 ticks
        fits = [f for f in factors if (not integer or f * 10.0 ** power >= 1)
                and math.floor(high / (f * 10.0 ** power) + 1e-9) - math.ceil(low / (f * 10.0 ** power) - 1e-9)
                < TICKS + 1]
        if fits:
            factor = fits[0]
            break
        power += 1
    step = factor * 10.0 ** power
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    values = [k * step for k in range(first, last + 1)]
    decimals = max(0, -power + (1 if factor == 2.5 else 0))
    biggest = max(abs(low), abs(high))
    if biggest >= 1e6 or (biggest > 0 and step < 1e-4):  # too many digits to write out: 1.5e-05
        digits = max(0, math.floor(math.log10(biggest)) - power + (1 if factor == 2.5 else 0))
        return values, [f"{v + 0.0:.{digits}e}" for v in values]
    return values, [f"{v + 0.0:.{decimals}f}" for v in values]


# --- the DOT source -------------------------------------------------------------------------

def _text(text: str) -> str:
    """`text` as a quoted DOT label that graphviz shows letter for letter
    (a backslash is not an escape; a line break is a space)."""
    return '"' + " ".join(text.split("\n")).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _attributes(attributes: Dict[str, str]) -> str:
    """`key="value", …`; a value `_text` already quoted is kept as it is."""
    return ", ".join(f'{key}={value}' if value.startswith('"') else f'{key}="{value}"'
                     for key, value in attributes.items())


def _width(text: str, size: float) -> float:
    """About how wide `text` is in points at font size `size` (Helvetica's
    letters average a little over half their size; erring wide)."""
    return 0.55 * size * len(text)


class Canvas:
    """The nodes and edges of the plot, named in the order they are made
    (`p0`, `p1`, …), so the same plot is the same source."""

    def __init__(self):
        self.nodes: List[str] = []
        self.edges: List[str] = []

    def node(self, x: float, y: float, **attributes: str) -> str:
        name = f"p{len(self.nodes)}"
        self.nodes.append(f"{name} [{_attributes({'pos': f'{x:.2f},{y:.2f}!', **attributes})}]")
        return name

    def line(self, xs, ys, **attributes: str) -> None:
        """A polyline through the points (xs, ys), a NaN breaking it: one
        edge per unbroken run, its path given whole (Note [a plot drawn by
        graphviz])."""
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        finite = np.isfinite(xs) & np.isfinite(ys)
        edges = np.flatnonzero(np.diff(np.r_[False, finite, False].astype(np.int8)))
        for start, end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
            if end - start < 2:  # a lone point is no line
                continue
            run = [f"{x:.2f},{y:.2f}" for x, y in zip(xs[start:end].tolist(), ys[start:end].tolist())]
            # a straight piece is a Bézier curve whose control points are its ends
            path = [run[0], *(point for previous, here in zip(run, run[1:]) for point in (previous, here, here))]
            pieces = [" ".join(path[k:k + PATH_PIECE]) for k in range(0, len(path), PATH_PIECE)]
            tail, head = self.node(xs[start], ys[start]), self.node(xs[end - 1], ys[end - 1])
            self.edges.append(f'{tail} -- {head} [pos="' + '" + " '.join(pieces) + '"'
                              + (f", {_attributes(attributes)}" if attributes else "") + "]")

    def text(self, x: float, y: float, text: str, size: float, align: str = "centre", colour: str = "black") -> None:
        """`text` centred on (x, y), or starting (align="left") or ending
        ("right") at x: a box as wide as the page allows on that side, the
        label set to that side of it (\\l, \\r)."""
        if align == "left":
            width, centre, end = RIGHT + 10 - x, (x + RIGHT + 10) / 2, "\\l"
        elif align == "right":
            width, centre, end = x - 2, (x + 2) / 2, "\\r"
        else:  # kept on the page: a box past its edge would make graphviz's picture bigger
            width, end = _width(text, size) + 4, ""
            centre = min(max(x, width / 2 + 1), WIDTH - width / 2 - 1)
        label = _text(text)[:-1] + end + '"'
        self.node(centre, y, label=label, fontsize=str(size), fontcolor=colour, width=f"{width / 72:.4f}",
                  height=f"{size * 1.3 / 72:.4f}", **STYLES["text"])

    def box(self, x0: float, y0: float, x1: float, y1: float, style: Dict[str, str], **attributes: str) -> None:
        self.node((x0 + x1) / 2, (y0 + y1) / 2, width=f"{(x1 - x0) / 72:.4f}", height=f"{(y1 - y0) / 72:.4f}",
                  **style, **attributes)

    def source(self) -> str:
        return "\n".join([
            "graph loop {",
            f"  graph [{_attributes(STYLES['graph'])}]",
            f"  node [{_attributes(STYLES['node'])}]",
            f"  edge [{_attributes(STYLES['edge'])}]",
            *(f"  {line}" for line in self.edges),
            *(f"  {line}" for line in self.nodes),
            "}",
            "",
        ])


def _thinned(xs: np.ndarray, ys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The points of a line that can be told apart on the page: of the
    points within one COLUMN of width, the first, the lowest, the highest
    and the last (Note [a long loop's lines]); a NaN is kept, as a break."""
    if len(xs) <= 4 * (RIGHT - LEFT) / COLUMN:
        return xs, ys
    columns = np.floor((xs - LEFT) / COLUMN)
    keep = np.zeros(len(xs), dtype=bool)
    keep[~np.isfinite(ys)] = True
    starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    for start, end in zip(starts.tolist(), ends.tolist()):
        keep[start] = keep[end - 1] = True
        finite = np.isfinite(ys[start:end])
        if finite.any():
            chunk = np.where(finite, ys[start:end], np.nan)
            keep[start + int(np.nanargmin(chunk))] = keep[start + int(np.nanargmax(chunk))] = True
    return xs[keep], ys[keep]


def _frame(canvas: Canvas, bottom: float, top: float, x_axis: Axis, y_axis: Optional[Axis], x_labels: bool) -> None:
    canvas.box(LEFT, bottom, RIGHT, top, STYLES["frame"])
    ticks, _ = x_axis.ticks(integer=True)
    for x, label in ticks:
        canvas.line([x, x], [bottom, bottom - TICK], **STYLES["tick"])
        if x_labels:
            canvas.text(x, bottom - TICK - 7, label, SIZES["tick"])
    if y_axis is None:
        return
    major, minor = y_axis.ticks()
    for y, label in major:
        canvas.line([LEFT, LEFT - TICK], [y, y], **STYLES["tick"])
        canvas.text(LEFT - TICK - 2, y, label, SIZES["tick"], align="right")
    for y in minor:
        canvas.line([LEFT, LEFT - TICK * 0.6], [y, y], **STYLES["tick"])


def _y_label(canvas: Canvas, bottom: float, top: float, words: str, ticks: Sequence[str]) -> None:
    """The y axis's name, across (graphviz turns no label on its side): a
    word a line, left of the widest tick label."""
    lines = words.split()
    middle = (bottom + top) / 2
    size = SIZES["label"]
    right = LEFT - TICK - 6 - max((_width(label, SIZES["tick"]) for label in ticks), default=0.0)
    half = max((_width(word, size) + 4) / 2 for word in lines)  # the words centred on one line down
    for k, word in enumerate(lines):
        canvas.text(right - half, middle + (len(lines) / 2 - k - 0.5) * size * 1.25, word, size)


def _legend(canvas: Canvas, bottom: float, top: float, entries, lines) -> None:
    """A legend box (colour or mark, and name, per entry) in the corner of
    the frame that the `lines` (page points) cross least; upper right on
    a tie, then upper left, lower left, lower right."""
    size = SIZES["legend"]
    columns = 2 if len(entries) > 5 else 1
    rows = math.ceil(len(entries) / columns)
    row, swatch = size * 1.6, 16.0
    column = swatch + 5 + max(_width(name, size) for _, _, name in entries) + 6
    width, height = columns * column + 6, rows * row + 6
    inset = 6.0
    corners = [(RIGHT - inset - width, top - inset - height), (LEFT + inset, top - inset - height),
               (LEFT + inset, bottom + inset), (RIGHT - inset - width, bottom + inset)]
    sampled = np.arange(LEFT, RIGHT, 2.0)
    crossings = []
    for xs, ys in lines:
        finite = np.isfinite(xs) & np.isfinite(ys)
        if finite.sum() >= 2:
            inside = (sampled >= xs[finite].min()) & (sampled <= xs[finite].max())
            crossings.append(np.stack([sampled[inside], np.interp(sampled[inside], xs[finite], ys[finite])]))
        elif finite.any():
            crossings.append(np.stack([xs[finite], ys[finite]]))

    def crossed(corner):
        x0, y0 = corner
        return sum(int(np.sum((c[0] >= x0) & (c[0] <= x0 + width) & (c[1] >= y0) & (c[1] <= y0 + height)))
                   for c in crossings)

    x0, y0 = min(corners, key=crossed)  # min keeps the first of equals
    canvas.box(x0, y0, x0 + width, y0 + height, STYLES["legend"])
    for k, (kind, colour, name) in enumerate(entries):
        left = x0 + 3 + (k // rows) * column + 3
        y = y0 + height - 3 - (k % rows + 0.5) * row
        if kind == "mark":
            canvas.node(left + swatch / 2, y, **STYLES["mark"])
        else:
            canvas.box(left, y - 0.6, left + swatch, y + 0.6, STYLES["swatch"], fillcolor=colour)
        canvas.text(left + swatch + 5, y, name, size, align="left")


def to_dot(calls: Sequence[CallPoint], title: str = "") -> str:
    """The plot's DOT source, every node pinned; the same bytes for the
    same calls (each position written to two decimals of a point).

        >>> source = to_dot([CallPoint(1, 1.0, (), True), CallPoint(2, 0.5, (), False)])
        >>> "Loss per backward call" in source and source == to_dot([CallPoint(1, 1.0, (), True),
        ...                                                          CallPoint(2, 0.5, (), False)])
        True
    """
    canvas = Canvas()
    canvas.node(0, 0)  # the page's corners: graphviz sizes the picture to its nodes
    canvas.node(WIDTH, HEIGHT)
    x_axis = Axis.fitted([call.index for call in calls], LEFT, RIGHT, integer=True)
    page_x = x_axis.at([call.index for call in calls])
    explained = [position for position, call in enumerate(calls) if call.explained]
    (loss_bottom, loss_top), (norm_bottom, norm_top) = FRAMES

    if explained and len(explained) <= MARKED:  # first, so that every line is drawn over them
        for bottom, top in FRAMES:
            for position in explained:
                canvas.line([page_x[position]] * 2, [bottom, top], **STYLES["band"])

    losses = np.array([np.nan if call.loss is None else call.loss for call in calls], dtype=float)
    loss_axis = None
    if np.any(np.isfinite(losses)):
        loss_axis = Axis.fitted(losses, loss_bottom, loss_top, log=_spans_decades(losses))
        page_loss = loss_axis.at(losses)
        canvas.line(*_thinned(page_x, page_loss), color=LOSS_COLOUR, penwidth="1.2")
        if explained and len(explained) <= MARKED:
            for position in explained:
                if np.isfinite(page_loss[position]):
                    canvas.node(page_x[position], page_loss[position], **STYLES["mark"])
            _legend(canvas, loss_bottom, loss_top, [("line", LOSS_COLOUR, "root (loss)"),
                                                    ("mark", EXPLAINED_COLOUR, "explained (walkthrough, picture)")],
                    [(page_x, page_loss)])
        _y_label(canvas, loss_bottom, loss_top, "loss", [label for _, label in loss_axis.ticks()[0]])
    else:
        canvas.text((LEFT + RIGHT) / 2, (loss_bottom + loss_top) / 2, "no call's root is a single number",
                    SIZES["label"], colour="gray50")
    _frame(canvas, loss_bottom, loss_top, x_axis, loss_axis, x_labels=False)
    canvas.text(LEFT, loss_top + 9, shorten(title or "Loss per backward call", 70), SIZES["title"], align="left")
    if len(explained) > MARKED:
        canvas.text(RIGHT, loss_top + 9, f"{len(explained)} of {len(calls)} calls explained", SIZES["note"],
                    align="right", colour=EXPLAINED_COLOUR)

    series = _leaf_series(calls)
    drawn = list(series)[:LEAVES_DRAWN]
    norm_axis = None
    if drawn:
        norms = np.concatenate([series[name] for name in drawn])
        norm_axis = Axis.fitted(norms, norm_bottom, norm_top, log=_spans_decades(norms[np.isfinite(norms)]))
        lines = []
        for name, colour in zip(drawn, LEAF_COLOURS):
            page_norm = norm_axis.at(series[name])
            canvas.line(*_thinned(page_x, page_norm), color=colour)
            lines.append((page_x, page_norm))
        _legend(canvas, norm_bottom, norm_top, [("line", colour, f"‖{shorten(name, 40)}‖")
                                                for name, colour in zip(drawn, LEAF_COLOURS)], lines)
        _y_label(canvas, norm_bottom, norm_top, "gradient norm", [label for _, label in norm_axis.ticks()[0]])
    else:
        canvas.text((LEFT + RIGHT) / 2, (norm_bottom + norm_top) / 2, "no leaf had a .grad", SIZES["label"],
                    colour="gray50")
    _frame(canvas, norm_bottom, norm_top, x_axis, norm_axis, x_labels=True)
    more = len(series) - len(drawn)
    heading = "‖.grad‖ of each leaf after each call" + (f" (the first {len(drawn)} of {len(series)} leaves)"
                                                       if more else "")
    canvas.text(LEFT, norm_top + 9, heading, SIZES["title"], align="left")
    canvas.text((LEFT + RIGHT) / 2, norm_bottom - TICK - 22, "backward call", SIZES["label"])
    return canvas.source()


# --- drawing --------------------------------------------------------------------------------

def draw(source: str, format: str) -> bytes:
    """`source` (from `to_dot`) in `format`: the DOT bytes themselves, or
    graphviz's picture; a PlotError, in one line, when it cannot be drawn."""
    if format not in FORMATS:
        raise PlotError(f"Unknown picture format {format!r}: choose from {', '.join(FORMATS)}.")
    if format == "dot":
        return source.encode("utf-8")
    try:
        return _draw(source, format)
    except RenderError as problem:
        raise PlotError(str(problem)) from None


def plot(calls: Sequence[CallPoint], path: str, title: str = "") -> str:
    """Draw `calls` into `path`, in the format its ending names (.png, .svg,
    .pdf, .dot); returns `path`. Raises PlotError, with a one-line message,
    when it cannot be drawn or written.

        >>> import os, tempfile
        >>> calls = [CallPoint(1, 0.9, (("w", 2.0),), True), CallPoint(2, 0.5, (("w", 1.0),), False)]
        >>> os.path.getsize(plot(calls, os.path.join(tempfile.mkdtemp(), "loop.dot"))) > 0
        True
    """
    data = draw(to_dot(calls, title), os.path.splitext(path)[1].lstrip(".").lower())
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as error:
        raise PlotError(f"{error.strerror or error}.") from None
    return path


# Note [a plot drawn by graphviz]
# The plot was drawn by matplotlib, whose import and layout cost about
# 0.9 s of CPU on a small script's loop (import 0.2 s, constrained layout
# 0.3 s, savefig 0.45 s): half of that script's whole traced run. graphviz,
# which draws the call pictures, can plot as well when it is told where
# everything goes: its `nop2` layout (what `neato -n2` does, chosen by the
# graph's own `layout`, so any `dot -Tpng loop.dot` draws it) takes each
# node's `pos` (in points) as given, lays nothing out, and draws each edge
# along the path its own `pos` gives (a straight piece is a cubic Bézier
# whose control points are its ends). So a line is one edge between two
# invisible nodes, its path given whole (cairo joins its pieces as one
# stroke); ticks are short edges, the frames and the legend boxes, and
# text is a plaintext node set left or right within a box as wide as the
# page allows on that side (graphviz sets no label on its side, hence the
# y axis's name across, a word a line). No node reaches past the page's
# corners, which two invisible nodes pin, so the picture is always 800 ×
# 600 pixels. The source is plain text built here, every position at two
# decimals of a point, so the same calls give the same DOT, PNG and SVG
# bytes (a PDF carries cairo's date, as the call pictures' do). Since the
# layout is named in the source, the plot is one more file for the `dot`
# that draws the call pictures (Note [one dot for many pictures] in
# render/dot.py): on gradient_descent.py about 25 ms of CPU in all, 15 ms
# to build the source and 8 ms more for that `dot`. Nothing here imports
# matplotlib, so the script's own (figures, backend, rcParams) is never
# touched. PLOTTED_FROM stays at a loop's length: the cost no longer
# argues for it, but a run the calls table shows in full needs no picture
# beside it, and a short script's output folder keeps the files it had.

# Note [a long loop's lines]
# Each call is a point of each line's path, about 40 characters of source:
# a 2000-step loop with ten leaves is 0.9 MB that dot reads in about 0.1 s.
# Past four points per COLUMN (half a point, under a pixel at DPI 100:
# about 4000 calls), a line is thinned: within one column it is drawn as a
# stroke from its lowest to its highest point, joined to its neighbours by
# its first and last, so keeping those four points of each column sets the
# same pixels, and a loop of any length costs about what 4000 steps do.
