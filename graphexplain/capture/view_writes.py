"""In-place writes into views: what torch's CopySlices node does not say.

Note [a write into a view]
``v = x[:, 0]; v.mul_(2)`` changes x in place through a view, and so do
``x[:, 0] = v``, ``x.diagonal().add_(1)`` and the copies F.pad's circular
mode makes. Torch records one CopySlices node on x's graph: x, with the
elements the view reads replaced by fn(view, ...), where fn's own node
(MulBackward0; CopyBackwards for a copy) sits inside it, out of reach. The
node's next_functions are x's node, then fn's other inputs. It says neither
where the view lies in x nor which fn it wraps, so the recorder notes both
when the write happens (`ViewWrite`, on the node's metadata):

- the view's geometry, as as_strided takes it: size, stride and storage
  offset relative to the base's, with the base's own strides;
- fn's node, made by running fn once more on a copy of the view's old
  numbers that is no view (the *twin*): the twin's node is fn's node, with
  what fn saved (clamp's min and max, mul's other), and says fn's name.

``x[key] = v`` is one call in which torch itself picks the view and fn
(copy_, fill_, or index_put_ for an index tensor). The recorder replays the
assignment on a tensor laid out like x's base, under a dispatch mode that
sees the aten op and the view it writes into. Writes torch makes inside a
call (F.pad's circular mode) are found the same way, by replaying the call
on copies of its operands; each write is matched with its CopySlices node
by the order torch made them in. Nothing here touches the script's tensors:
replays and twins run on copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

VIEW_WRITE = "graphexplain.view_write"  # on a CopySlices node's metadata: a `ViewWrite`
_WALK_LIMIT = 64  # CopySlices nodes one call may make (F.pad circular 3-d makes 13)
_IN_PLACE_OPERATORS = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__", "__iand__", "__ior__"}


@dataclass
class ViewWrite:
    """Where a write into a view landed in its base, and what wrote it
    (Note [a write into a view])."""

    size: Tuple[int, ...]
    stride: Tuple[int, ...]
    storage_offset: int  # relative to the base's storage offset
    base_strides: Tuple[int, ...]
    twin: Any = None  # fn's node, made on a copy; None where fn could not be run again
    before: Optional[torch.Tensor] = None  # the view's numbers before the write
    after: Optional[torch.Tensor] = None  # and after it
    base_offset: int = 0  # the base's own storage offset (as_strided of the base after the write reads it)


def writes_in_place(func) -> bool:
    """`v.mul_(2)`, `v += 1`: a Tensor method that writes into its self."""
    name = getattr(func, "__name__", "")
    return name in _IN_PLACE_OPERATORS or (name.endswith("_") and not name.startswith("_"))


def is_setitem(func) -> bool:
    return func is torch.Tensor.__setitem__


def base_of(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor whose graph a write into `tensor` lands on: its base, for a view."""
    return tensor._base if tensor._is_view() and tensor._base is not None else tensor


def before_write(func, args) -> Optional[torch.Tensor]:
    """The view's numbers before an in-place method writes into it (fn's
    gradient may need them: clamp's, mul's by a tensor); None when the call
    is no such write."""
    if not args or not isinstance(args[0], torch.Tensor) or not writes_in_place(func):
        return None
    target = args[0]
    if not torch.is_grad_enabled() or not target._is_view() or target._base is None:
        return None
    if not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return None  # no node will be made: nothing to note
    return target.detach().clone()


def _geometry(view: torch.Tensor, base: torch.Tensor) -> Tuple[Tuple[int, ...], Tuple[int, ...], int, Tuple[int, ...]]:
    return (tuple(view.shape), tuple(int(s) for s in view.stride()),
            int(view.storage_offset()) - int(base.storage_offset()), tuple(int(s) for s in base.stride()))


def _detached(argument, keep_grad: bool = True):
    """A copy of a tensor argument for a twin, requiring grad as it did."""
    if not isinstance(argument, torch.Tensor):
        return argument
    copy = argument.detach().clone()
    return copy.requires_grad_(True) if keep_grad and argument.requires_grad and copy.is_floating_point() else copy


def _twin(call, self_numbers: torch.Tensor, others, kwargs):
    """fn's node: fn run once more on a copy of the view's numbers that is
    no view (Note [a write into a view])."""
    with torch.enable_grad():
        seed = self_numbers.detach().clone().requires_grad_(True)
        written = seed.clone()  # not a leaf: it may be written into
        call(written, *[_detached(o) for o in others], **{k: _detached(v) for k, v in kwargs.items()})
    return written.grad_fn if written.grad_fn is not None and type(written.grad_fn).__name__ != "CloneBackward0" \
        else None


def _annotate(node, write: ViewWrite) -> bool:
    if node is None or type(node).__name__ != "CopySlices" or VIEW_WRITE in node.metadata:
        return False
    node.metadata[VIEW_WRITE] = write
    return True


def note_method_write(func, args, kwargs, before: torch.Tensor) -> None:
    """After `view.fn_(...)`: the view's geometry and fn's twin, on the
    CopySlices node the write made on the view's base."""
    target = args[0]
    base = base_of(target)
    if base.grad_fn is None or type(base.grad_fn).__name__ != "CopySlices" or VIEW_WRITE in base.grad_fn.metadata:
        return
    size, stride, offset, base_strides = _geometry(target, base)
    twin = _twin(func, before, args[1:], kwargs)
    _annotate(base.grad_fn, ViewWrite(size, stride, offset, base_strides, twin, before, target.detach().clone(),
                                      int(base.storage_offset())))


class _Writes(TorchDispatchMode):
    """Sees every aten op that writes into its first argument, and the view
    it writes into, while a call is replayed."""

    def __init__(self, keep_before: bool):
        super().__init__()
        self.keep_before = keep_before
        self.seen: List[Tuple[Any, torch.Tensor, tuple, dict, Optional[torch.Tensor]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        schema = func._schema
        first = schema.arguments[0] if schema.arguments else None
        if first is not None and first.alias_info is not None and first.alias_info.is_write and args \
                and isinstance(args[0], torch.Tensor) and not schema.name.endswith("_out"):
            before = args[0].clone() if self.keep_before else None
            self.seen.append((func, args[0], tuple(args[1:]), dict(kwargs), before))
        return func(*args, **kwargs)


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except Exception:  # no storage to compare (meta, sparse)
        return False


def note_setitem(args) -> None:
    """After ``target[key] = value``: replayed on a tensor laid out like the
    target's base, the aten op torch picked and the view it wrote into."""
    if len(args) < 3 or not isinstance(args[0], torch.Tensor) or not torch.is_grad_enabled():
        return
    target, key, value = args[0], args[1], args[2]
    base = base_of(target)
    node = base.grad_fn
    if node is None or type(node).__name__ != "CopySlices" or VIEW_WRITE in node.metadata:
        return
    layout = torch.empty_strided(tuple(base.shape), base.stride(), dtype=torch.float64)
    stand_in = layout.as_strided(tuple(target.shape), target.stride(),
                                 target.storage_offset() - base.storage_offset())
    replayed_value = value.detach().to(torch.float64) if isinstance(value, torch.Tensor) and \
        not value.is_complex() else value
    writes = _Writes(keep_before=False)
    with torch.no_grad(), writes:
        stand_in[key] = replayed_value
    seen = [w for w in writes.seen if _same_storage(w[1], layout)]
    if len(seen) != 1:
        return
    func, view, others, kwargs, _ = seen[0]
    size, stride, offset, base_strides = _geometry(view, layout)
    others = tuple(value if isinstance(o, torch.Tensor) and o is replayed_value else o for o in others)
    twin = _twin(func, torch.zeros(size, dtype=base.dtype), others, kwargs)
    _annotate(node, ViewWrite(size, stride, offset, base_strides, twin, base_offset=int(base.storage_offset())))


def _unnoted_writes(tensor: torch.Tensor) -> List[Any]:
    """The CopySlices nodes behind a call's output that no write noted yet,
    in the order torch made them."""
    found, pending, seen = [], [tensor.grad_fn], set()
    while pending and len(seen) < _WALK_LIMIT:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ != "CopySlices" or VIEW_WRITE in node.metadata:
            continue
        found.append(node)
        pending.extend(n for n, _ in node.next_functions)
    return sorted(found, key=lambda n: n._sequence_nr())


def note_inner_writes(func, args, kwargs, result) -> None:
    """A call that wrote into views of its own output (F.pad, circular):
    replayed on copies of its operands, each write it made, matched in
    order with the CopySlices nodes torch made."""
    if not isinstance(result, torch.Tensor) or result.grad_fn is None or \
            type(result.grad_fn).__name__ != "CopySlices" or VIEW_WRITE in result.grad_fn.metadata:
        return
    nodes = _unnoted_writes(result)
    writes = _Writes(keep_before=True)
    devices = sorted({a.device.index or 0 for a in (*args, *kwargs.values())
                      if isinstance(a, torch.Tensor) and a.is_cuda})
    # the replay draws no random number the script would have drawn next
    with torch.random.fork_rng(devices=devices), torch.no_grad(), writes:
        replayed = func(*[_detached(a, keep_grad=False) for a in args],
                        **{k: _detached(v, keep_grad=False) for k, v in kwargs.items()})
    if not isinstance(replayed, torch.Tensor):
        return
    seen = [w for w in writes.seen if _same_storage(w[1], replayed)]
    if len(seen) != len(nodes):
        return  # not the writes torch recorded: leave them unnoted (the rule says so)
    for node, (write, view, others, kwargs_, before) in zip(nodes, seen):
        size, stride, offset, base_strides = _geometry(view, replayed)
        twin = _twin(write, before.to(result.dtype), others, kwargs_)
        _annotate(node, ViewWrite(size, stride, offset, base_strides, twin, before,
                                  base_offset=int(result.storage_offset())))


def note(func, args, kwargs, result, before: Optional[torch.Tensor]) -> None:
    """What the recorder calls after every op (Note [a write into a view])."""
    if before is not None:
        note_method_write(func, args, kwargs, before)
    elif is_setitem(func):
        note_setitem(args)
    elif isinstance(result, torch.Tensor) and result.grad_fn is not None and \
            type(result.grad_fn).__name__ == "CopySlices" and not writes_in_place(func):
        note_inner_writes(func, args, kwargs, result)


__all__ = ["VIEW_WRITE", "ViewWrite", "before_write", "note"]
