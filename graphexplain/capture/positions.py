"""Routing maps from torch's own forward, run on positions.

A routing row's forward only moves, copies or adds up elements, so torch's
*forward*, the definition of the op, says where each output element came
from when it runs on numbers that name the input elements. Capture runs it
once per routing node (float64, CPU, no grad, the recorder paused) and
records the answer on the node as plain data, a `model.PositionMap`; derive
then sends each upstream element back along it with numpy. Torch's
backward plays no part, so the check stays independent (Note [independence
of the derived side] in observed.py), and no forward is written twice.

    >>> import torch
    >>> found = position_map("index_select(self, dim, index)", {"dim": 0, "index": np.array([2, 0])},
    ...                      [(3,)], [(2,)])
    >>> found.inputs.tolist(), found.weights is None
    ([2, 0], True)

Note [positions as numbers]
A selection (a view, an index, a gather, a pad) runs on the positions
1, 2, ..., numel (float64 holds every integer up to 2**53 exactly), so an
output element holding p came from input element p - 1 and one holding 0
came from no input (padding, tril's zeros): EMPTY once 1 is taken off.

Note [weights from probes]
A weighted op (avg_pool, adaptive_avg_pool, interpolation) makes each
output element Σ w·input over a few input elements, the same on every
(batch, channel) plane. Its weights are its Jacobian, and the forward gives
them exactly where it sees one input element at a time: on a probe that is
1 at element p and 0 elsewhere, output element o holds w[o, p] itself. Many
elements share one probe when no output element reads two of them: the
elements of one colour, x_d mod m_d equal along every spatial dim d, where
m_d is how far apart two places along d one output element reads can be (a
first forward, on one probe per place along each dim, says so; the ops are
separable, each dim read independently). A second probe of the colour,
(p + 1) at each of its elements, gives w·(p + 1), so (p + 1) is the ratio:
which element each weight belongs to comes from the forward too. The ratio
is checked to be an integer of that colour (a reach misjudged would make it
not one), and otherwise no map is recorded and the node keeps torch's
numbers, as for any row that cannot apply.
"""

from __future__ import annotations

import ast
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..model import PositionMap

aten = torch.ops.aten
Shape = Tuple[int, ...]
EMPTY = -1  # as derive/routing.py's: an output element from no input
_PROBE_ELEMENTS = 1 << 23  # about 64 MB of float64 per probing forward


def _by_dims(functions: Dict[int, Callable]) -> Callable:
    """The aten op of as many spatial dims as the output size has."""
    return lambda self, output_size, *rest: functions[len(output_size)](self, list(output_size), *rest)


def _adaptive(function, spatial: int) -> Callable:
    return lambda self, result_shape: function(self, list(result_shape[-spatial:]))


def _pool_of(kernel_size) -> Callable:
    return {1: aten.avg_pool2d, 2: aten.avg_pool2d, 3: aten.avg_pool3d}[len(kernel_size)]


def _pooled(spatial: int) -> Callable:
    """max_pool's choice, as its forward returned it (`result1`, the flat
    place within each plane): those positions, gathered."""
    def gather(self, indices):
        planes = self.flatten(-spatial)
        chosen = indices.flatten(-spatial)
        return torch.gather(planes.expand(chosen.shape[:-1] + planes.shape[-1:]), -1, chosen).reshape(indices.shape)
    return gather


def _take_along(self, indices, dim, keepdim=True):
    """The elements a value-selecting reduction over `dim` (max, sort,
    topk, cummax) kept, as its forward returned them in `indices`."""
    if self.dim() == 0:
        return self.expand(indices.shape)
    taken = torch.gather(self, dim, indices if keepdim else indices.unsqueeze(dim))
    return taken if keepdim else taken.squeeze(dim)


def _embedding(weight, indices, padding_idx, scale_grad_by_freq):
    """The rows F.embedding picks, the padding row too: that it is a
    constant for torch is derive's convention (derive/routing.py's
    CONVENTIONS), so replaying the map gives the rows' real numbers."""
    if scale_grad_by_freq:
        raise ValueError("scale_grad_by_freq is not a forward")  # derive/routing.py says why
    return F.embedding(indices, weight)


def _by_padding(functions: Dict[int, Callable]) -> Callable:
    return lambda self, padding: functions[len(padding) // 2](self, list(padding))


# Forwards that select elements: routing function name → torch's forward,
# taking the row's arguments in the row's order (Note [positions as numbers]).
SELECTIONS: Dict[str, Callable[..., torch.Tensor]] = {
    "gather": lambda self, dim, index: torch.gather(self, dim, index) if self.dim() else self.expand(index.shape),
    "index_select": lambda self, dim, index: torch.index_select(self, dim, index.reshape(-1)),
    "take": lambda self, index: torch.take(self, index),
    "getitem": lambda self, indices: aten.index(self, list(indices)),
    "masked_select": torch.masked_select,
    "embedding": _embedding,
    "take_along": _take_along,
    "pooled2d": _pooled(2),
    "pooled3d": _pooled(3),
    "flip": lambda self, dims: torch.flip(self, list(dims)),
    "roll": lambda self, shifts, dims: torch.roll(self, list(shifts), list(dims)),
    "rot90": lambda self, k, dims: torch.rot90(self, k, list(dims)),
    "repeat": lambda self, repeats: self.repeat(list(repeats)),
    "diagonal": lambda self, offset, dim1, dim2: torch.diagonal(self, offset, dim1, dim2),
    "diag_embed": torch.diag_embed,
    "tril": torch.tril,
    "triu": torch.triu,
    "unfold": lambda self, dimension, size, step: self.unfold(dimension, size, step),
    "constant_pad": lambda self, pad, value: F.pad(self, list(pad)),  # the pad from no input, 0, whatever its value
    "reflection_pad": _by_padding({1: aten.reflection_pad1d, 2: aten.reflection_pad2d, 3: aten.reflection_pad3d}),
    "replication_pad": _by_padding({1: aten.replication_pad1d, 2: aten.replication_pad2d,
                                    3: aten.replication_pad3d}),
    "pixel_shuffle": torch.pixel_shuffle,
    "pixel_unshuffle": torch.pixel_unshuffle,
    "channel_shuffle": lambda self, groups: aten.native_channel_shuffle(self, groups),
    "im2col": lambda self, kernel_size, dilation, padding, stride: aten.im2col(
        self, list(kernel_size), list(dilation), list(padding), list(stride)),
}

# Selections the same on every (batch, channel) plane: probed on one plane.
PLANE_SELECTIONS: Dict[str, Tuple[Callable[..., torch.Tensor], Callable[..., int]]] = {
    "upsample_nearest": (_by_dims({1: aten.upsample_nearest1d, 2: aten.upsample_nearest2d,
                                   3: aten.upsample_nearest3d}), lambda output_size, *_: len(output_size)),
    "upsample_nearest_exact": (_by_dims({1: aten._upsample_nearest_exact1d, 2: aten._upsample_nearest_exact2d,
                                         3: aten._upsample_nearest_exact3d}), lambda output_size, *_: len(output_size)),
}

# Weighted forwards, linear in self and the same on every plane (Note
# [weights from probes]): torch's forward, and how many trailing dims are spatial.
WEIGHTED: Dict[str, Tuple[Callable[..., torch.Tensor], Callable[..., int]]] = {
    "avg_pool": (lambda self, kernel_size, *rest: _pool_of(kernel_size)(self, list(kernel_size), *map(_listed, rest)),
                 lambda kernel_size, *_: len(kernel_size)),
    "adaptive_avg_pool2d": (_adaptive(aten._adaptive_avg_pool2d, 2), lambda *_: 2),
    "adaptive_avg_pool3d": (_adaptive(aten._adaptive_avg_pool3d, 3), lambda *_: 3),
    "upsample_linear": (_by_dims({1: aten.upsample_linear1d, 2: aten.upsample_bilinear2d,
                                  3: aten.upsample_trilinear3d}), lambda output_size, *_: len(output_size)),
    "upsample_bicubic": (aten.upsample_bicubic2d, lambda *_: 2),
    "upsample_bilinear_aa": (aten._upsample_bilinear2d_aa, lambda *_: 2),
}

RECORDED = frozenset(SELECTIONS) | frozenset(PLANE_SELECTIONS) | frozenset(WEIGHTED)


def _listed(value):
    return list(value) if isinstance(value, tuple) else value


def _argument(value):
    """A saved argument as torch's forward takes it: an index array back
    as an int64 (or bool) tensor."""
    if isinstance(value, np.ndarray):  # (ascontiguousarray makes a 0-d index 1-d: the shape is put back)
        return torch.from_numpy(np.ascontiguousarray(value).reshape(value.shape))
    if isinstance(value, (tuple, list)) and any(isinstance(v, np.ndarray) for v in value):  # index's `indices`
        return [_argument(v) for v in value]
    return value


def _call_words(forward: str) -> Tuple[str, List[str]]:
    call = ast.parse(forward, mode="eval").body
    return call.func.id, [arg.id for arg in call.args]


def position_map(forward: str, params: Dict[str, Any], operand_shapes: Sequence[Optional[Shape]],
                 output_shapes: Sequence[Optional[Shape]], operand: str = "self") -> Optional[PositionMap]:
    """The map of a routing row's forward, from torch's forward run on
    positions; None where the row's function is not one run here, or
    where a shape or argument is missing.

    >>> found = position_map("upsample_linear(self, output_size, align_corners, scales)",
    ...                      {"output_size": (3,), "align_corners": True, "scales": None}, [(1, 1, 2)], [(1, 1, 3)])
    >>> found.inputs.tolist(), found.weights.tolist()
    ([0, 0, 1, 1], [1.0, 0.5, 0.5, 1.0])
    """
    name, words = _call_words(forward)
    if name not in RECORDED or len(operand_shapes) != 1 or operand_shapes[0] is None or not output_shapes \
            or output_shapes[0] is None:
        return None
    shape, result_shape = tuple(operand_shapes[0]), tuple(output_shapes[0])
    known = dict(params, result_shape=result_shape)
    with torch.no_grad():  # an argument torch did not keep (the pad's value) is None: the forward says if it matters
        bind = lambda self: [self if word == operand else _argument(known.get(word)) for word in words]  # noqa: E731
        if name in SELECTIONS:
            return _selection(lambda self: SELECTIONS[name](*bind(self)), shape)
        function, spatial_of = PLANE_SELECTIONS.get(name) or WEIGHTED[name]
        spatial = spatial_of(*[known.get(word) for word in words if word != operand])
        run = lambda probe: function(*bind(probe))  # noqa: E731
        if name in PLANE_SELECTIONS:
            return _plane_selection(run, shape, result_shape, spatial)
        return _weighted(run, shape, result_shape, spatial)


def _selection(run: Callable[[torch.Tensor], torch.Tensor], shape: Shape) -> PositionMap:
    """Note [positions as numbers]."""
    numel = int(np.prod(shape, dtype=np.int64))
    result = run(torch.arange(1, numel + 1, dtype=torch.float64).reshape(shape))
    held = result.reshape(-1).numpy().astype(np.int64) - 1
    taken = np.flatnonzero(held != EMPTY)
    return PositionMap(taken, held[taken], None, (tuple(result.shape),))


def _plane_selection(run, shape: Shape, result_shape: Shape, spatial: int) -> PositionMap:
    plane, lead = shape[len(shape) - spatial:], shape[:len(shape) - spatial]
    one = _selection(lambda positions: run(positions.reshape((1, 1) + plane)), plane)
    out_plane = int(np.prod(result_shape[len(result_shape) - spatial:], dtype=np.int64))
    return PositionMap(one.outputs, one.inputs, None, (result_shape,), int(np.prod(lead, dtype=np.int64)),
                       int(np.prod(plane, dtype=np.int64)), out_plane)


def _reach(run, plane: Shape) -> List[int]:
    """For each spatial dim d, m_d: one more than the farthest apart two
    places along d that one output element reads (Note [weights from
    probes]), from a forward with a probe per place along d. The ops read
    each dim independently, so the other dims are cut to one place where
    the op allows it (its weights along d do not depend on them)."""
    reach = []
    for d, length in enumerate(plane):
        part = None
        for cut in (True, False):
            shape = tuple(1 if cut and e != d else n for e, n in enumerate(plane))
            at = [length if e == d else 1 for e in range(len(plane))]
            probe = torch.eye(length, dtype=torch.float64).reshape([length, 1] + at).expand((length, 1) + shape)
            try:
                part = run(probe.contiguous()).abs()  # (place along d, 1, *output plane)
                break
            except RuntimeError:  # an avg_pool whose window needs more places: the whole plane
                if not cut:
                    raise
        others = tuple(e + 2 for e in range(len(plane)) if e != d)
        read = (part.amax(dim=(1,) + others) > 0).numpy() if others else (part[:, 0] > 0).numpy()  # (place, output)
        places = np.arange(length)[:, None]
        low = np.where(read, places, length).min(axis=0)
        high = np.where(read, places, -1).max(axis=0)
        span = np.where(high >= low, high - low + 1, 1)
        reach.append(int(min(max(int(span.max(initial=1)), 1), length)))
    return reach


def _weighted(run, shape: Shape, result_shape: Shape, spatial: int) -> Optional[PositionMap]:
    """Note [weights from probes]: one plane's edges (output, input, weight)."""
    split = len(shape) - spatial
    plane, lead = shape[split:], shape[:split]
    plane_size = int(np.prod(plane, dtype=np.int64))
    out_size = int(np.prod(result_shape[len(result_shape) - spatial:], dtype=np.int64))
    if plane_size == 0 or out_size == 0:
        return PositionMap(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), (result_shape,),
                           int(np.prod(lead, dtype=np.int64)), plane_size, out_size)
    reach = _reach(lambda probe: run(probe), plane)
    places = np.indices(plane).reshape(spatial, -1)
    colour = np.ravel_multi_index(tuple(p % m for p, m in zip(places, reach)), reach)  # each input element's
    colours = int(np.prod(reach))
    per_forward = max(1, _PROBE_ELEMENTS // (2 * (plane_size + out_size)))
    named = torch.arange(1, plane_size + 1, dtype=torch.float64)
    outputs, inputs, weights = [], [], []
    for first in range(0, colours, per_forward):
        chosen = np.arange(first, min(first + per_forward, colours))
        ones = torch.from_numpy((colour[None, :] == chosen[:, None]).astype(np.float64))  # (colours, plane)
        probe = torch.cat([ones, ones * named]).reshape((2 * len(chosen), 1) + plane)
        seen = run(probe).reshape(2 * len(chosen), out_size).numpy()
        weight, weighted_place = seen[:len(chosen)], seen[len(chosen):]
        which, output = np.nonzero(weight)
        ratio = weighted_place[which, output] / weight[which, output]
        place = np.rint(ratio).astype(np.int64) - 1
        if not (np.all((place >= 0) & (place < plane_size)) and np.all(colour[np.clip(place, 0, plane_size - 1)]
                                                                        == chosen[which])
                and np.all(np.abs(ratio - (place + 1)) <= 1e-6 * (place + 1))):
            return None  # not one element per colour: no map (Note [weights from probes])
        outputs.append(output)
        inputs.append(place)
        weights.append(weight[which, output])
    outputs, inputs, weights = (np.concatenate(a) for a in (outputs, inputs, weights))
    order = np.lexsort((inputs, outputs))
    return PositionMap(outputs[order], inputs[order], weights[order], (result_shape,),
                       int(np.prod(lead, dtype=np.int64)), plane_size, out_size)


def recorded(rule, params: Dict[str, Any], operand_shapes, output_shapes, recorder=None) -> Dict[str, Any]:
    """What capture adds to a routing node's params: its PositionMap, under
    PositionMap.PARAM, where the row's forward is one run here; nothing
    otherwise, or where torch's forward refuses the arguments (the node then
    keeps torch's numbers, as any row that cannot apply)."""
    forward = getattr(rule, "forward", "")
    if getattr(rule, "family", "") != "routing" or _call_words(forward)[0] not in RECORDED:
        return {}
    paused = recorder.paused if recorder is not None else None
    if recorder is not None:
        recorder.paused = True  # graphexplain's own calls: not the script's
    try:
        found = position_map(forward, params, operand_shapes, output_shapes, rule.inputs[0] if rule.inputs else "")
    except Exception:  # noqa: BLE001 - torch's forward may refuse what a node saved; derive then says so
        found = None
    finally:
        if recorder is not None:
            recorder.paused = paused
    return {PositionMap.PARAM: found} if found is not None else {}
