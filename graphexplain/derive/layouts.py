"""How an op in index notation splits its dims into rows and an axis.

A row in index notation (`IndexFormula`) names one element of the result
along the axis the op works along; its `layout` says which dims that axis is
(the saved `dim`, layer_norm's trailing dims, batch_norm's all-but-channels,
...) and how each tensor's dims line up with it. `Layout` arranges every
tensor as (*rows, N) for `graphexplain.derive.sums`, and puts gradients back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from ..model import Node
from ..rules.kinds import IndexFormula
from . import arguments
from .broadcast import reduced_dims
from .sums import CannotEvaluate

_SUBSCRIPTED = re.compile(r"\b([A-Za-z_]\w*)\s*\[")


def texts(rule: IndexFormula) -> Tuple[str, ...]:
    """Every formula of the row: the forward, the later outputs', the `where` pieces."""
    return (rule.forward,) + rule.outputs + tuple(text for _, text in rule.where)


def tensor_names(rule: IndexFormula) -> Tuple[str, ...]:
    """The row's names written with a subscript: ``self`` in ``self[k]``."""
    return tuple(dict.fromkeys(n for text in texts(rule) for n in _SUBSCRIPTED.findall(text)))


@dataclass(frozen=True)
class Layout:
    """How an op's dims split into rows and the axis it works along.

    `shape` is the op's view of its main operand (group_norm views (N, C, HW)
    as (N, groups, C/groups, HW)); `axis` the dims of `shape` that make up the
    axis. A tensor's dims line up with `shape`'s as numpy broadcasting does,
    unless `aligned` says otherwise (batch_norm's weight (C,) is (1, C, 1)).
    `known` holds values the layout provides: coordinates along the axis,
    arguments torch did not save. `views` are words of the formula that see
    an operand with dims of their own (pdist's row and col are both self);
    `kept` are the rows the op's output holds (pdist keeps the pairs r < c),
    as numpy indices into the rows; None for all of them.

    >>> layout = Layout((2, 3), (1,))
    >>> layout.rows, layout.count, layout.arrange(np.arange(6.0), (2, 3)).tolist()
    ((2,), 3, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    """

    shape: Tuple[int, ...]
    axis: Tuple[int, ...]
    aligned: Mapping[str, Tuple[int, ...]] = field(default_factory=dict)
    known: Mapping[str, object] = field(default_factory=dict)
    views: Mapping[str, Tuple[str, Tuple[int, ...]]] = field(default_factory=dict)
    kept: Optional[Tuple[np.ndarray, ...]] = None

    @property
    def row_dims(self) -> Tuple[int, ...]:
        return tuple(d for d in range(len(self.shape)) if d not in self.axis)

    @property
    def rows(self) -> Tuple[int, ...]:
        return tuple(self.shape[d] for d in self.row_dims)

    @property
    def count(self) -> int:
        return int(np.prod([self.shape[d] for d in self.axis], dtype=np.int64))

    def align(self, name: str, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """A tensor's shape in the dims of `shape` (1 where it is broadcast)."""
        shape = tuple(shape)
        if name in self.aligned and int(np.prod(shape, dtype=np.int64)) == int(np.prod(self.aligned[name])):
            return tuple(self.aligned[name])
        if int(np.prod(shape, dtype=np.int64)) == int(np.prod(self.shape, dtype=np.int64)):
            return self.shape
        if len(shape) > len(self.shape):
            raise CannotEvaluate(f"a tensor of shape {shape} does not fit {self.shape}")
        padded = (1,) * (len(self.shape) - len(shape)) + shape
        if any(size not in (1, full) for size, full in zip(padded, self.shape)):
            raise CannotEvaluate(f"a tensor of shape {shape} does not fit {self.shape}")
        return padded

    def arrange(self, data, aligned: Tuple[int, ...]) -> np.ndarray:
        """A tensor as rows × axis: shape (*rows, N), or (*rows, 1) when it
        is the same all along the axis (rows of 1 where it is broadcast)."""
        array = np.asarray(data, dtype=np.float64).reshape(aligned)
        array = array.transpose(self.row_dims + self.axis)
        rows = array.shape[:len(self.row_dims)]
        if all(size == 1 for size in array.shape[len(self.row_dims):]):
            return array.reshape(rows + (1,))
        array = np.broadcast_to(array, rows + tuple(self.shape[d] for d in self.axis))
        return array.reshape(rows + (self.count,))

    def per_row(self, data) -> np.ndarray:
        """A number per row (logsumexp's result, its upstream) as (*rows, 1);
        rows the output does not hold get 0."""
        data = np.asarray(data, dtype=np.float64)
        if self.kept is None:
            return data.reshape(self.rows + (1,))
        every_row = np.zeros(self.rows)
        every_row[self.kept] = data.reshape(-1)
        return every_row[..., None]

    def output(self, values: np.ndarray) -> np.ndarray:
        """The inverse of `per_row`: the numbers of the rows the output holds."""
        values = np.broadcast_to(values, self.rows + (1,))[..., 0]
        return values if self.kept is None else values[self.kept]

    def restore(self, gradient: np.ndarray, aligned: Tuple[int, ...]) -> np.ndarray:
        """The inverse of `arrange` for a gradient: back to `aligned`, summed
        over the dims the tensor was broadcast along."""
        full = np.broadcast_to(gradient, self.rows + (self.count,))
        axis_shape = tuple(self.shape[d] for d in self.axis)
        full = full.reshape(self.rows + axis_shape)
        full = full.transpose(np.argsort(self.row_dims + self.axis))
        copied = tuple(d for d, (size, whole) in enumerate(zip(aligned, self.shape)) if size == 1 and whole != 1)
        return (full.sum(axis=copied, keepdims=True) if copied else full).reshape(aligned)


def _main_shape(rule: IndexFormula, node: Node, broadcast: bool = False) -> Tuple[int, ...]:
    """The shape of the op's first operand, or of all its operands broadcast together."""
    names = rule.inputs if broadcast else rule.inputs[:1]
    shapes = [o.value.shape for o in node.operands if o.value is not None and o.name in names]
    if not shapes:
        raise CannotEvaluate("the shape of the op's input is unknown")
    return tuple(np.broadcast_shapes(*shapes))


def _dims(rule, node, saved) -> Layout:
    """Along the saved `dim` (an int, a list, or None for every dim)."""
    shape = _main_shape(rule, node)
    if not shape:
        return Layout((1,), (0,))  # a 0-dim tensor is one element along its dim
    return Layout(shape, reduced_dims(saved.get("dim"), len(shape)))


def _everything(rule, node, saved) -> Layout:
    """All elements of the operands (broadcast together) form the axis."""
    shape = _main_shape(rule, node, broadcast=True) or (1,)
    return Layout(shape, tuple(range(len(shape))))


def _all_but_dim(rule, node, saved) -> Layout:
    """Each slice along `dim` is a row (renorm)."""
    shape = _main_shape(rule, node)
    dim = int(saved["dim"]) % len(shape)
    return Layout(shape, tuple(d for d in range(len(shape)) if d != dim))


def _trailing(rule, node, saved) -> Layout:
    """The last len(normalized_shape) dims (layer_norm). Torch does not save
    eps: it is recovered from the saved 1/sqrt(var + eps) (Note [layer_norm's
    eps])."""
    shape = _main_shape(rule, node)
    kept = len(shape) - len(saved["normalized_shape"])
    layout = Layout(shape, tuple(range(kept, len(shape))))
    return Layout(layout.shape, layout.axis, known={"eps": _layer_norm_eps(node, saved, layout)})


# Note [layer_norm's eps]
# NativeLayerNormBackward0 saves the input and rstd = 1/sqrt(var + eps) but
# not eps, which the forward formula needs. It is the same for every row:
# eps = 1/rstd**2 - var(input), taken over the rows where rstd is finite.
def _layer_norm_eps(node: Node, saved, layout: Layout) -> float:
    rstd = saved.get("result2")
    source = next((o.value for o in node.operands if o.name == "input"), None)
    if rstd is None or source is None or not source.known:
        raise CannotEvaluate("layer_norm's eps cannot be recovered: rstd or the input is unknown")
    rows = layout.arrange(source.data, layout.shape)
    with np.errstate(all="ignore"):
        eps = 1.0 / np.asarray(rstd, dtype=np.float64).reshape(-1) ** 2 - rows.var(axis=-1).reshape(-1)
    finite = eps[np.isfinite(eps)]
    return float(np.mean(finite)) if finite.size else float("nan")


def _channels(rule, node, saved) -> Layout:
    """Every dim but dim 1, the channels (batch_norm); per-channel tensors
    (weight, bias, running stats) line up with dim 1."""
    shape = _main_shape(rule, node)
    per_channel = tuple(size if d == 1 else 1 for d, size in enumerate(shape))
    aligned = {name: per_channel for name in tensor_names(rule) if name not in rule.inputs[:1]}
    return Layout(shape, tuple(d for d in range(len(shape)) if d != 1), aligned)


def _groups(rule, node, saved) -> Layout:
    """(N, C, *) seen as (N, groups, C/groups, HxW): each (sample, group) is a
    row (group_norm); per-channel tensors line up with (groups, C/groups)."""
    count, channels, spatial, groups = (int(saved[name]) for name in ("N", "C", "HxW", "group"))
    shape = (count, groups, channels // groups, spatial)
    per_channel = (1, groups, channels // groups, 1)
    aligned = {name: per_channel for name in tensor_names(rule) if name not in rule.inputs[:1]}
    return Layout(shape, (2, 3), aligned)


def _pairs(rule, node, saved) -> Layout:
    """cdist: x1 (*, R, M) and x2 (*, C, M) seen as (*, R, C, M), each pair of
    rows (r, c) a row of its own, along the M coordinates."""
    first, second = (next(o.value.shape for o in node.operands if o.name == name) for name in rule.inputs[:2])
    batch = tuple(np.broadcast_shapes(first[:-2], second[:-2]))
    lead = lambda shape: (1,) * (len(batch) - len(shape) + 2) + tuple(shape[:-2])  # noqa: E731
    shape = batch + (first[-2], second[-2], first[-1])
    aligned = {rule.inputs[0]: lead(first) + (first[-2], 1, first[-1]),
               rule.inputs[1]: lead(second) + (1, second[-2], second[-1])}
    return Layout(shape, (len(shape) - 1,), aligned)


def _condensed_pairs(rule, node, saved) -> Layout:
    """pdist: self (R, M), each pair of its rows (r, c) a row of (R, R, M),
    along the M coordinates; `row` is self[r], `col` self[c], and the output
    holds the pairs r < c in order."""
    count, width = _main_shape(rule, node)
    views = {"row": ("self", (count, 1, width)), "col": ("self", (1, count, width))}
    return Layout((count, count, width), (2,), views=views, kept=np.triu_indices(count, 1))


def _classes(rule, node, saved) -> Layout:
    """nll_loss: self (batch, C, *) against target (batch, *). With
    reduction 'none' each element of the target is a row, along the classes;
    otherwise every element is on one axis. `cls` is an element's class."""
    shape = _main_shape(rule, node)
    at = 1 if len(shape) >= 2 else 0
    per_class = tuple(size if d == at else 1 for d, size in enumerate(shape))
    per_target = tuple(1 if d == at else size for d, size in enumerate(shape))
    none = int(saved.get("reduction", 1)) == 0
    axis = (at,) if none else tuple(range(len(shape)))
    classes = np.arange(shape[at], dtype=np.float64).reshape(per_class)
    aligned = {"weight": per_class, "target": per_target, "cls": per_class}
    return Layout(shape, axis, aligned, {"cls": classes})


# The words a layout gives a row besides its saved arguments.
LAYOUT_WORDS = {"classes": ("cls",), "trailing": ("eps",), "condensed-pairs": ("row", "col")}


LAYOUTS: Dict[str, Callable[..., Layout]] = {
    "dim": _dims,
    "all": _everything,
    "all-but-dim": _all_but_dim,
    "trailing": _trailing,
    "channels": _channels,
    "groups": _groups,
    "pairs": _pairs,
    "condensed-pairs": _condensed_pairs,
    "classes": _classes,
}


def layout(rule: IndexFormula, node: Node) -> Layout:
    try:
        return LAYOUTS[rule.layout](rule, node, arguments.saved(node))
    except (KeyError, TypeError, ZeroDivisionError, StopIteration) as problem:
        raise CannotEvaluate(f"the op's dims do not fit the row's layout ({problem})") from None


def _halves(rule, node, saved) -> Layout:
    """glu: self's `dim` seen as (2, D/2), its first and second halves; the
    axis is that 2, so each row holds one element of each half, at the same
    place, and the result one number per row."""
    shape = _main_shape(rule, node)
    dim = int(saved["dim"]) % len(shape)
    if shape[dim] % 2:
        raise CannotEvaluate(f"glu halves a dim of even length, not {shape[dim]}")
    return Layout(shape[:dim] + (2, shape[dim] // 2) + shape[dim + 1:], (dim,))


LAYOUTS["halves"] = _halves


def _class_pairs(rule, node, saved) -> Layout:
    """multi_margin_loss, multilabel_margin_loss: self (C,) or (n, C), the
    classes last, seen as (n, C, C), each sample's pairs (y, c) of classes.
    `target_score` is self at the pair's first class y, `score` self at its
    second c; `cls_y` and `cls_c` are the two classes, `C` their number,
    `listed` how often y is listed in a class-list target (multilabel's,
    entries before the first -1). Per-class tensors (weight) line up with y,
    is_target with c, a target per sample with the sample. With reduction
    'none' each sample is a row, along its pairs; otherwise every pair of
    every sample is on one axis."""
    shape = _main_shape(rule, node) or (1,)
    lead, classes = tuple(shape[:-1]), shape[-1]
    ones = (1,) * len(lead)
    first, second = lead + (classes, 1), lead + (1, classes)
    none = int(saved.get("reduction", 1)) == 0
    pairs = lead + (classes, classes)
    axis = (len(lead), len(lead) + 1) if none else tuple(range(len(pairs)))
    known = {"cls_y": np.arange(classes, dtype=np.float64).reshape(ones + (classes, 1)),
             "cls_c": np.arange(classes, dtype=np.float64).reshape(ones + (1, classes)), "C": float(classes)}
    target = saved.get("target")
    if target is not None and int(np.size(target)) == int(np.prod(shape, dtype=np.int64)):
        known["listed"] = _times_listed(np.asarray(target).reshape(-1, classes)).reshape(first)
    aligned = {"weight": ones + (classes, 1), "is_target": second, "target": lead + (1, 1), "listed": first,
               "cls_y": ones + (classes, 1), "cls_c": ones + (1, classes)}
    views = {"target_score": ("self", first), "score": ("self", second)}
    return Layout(pairs, axis, aligned, known, views)


def _times_listed(targets: np.ndarray) -> np.ndarray:
    """(n, C) class lists → (n, C) counts: how often each class is listed."""
    listed = np.cumprod(targets != -1, axis=-1).astype(bool)
    counts = np.zeros(targets.shape, dtype=np.float64)
    rows = np.broadcast_to(np.arange(targets.shape[0])[:, None], targets.shape)
    np.add.at(counts, (rows[listed], targets[listed]), 1.0)
    return counts


LAYOUTS["class-pairs"] = _class_pairs
LAYOUT_WORDS["class-pairs"] = ("cls_y", "cls_c", "C", "listed", "target_score", "score")


def _trilinear(rule, node, saved) -> Layout:
    """aten::_trilinear (nn.Bilinear): each operand gets size-1 dims at the
    places its saved `expand1`/`expand2`/`expand3` name, the three are
    broadcast together, and `sumdim` is the axis summed over: bilinear's
    x1 (n, i), W (o, i, j), x2 (n, j) are (n, 1, i, 1), (1, o, i, j),
    (n, 1, 1, j) in (n, o, i, j), whose rows (n, o) are the result."""
    aligned = {}
    for name, expand in zip(rule.inputs, ("expand1", "expand2", "expand3")):
        shape = next(o.value.shape for o in node.operands if o.name == name)
        for dim in sorted(int(d) for d in saved[expand]):
            shape = shape[:dim] + (1,) + shape[dim:]
        aligned[name] = tuple(shape)
    full = tuple(np.broadcast_shapes(*aligned.values()))
    return Layout(full, tuple(sorted(int(d) % len(full) for d in saved["sumdim"])), aligned)


LAYOUTS["trilinear"] = _trilinear
