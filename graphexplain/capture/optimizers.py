"""What the script does to its parameters after an explained backward call.

An `UpdateWatch` is armed when an explained call finishes and disarmed when
the next backward call starts (or the script ends). While armed it records,
as float64 numpy copies (`graphexplain.updates`):

* each ``optimizer.step()``, through torch's global step hooks
  (``register_optimizer_step_pre_hook`` / ``_post_hook``): the optimizer's
  class, each parameter's value, grad, state and group hyperparameters
  before, and its value and state after;
* an in-place op on a parameter under ``torch.no_grad()`` (``w -= lr *
  w.grad``), seen by the recorder (`Recorder.watch`), with the tensor it
  applies;
* gradients cleared: ``optimizer.zero_grad()``, ``model.zero_grad()``,
  ``w.grad.zero_()``, and ``w.grad = None`` (found when disarming).

Tracing changes nothing the script computes: only copies are taken, no
state is created (``p in optimizer.state``, never ``optimizer.state[p]``)
and the wrapped zero_grad calls the original with the same arguments.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..rules.optimizers import HYPERPARAMETERS, MANUAL_OPS
from ..updates import CLEARED, MANUAL, STEP, ParamAfter, ParamBefore, Update
from .provenance import stepping_aside


def _copy(value) -> Optional[np.ndarray]:
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.device.type == "meta" or value.is_complex():
            return None
        return value.detach().to("cpu", torch.float64).numpy().copy()
    if isinstance(value, (int, float, bool)):
        return np.asarray(float(value))
    return None


def _hyper(group: Dict[str, Any]) -> Dict[str, Any]:
    hyper = {}
    for key in HYPERPARAMETERS:
        value = group.get(key)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value.item())
        if key == "betas" and isinstance(value, (tuple, list)):
            value = tuple(float(b.item()) if isinstance(b, torch.Tensor) else float(b) for b in value)
        if isinstance(value, (int, float, bool, tuple)):
            hyper[key] = value
    return hyper


def _state(optimizer, param) -> Dict[str, np.ndarray]:
    if param not in optimizer.state:  # never optimizer.state[p]: a defaultdict would make an entry
        return {}
    copies = {}
    for key, value in optimizer.state[param].items():
        copied = _copy(value)
        if copied is not None:
            copies[key] = copied
    return copies


def known(optimizer) -> bool:
    """Only torch's own classes, exactly: a subclass may change what step does
    (whether the class has a row is the rule table's to say).

        >>> known(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
        True
    """
    return type(optimizer) is getattr(torch.optim, type(optimizer).__name__, None)


class UpdateWatch:
    """Records updates between an explained call and the next backward call."""

    def __init__(self, finder, recorder=None):
        self.finder = finder
        self.recorder = recorder
        self.armed: Optional[List[Update]] = None  # the explained call's list, while armed
        self._params: List[Tuple[torch.Tensor, str]] = []  # (leaf, name), the explained call's leaves
        self._by_id: Dict[int, Tuple[torch.Tensor, str]] = {}
        self._had_grad: Dict[int, bool] = {}
        self._handles = []
        self._pending: Dict[int, Tuple[Update, list]] = {}  # id(optimizer) → the step under way
        self._inside = 0  # inside step() or zero_grad(): their own in-place ops are not the script's
        self._originals = {}

    # --- entering and leaving -------------------------------------------------
    def __enter__(self) -> "UpdateWatch":
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        self._handles = [register_optimizer_step_pre_hook(self._before_step),
                         register_optimizer_step_post_hook(self._after_step)]
        for owner, what in ((torch.optim.Optimizer, "optimizer"), (torch.nn.Module, "module")):
            original = owner.zero_grad
            self._originals[owner] = original
            owner.zero_grad = self._wrap_zero_grad(original)
        return self

    def __exit__(self, *exc) -> None:
        self.disarm()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for owner, original in self._originals.items():
            owner.zero_grad = original
        self._originals = {}

    # --- arming ----------------------------------------------------------------
    def arm(self, updates: List[Update], leaves, names) -> None:
        """Watch what happens to `leaves` (the explained call's) until the next backward call."""
        self.disarm()
        self.armed = updates
        self._params = [(leaf, names.tensor(leaf) or f"leaf {k + 1}") for k, leaf in enumerate(leaves or ())
                        if isinstance(leaf, torch.Tensor) and leaf.is_leaf]  # a non-leaf input is no parameter
        self._by_id = {id(leaf): (leaf, name) for leaf, name in self._params}
        self._inside = 0  # a step that raised never ran its post hook
        self._had_grad = {id(leaf): leaf.grad is not None for leaf, _ in self._params}

    def disarm(self) -> None:
        if self.armed is None:
            return
        dropped = tuple(name for leaf, name in self._params
                        if self._had_grad.get(id(leaf)) and leaf.grad is None and not self._cleared(name))
        if dropped:  # `w.grad = None`: no op to see, only its effect
            self.armed.append(Update(CLEARED, "grad = None", "", cleared=dropped, how="set to None"))
        self.armed, self._params, self._by_id, self._pending = None, [], {}, {}

    def _cleared(self, name: str) -> bool:
        return any(u.kind == CLEARED and name in u.cleared for u in self.armed or ())

    def _name(self, tensor) -> str:
        leaf, name = self._by_id.get(id(tensor), (None, ""))
        return name if leaf is tensor else ""

    def _where(self):
        frame = self.finder.user_frame(sys._getframe(1))
        source = self.finder.source(frame)
        return source, ((source.expr or source.code) if source is not None else "")

    # --- optimizer.step() ------------------------------------------------------
    def _before_step(self, optimizer, args, kwargs):
        self._inside += 1
        if self.armed is None or stepping_aside():
            return None
        paused = self._quiet()
        try:
            source, call = self._where()
            params, before = [], []
            for g, group in enumerate(optimizer.param_groups):
                hyper = _hyper(group)
                for k, param in enumerate(group["params"]):
                    if param.grad is None:
                        continue  # torch skips it
                    name = self._name(param) or f"param {k + 1} of group {g + 1}"
                    params.append(param)
                    before.append(ParamBefore(name, str(param.dtype).replace("torch.", ""), _copy(param),
                                              _copy(param.grad), hyper, _state(optimizer, param)))
            update = Update(STEP, type(optimizer).__name__, call or "optimizer.step()", source, known(optimizer),
                            tuple(before))
            self._pending[id(optimizer)] = (update, params)
        except Exception:  # a nicety; never the script's problem
            pass
        finally:
            self._loud(paused)
        return None

    def _quiet(self):
        """No provenance recorded for our own copies."""
        paused = self.recorder.paused if self.recorder is not None else None
        if self.recorder is not None:
            self.recorder.paused = True
        return paused

    def _loud(self, paused) -> None:
        if self.recorder is not None:
            self.recorder.paused = paused

    def _after_step(self, optimizer, args, kwargs):
        self._inside = max(0, self._inside - 1)
        pending = self._pending.pop(id(optimizer), None)
        if pending is None or self.armed is None:
            return
        update, params = pending
        paused = self._quiet()
        try:
            after = tuple(ParamAfter(_copy(p), _state(optimizer, p)) for p in params)
            self.armed.append(Update(update.kind, update.what, update.call, update.source, update.known,
                                     update.before, after))
        except Exception:
            pass
        finally:
            self._loud(paused)

    # --- zero_grad() -----------------------------------------------------------
    def _wrap_zero_grad(self, original):
        watch = self

        def zero_grad(this, *args, **kwargs):
            names = ()
            if not stepping_aside() and watch.armed is not None:
                mine = [p for p in (this.parameters() if isinstance(this, torch.nn.Module) else
                                    (p for g in this.param_groups for p in g["params"]))]
                mine = {id(p) for p in mine}
                names = tuple(name for leaf, name in watch._params if id(leaf) in mine)
            watch._inside += 1
            try:
                result = original(this, *args, **kwargs)
            finally:
                watch._inside -= 1
            if watch.armed is not None and names:
                try:
                    source, call = watch._where()
                    none = kwargs.get("set_to_none", args[0] if args else True)
                    watch.armed.append(Update(CLEARED, f"{type(this).__name__}.zero_grad()", call, source,
                                              cleared=names, how="set to None" if none else "zeroed"))
                except Exception:
                    pass
            return result

        zero_grad.__wrapped__ = original
        zero_grad.__doc__ = original.__doc__
        return zero_grad

    # --- in-place ops, as the recorder sees them -------------------------------
    def before_op(self, func, args, kwargs):
        """Called by the recorder before each op; what `after_op` needs, or None."""
        if self.armed is None or self._inside or not args or stepping_aside():
            return None
        name = getattr(func, "__name__", "")
        target = args[0]
        if name == "zero_":
            owner = next((leaf_name for leaf, leaf_name in self._params if leaf.grad is target), None)
            return ("zero_", owner) if owner is not None else None
        if name not in MANUAL_OPS or torch.is_grad_enabled():
            return None
        leaf_name = self._name(target)
        if not leaf_name:
            return None
        try:
            operand = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("src"))
            alpha = kwargs.get("alpha", args[2] if len(args) > 2 and MANUAL_OPS[name] in ("add_", "sub_") else 1)
            return (MANUAL_OPS[name], leaf_name, target, _copy(target), _copy(target.grad), _copy(operand),
                    float(alpha))
        except Exception:
            return None

    def after_op(self, token, result) -> None:
        try:
            source, call = self._where()
            if token[0] == "zero_":
                self.armed.append(Update(CLEARED, "grad.zero_()", call, source, cleared=(token[1],), how="zeroed"))
                return
            op, name, target, value, grad, operand, alpha = token
            if operand is None or value is None:
                return
            before = ParamBefore(name, str(target.dtype).replace("torch.", ""), value, grad, {"alpha": alpha},
                                 operand=operand)
            self.armed.append(Update(MANUAL, f"manual:{op}", call, source, True, (before,),
                                     (ParamAfter(_copy(target)),)))
        except Exception:
            pass
