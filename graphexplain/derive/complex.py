"""Complex numbers, as torch differentiates them.

Note [complex gradients]
For an op s = f(z) inside a real loss L, torch's backward receives
u = ∂L/∂s̄ (its grad_output) and returns the conjugate Wirtinger derivative

    ∂L/∂z̄ = conj(u)·∂s/∂z̄ + u·conj(∂s/∂z)

(torch's autograd notes on complex numbers; gradcheck checks exactly this),
and for a real input z the real part of it. sympy derives both Wirtinger
derivatives from the row's own forward formula, with z and z̄ taken as
independent symbols: |z| is sqrt(z·z̄), conj(z) is z̄, re(z) = (z + z̄)/2,
im(z) = (z − z̄)/2i. A holomorphic op (mul, exp, log) has ∂s/∂z̄ = 0 and
gives u·conj(f'(z)); |z| gives u·z/|z|. A row whose formula compares its
inputs (Piecewise, sign, floor, max) has no such form: it is not derived.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Optional, Tuple

import numpy as np
import sympy as sp

from ..rules.kinds import Rule
from . import formula

CONJUGATE = "__conj"  # the suffix of z̄'s symbol: self → self__conj
COMPARING = (sp.Piecewise, sp.sign, sp.Heaviside, sp.floor, sp.ceiling, sp.Max, sp.Min, sp.atan2, sp.Mod)


def _conjugate_of(expr: sp.Expr, operands: Dict[str, sp.Symbol], conjugates: Dict[str, sp.Symbol]) -> sp.Expr:
    swapped = {**{operands[n]: conjugates[n] for n in operands}, **{conjugates[n]: operands[n] for n in operands}}
    return expr.xreplace(swapped).subs(sp.I, -sp.I)


@lru_cache(maxsize=None)
def wirtinger(rule: Rule, input_name: str) -> Optional[Tuple[sp.Expr, sp.Expr]]:
    """(∂s/∂z, ∂s/∂z̄) for the operand `input_name`, or None where the
    formula has no complex form (Note [complex gradients]).

    >>> from graphexplain.rules import TABLE
    >>> wirtinger(TABLE["MulBackward0"], "self")
    (other, 0)
    >>> d, d_conjugate = wirtinger(TABLE["AbsBackward0"], "self")
    >>> d_conjugate
    sqrt(self*self__conj)/(2*self__conj)
    """
    real = formula.forward(rule)
    names = formula.symbols(rule)
    operands = {n: sp.Symbol(n) for n in rule.inputs if n in names}
    conjugates = {n: sp.Symbol(n + CONJUGATE) for n in operands}
    expr = real.xreplace({names[n]: operands[n] for n in operands})

    def conjugate(argument):
        return _conjugate_of(argument, operands, conjugates)

    expr = expr.replace(sp.Abs, lambda a: sp.sqrt(a * conjugate(a)))
    expr = expr.replace(sp.conjugate, conjugate)
    expr = expr.replace(sp.re, lambda a: (a + conjugate(a)) / 2)
    expr = expr.replace(sp.im, lambda a: (a - conjugate(a)) / (2 * sp.I))
    if expr.has(*COMPARING) or input_name not in operands:
        return None
    return sp.diff(expr, operands[input_name]), sp.diff(expr, conjugates[input_name])


def evaluate(expr: sp.Expr, values: Dict[str, object]) -> np.ndarray:
    """`expr` at complex values; z̄'s symbols take the conjugates."""
    function, names = formula.numeric(expr)
    arguments = []
    for name in names:
        source = name[:-len(CONJUGATE)] if name.endswith(CONJUGATE) else name
        value = values.get(source)
        if value is None:
            raise KeyError(source)
        arguments.append(np.conj(value) if name.endswith(CONJUGATE) else value)
    with np.errstate(all="ignore"):
        return np.asarray(function(*arguments), dtype=np.complex128)


@lru_cache(maxsize=None)
def in_result(rule: Rule, expr: sp.Expr, unknown: str) -> Optional[sp.Expr]:
    """`expr` with the operand `unknown` written in the result, where torch
    kept only the result (exp saves its result): z = log(result) makes
    exp's ∂s/∂z = result. None where the forward gives z back not uniquely."""
    names = formula.symbols(rule)
    try:
        solutions = sp.solve(sp.Eq(names[formula.RESULT], formula.forward(rule)), names[unknown])
    except (NotImplementedError, TypeError, ValueError, KeyError):
        return None
    if len(solutions) != 1:
        return None
    plain = {symbol: sp.Symbol(symbol.name) for symbol in solutions[0].free_symbols}
    solution = solutions[0].xreplace(plain)
    conjugate = solution.xreplace({sp.Symbol(s.name): sp.Symbol(s.name + CONJUGATE) for s in plain}).subs(sp.I, -sp.I)
    return expr.xreplace({sp.Symbol(unknown): solution, sp.Symbol(unknown + CONJUGATE): conjugate})
