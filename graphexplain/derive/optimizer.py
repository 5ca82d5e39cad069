"""An optimizer's update, evaluated from its row's formulas.

Each assignment of the row (rules/optimizers.py) is parsed by sympy and
evaluated with numpy in float64 on the values the parameter had before the
step (`updates.ParamBefore`); torch's values after the step are never
read here (Note [the update's two sides] in updates.py).

Each value carries an error budget in units of eps, as gradients do (Note
[error budget] in derive/budget.py): the budgets of its inputs carried
through the formula's sensitivities (sympy's derivatives of the update
formula, |∂e/∂v|·budget(v)), plus the formula's own rounding steps times
its term magnitude. torch computes every assignment as a tensor of the
parameter's dtype, so each one rounds once more when stored.

    >>> from graphexplain.updates import ParamBefore
    >>> import numpy as np
    >>> before = ParamBefore("w", "float32", np.array(0.5), np.array(-2.0), {"lr": 0.01, "momentum": 0})
    >>> [(a.name, float(a.value)) for a in derive_update("SGD", before)[1]]
    [('p', 0.52)]
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Dict, Optional, Tuple

import numpy as np
import sympy as sp

from ..precision import epsilon
from ..rules.optimizers import INITIAL_STATE, UpdateRule, rule_for
from ..updates import Assignment, ParamBefore
from .budget import steps, terms
from .functions import lambdify

SYMBOL = re.compile(r"\b[A-Za-z_][A-Za-z_0-9]*\b")
FUNCTIONS = {"sqrt", "Max", "Abs"}
PARAMETER = "p"
# elementwise, as torch.maximum; numpy's namespace as the rows' lambdify gives it (derive/functions.py),
# not sympy's "numpy", whose `from numpy import *` was a tenth of a small script's traced run
ELEMENTWISE = ({"Max": np.maximum, "Heaviside": lambda x, h=0.5: np.heaviside(x, h)},)


def numbers_of(hyper: Dict[str, Any]) -> Dict[str, float]:
    """The group's hyperparameters as the formulas' numbers: betas split,
    flags 0 or 1, maximize as the gradient's sign."""
    values = {key: float(value) for key, value in hyper.items()
              if isinstance(value, (int, float, bool)) and key != "betas"}
    if isinstance(hyper.get("betas"), (tuple, list)):
        values["beta1"], values["beta2"] = (float(b) for b in hyper["betas"])
    values["sign"] = -1.0 if hyper.get("maximize") else 1.0
    values.setdefault("alpha", 1.0)  # a manual add_/sub_ without alpha=
    return values


@lru_cache(maxsize=None)
def _parsed(text: str) -> sp.Expr:
    names = {name: sp.Symbol(name, real=True) for name in SYMBOL.findall(text) if name not in FUNCTIONS}
    return sp.sympify(text, locals={**names, "Max": sp.Max, "sqrt": sp.sqrt})


@lru_cache(maxsize=None)
def _compiled(text: str, names: Tuple[str, ...]):
    """The formula, its term magnitude, and its sensitivity to each input, as numpy functions."""
    expr = _parsed(text)
    symbols = [sp.Symbol(name, real=True) for name in names]
    value = lambdify(symbols, expr, ELEMENTWISE)
    magnitude = lambdify(symbols, terms(expr), ELEMENTWISE)
    sensitivities = {name: lambdify(symbols, sp.Abs(sp.diff(expr, symbol)), ELEMENTWISE)
                     for name, symbol in zip(names, symbols)}
    return expr, value, magnitude, sensitivities


def _display(text: str, hyper: Dict[str, float]) -> str:
    """The formula as shown: where a hyperparameter makes a term vanish
    (weight_decay = 0; sign or a manual op's alpha = 1), sympy takes it out; otherwise the row's text."""
    vanishing = {sp.Symbol(k, real=True): sp.Integer(int(v)) for k, v in hyper.items()
                 if k in SYMBOL.findall(text) and (v == 0 or (k in ("sign", "alpha") and v == 1))}
    if not vanishing:
        return text
    return str(_parsed(text).subs(vanishing))


def derive_update(what: str, before: ParamBefore) -> Tuple[Optional[UpdateRule], Tuple[Assignment, ...]]:
    """The row that applies (None: no row) and its assignments evaluated, in order."""
    constants = numbers_of(before.hyper)
    row = rule_for(what, before.hyper, first=not before.state)
    if row is None or (before.grad is None and not what.startswith("manual:")):
        return row, ()
    eps = epsilon(before.dtype)
    values: Dict[str, np.ndarray] = {PARAMETER: before.value}
    if before.grad is not None:
        values["grad"] = before.grad
    if before.operand is not None:
        values["t"] = before.operand
    for name in row.state:
        values.setdefault(name, np.asarray(before.state.get(name, INITIAL_STATE[name]), dtype=np.float64))
    for name, value in before.state.items():
        values.setdefault(name, np.asarray(value, dtype=np.float64))
    budgets = {name: np.zeros(np.shape(value)) for name, value in values.items()}
    aliases: Dict[str, str] = {}  # an intermediate that is just another name (d = grad): shown as that name
    assignments = []
    last = {name: k for k, (name, _) in enumerate(row.assignments)}  # AdamW assigns p twice: the last is torch's
    for k, (name, text) in enumerate(row.assignments):
        used = tuple(sorted({s for s in SYMBOL.findall(text) if s not in FUNCTIONS}))
        inputs = [values[s] if s in values else np.float64(constants.get(s, 0.0)) for s in used]
        shown = _display(text, {s: constants.get(s, 0.0) for s in used if s not in values})
        for alias, target in aliases.items():
            shown = re.sub(rf"\b{alias}\b", target, shown)
        shown_names = [s for s in dict.fromkeys(SYMBOL.findall(shown)) if s not in FUNCTIONS]
        first = tuple((s, _first(values[s]) if s in values else constants.get(s, 0.0)) for s in shown_names)
        _, value_of, magnitude_of, sensitivities = _compiled(text, used)
        with np.errstate(all="ignore"):
            value = np.asarray(value_of(*inputs), dtype=np.float64)
            if name == PARAMETER:
                value = np.broadcast_to(value, np.shape(before.value)).copy()
            carried = sum((np.abs(sensitivities[s](*inputs)) * budgets[s] for s in used if s in budgets),
                          np.zeros_like(value))
            rounding = steps(_parsed(text), eps) * np.abs(magnitude_of(*inputs))
            in_python = name not in row.state and all(s not in values or s == "step" for s in used)
            if in_python:  # torch works these out in python floats (1 - beta2**step), not in the dtype
                rounding = rounding * epsilon("float64") / eps
        stored = 0.0 if in_python else np.abs(value)  # + the store in the dtype
        values[name], budgets[name] = value, carried + rounding + stored
        checked = (name == PARAMETER or name in row.state) and last[name] == k
        if SYMBOL.fullmatch(shown) and not checked:
            aliases[name] = shown
            continue
        aliases.pop(name, None)
        assignments.append(Assignment(name, shown, first, values[name], budgets[name], checked))
    return row, tuple(assignments)


def _first(value) -> float:
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    return float(flat[0]) if flat.size else 0.0
