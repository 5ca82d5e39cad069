"""The updates after an explained call, derived and checked against torch.

For each parameter an optimizer step (or the script's own in-place op)
touched: the row's assignments are evaluated from the values before
(derive/optimizer.py), and every one that torch also wrote (the parameter,
the state buffers) is compared with torch's value after the step, within
the error budget (verify.compare). An optimizer without a row, or a
subclass of torch's (its step may differ), is NO_RULE: its before and after
values are shown, nothing is checked.

    >>> from graphexplain.updates import Update, ParamBefore, ParamAfter, STEP
    >>> import numpy as np
    >>> before = ParamBefore("w", "float32", np.array(0.5), np.array(-2.0), {"lr": 0.01, "momentum": 0})
    >>> step = Update(STEP, "SGD", "optimizer.step()", None, True, (before,), (ParamAfter(np.array(0.52)),))
    >>> explain_updates([step])[0].status
    'verified'
"""

from __future__ import annotations

from typing import Sequence, Tuple

from .results import MISMATCH, NO_RULE, VERIFIED, worst
from .updates import CLEARED, ParamResult, Update, UpdateResult
from .precision import epsilon
from .verify import compare


def explain_updates(updates: Sequence[Update]) -> Tuple[UpdateResult, ...]:
    return tuple(_explain(update) for update in updates)


def _explain(update: Update) -> UpdateResult:
    if update.kind == CLEARED:
        return UpdateResult(update, VERIFIED)
    params = tuple(_param(update, before, after) for before, after in zip(update.before, update.after))
    return UpdateResult(update, worst(p.status for p in params) if params else VERIFIED, params)


def _param(update: Update, before, after) -> ParamResult:
    if not update.known:
        return ParamResult(before.name, NO_RULE, "", before=before.value, after=after.value,
                           note=f"{update.what} is not one of torch's own optimizers (a subclass may change "
                                "what step does), so its update has no rule: before and after as torch wrote them")
    from .derive.optimizer import derive_update  # sympy, only where an update is explained

    try:
        row, assignments = derive_update(update.what, before)
    except Exception as error:  # a row that fails is reported, never a crash
        return ParamResult(before.name, NO_RULE, "", before=before.value, after=after.value,
                           note=f"the rule failed: {type(error).__name__}: {error}")
    if row is None or not assignments:
        return ParamResult(before.name, NO_RULE, "", before=before.value, after=after.value,
                           note=f"torch.optim.{update.what} has no rule (rules/optimizers.py) with these "
                                "settings: before and after as torch wrote them")
    checks = []
    for assignment in assignments:
        if not assignment.checked:
            continue
        torch_value = after.value if assignment.name == "p" else after.state.get(assignment.name)
        what = before.name if assignment.name == "p" else f"{before.name} {assignment.name}"
        check = compare(what, assignment.value, torch_value, before.dtype,
                        assignment.budget * epsilon(before.dtype))
        if check is not None:
            checks.append(check)
    status = MISMATCH if any(c.status == MISMATCH for c in checks) else VERIFIED
    return ParamResult(before.name, status, row.name, assignments, tuple(checks), before.value, after.value)
