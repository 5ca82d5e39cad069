"""What happened to the parameters after an explained backward call: the
optimizer's step, the script's own in-place update under no_grad, the
gradients cleared. Plain data, like `graphexplain.model`: no torch, sympy,
graphviz or rich.

Note [the update's two sides]
As with gradients (Note [independence of the derived side] in
observed.py), what the derivation may read (`ParamBefore`: the value, the
grad, the state and the hyperparameters before the step) and what torch
wrote (`ParamAfter`) are kept apart: derive/optimizer.py is handed the
former alone, verify_updates.py compares its result with the latter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .model import Source

STEP = "step"  # optimizer.step()
MANUAL = "manual"  # an in-place op on a parameter under torch.no_grad()
CLEARED = "cleared"  # zero_grad(), grad.zero_(), grad = None


@dataclass(frozen=True)
class ParamBefore:
    """One parameter as the update found it, in float64."""

    name: str
    dtype: str
    value: np.ndarray
    grad: Optional[np.ndarray]
    hyper: Dict[str, Any] = field(default_factory=dict)  # its group's hyperparameters (numbers and flags)
    state: Dict[str, np.ndarray] = field(default_factory=dict)  # the optimizer's state; empty before the first step
    operand: Optional[np.ndarray] = None  # a manual update's t


@dataclass(frozen=True)
class ParamAfter:
    """What torch wrote: the parameter's value and its state after the update."""

    value: np.ndarray
    state: Dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Update:
    """One event after an explained call, in the order the script made them."""

    kind: str  # STEP, MANUAL or CLEARED
    what: str  # "SGD", "manual:sub_", "optimizer.zero_grad()"
    call: str  # the script's code: "optimizer.step()"
    source: Optional[Source] = None
    known: bool = True  # STEP: an exact torch class (a subclass's own step is unknown)
    before: Tuple[ParamBefore, ...] = ()
    after: Tuple[ParamAfter, ...] = ()  # torch's side (Note [the update's two sides])
    cleared: Tuple[str, ...] = ()  # CLEARED: the parameters whose .grad was cleared
    how: str = ""  # CLEARED: "set to None" or "zeroed"; MANUAL: the operand's code


@dataclass(frozen=True)
class Assignment:
    """One line of a derived update: name = formula = numbers = value."""

    name: str
    formula: str  # the row's formula in its vocabulary, terms whose hyperparameter is 0 taken out
    inputs: Tuple[Tuple[str, float], ...]  # each name in the formula → its first element's number
    value: np.ndarray
    budget: np.ndarray  # in units of eps (Note [error budget] in derive/budget.py)
    checked: bool = False  # a state buffer or the parameter: torch wrote it


@dataclass(frozen=True)
class ParamResult:
    name: str
    status: str  # results.VERIFIED, MISMATCH or NO_RULE
    rule: str  # the row's name; "" for an unknown optimizer
    assignments: Tuple[Assignment, ...] = ()
    checks: Tuple[Any, ...] = ()  # results.Check, one per checked assignment
    before: Optional[np.ndarray] = None
    after: Optional[np.ndarray] = None  # torch's
    note: str = ""


@dataclass(frozen=True)
class UpdateResult:
    update: Update
    status: str
    params: Tuple[ParamResult, ...] = ()
