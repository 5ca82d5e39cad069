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

from sympy.parsing.sympy_parser import parse_expr

from ..rules.kinds import Rule
from . import formula, functions

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
    stated = _stated_complex(rule, operands)
    if stated is not None:
        expr = stated

    def conjugate(argument):
        return _conjugate_of(argument, operands, conjugates)

    expr = expr.replace(sp.Abs, lambda a: sp.sqrt(a * conjugate(a)))
    expr = expr.replace(sp.conjugate, conjugate)
    expr = expr.replace(sp.re, lambda a: (a + conjugate(a)) / 2)
    expr = expr.replace(sp.im, lambda a: (a - conjugate(a)) / (2 * sp.I))
    if expr.has(*COMPARING) or input_name not in operands:
        return None
    return sp.diff(expr, operands[input_name]), sp.diff(expr, conjugates[input_name])


def _stated_complex(rule: Rule, operands: Dict[str, sp.Symbol]) -> Optional[sp.Expr]:
    """The forward parsed with complex operands, where it names a conjugate
    or a real or imaginary part: parsed with real operands, conjugate(self)
    would already be self. None for every other row, whose real parse stands."""
    local = dict(functions.NAMES)
    local.update(formula.symbols(rule))
    local.update(operands)
    parsed = parse_expr(rule.forward, local_dict=local)
    return parsed if parsed.has(sp.conjugate, sp.re, sp.im) else None


@lru_cache(maxsize=None)
def stated_forward(rule: Rule) -> Optional[sp.Expr]:
    """The forward as the walkthrough shows it for a row that names a
    conjugate or a part (conjugate(self), not the real parse's self).

    >>> from graphexplain.rules import TABLE
    >>> stated_forward(TABLE["ConjBackward0"])
    conjugate(self)
    """
    stated = _stated_complex(rule, {n: sp.Symbol(n) for n in rule.inputs if n in formula.symbols(rule)})
    return None if stated is None else held(stated)


def held(expr: sp.Expr) -> sp.Expr:
    """`expr` with conjugate, re and im as plain names, so that the user's
    names (real symbols) put in for the walkthrough leave them standing."""
    for function, name in ((sp.conjugate, "conjugate"), (sp.re, "re"), (sp.im, "im")):
        expr = expr.replace(function, sp.Function(name))
    return expr


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


# Note [the DFT as index notation]
# A Transform row (rules/fft.py) states one output element of a 1-d DFT,
# result[k] = scale·Σ_n self[n]·exp(sign·2πi·k·n/N), with self[n] an element
# of an IndexedBase and conj(self[n]) one of its twin self__conj (re, im and
# conjugate written through them, as for pointwise rows). sympy
# differentiates the Sum by self[j] and by self__conj[j]; the Kronecker delta
# sums away (Note [a Kronecker delta inside a Piecewise] in derive/formula.py)
# and leaves the two Wirtinger derivatives as formulas in k and j. numpy
# evaluates them over the grid of every (k, j) along the dim: two K×L
# matrices A and B, and the gradient along that dim is
# conj(u)·B + u·conj(A) (Note [complex gradients]), dim by dim in the
# reverse of the order the forward applied them.
INDEX_ASSUMPTIONS = {"integer": True, "nonnegative": True}


def _transform_vocabulary(rule) -> Dict[str, sp.Basic]:
    words = {"self": sp.IndexedBase("self")}
    words.update({name: sp.Symbol(name, **INDEX_ASSUMPTIONS) for name in ("k", "n", "j")})
    words.update({name: sp.Symbol(name, integer=True, positive=True) for name in ("N", "L")})
    words.update({name: sp.Symbol(name, real=True) for name in rule.params + tuple(n for n, _ in rule.where)})
    return words


@lru_cache(maxsize=None)
def transform_forward(rule, last: bool = False) -> sp.Expr:
    """The row's 1-d formula (its `last` one where asked), its named pieces put in.

    >>> from graphexplain.rules import TABLE
    >>> transform_forward(TABLE["FftR2CBackward0"])
    scale*Sum(exp(-2*I*pi*k*n/N)*self[n], (n, 0, L - 1))
    """
    local = dict(functions.NAMES)
    local.update(_transform_vocabulary(rule))
    expr = parse_expr(rule.last if last and rule.last else rule.forward, local_dict=local)
    pieces = {local[name]: parse_expr(text, local_dict=local) for name, text in rule.where}
    return expr.xreplace({s: v for s, v in pieces.items() if s.name != "scale"})


def vocabulary(rule) -> set:
    """The words a Transform row's formulas use: operands and saved
    arguments, without the indices k, n, the lengths N, L or `where` names.

    >>> from graphexplain.rules import TABLE
    >>> sorted(vocabulary(TABLE["FftC2CBackward0"]))
    ['forward', 'normalization', 'self']
    """
    local = dict(functions.NAMES)
    local.update(_transform_vocabulary(rule))
    words = set()
    for text in (rule.forward, rule.last or rule.forward) + tuple(definition for _, definition in rule.where):
        expr = parse_expr(text, local_dict=local)
        words |= {symbol.name for symbol in expr.free_symbols if isinstance(symbol, sp.Symbol)}
        words |= {str(element.base.label) for element in expr.atoms(sp.Indexed)}
    return words - {"k", "n", "j", "N", "L"} - {name for name, _ in rule.where}


@lru_cache(maxsize=None)
def transform_derivatives(rule, last: bool = False) -> Tuple[sp.Expr, sp.Expr]:
    """(∂result[k]/∂self[j], ∂result[k]/∂conj(self[j])) along one dim, by
    sympy (Note [the DFT as index notation]).

    >>> from graphexplain.rules import TABLE
    >>> transform_derivatives(TABLE["FftC2CBackward0"])
    (scale*exp(-2*I*pi*j*k*(2*forward - 1)/N), 0)
    """
    words = _transform_vocabulary(rule)
    x, x_conjugate = words["self"], sp.IndexedBase("self" + CONJUGATE)

    def conjugate(argument):
        return argument.xreplace({x: x_conjugate, x_conjugate: x}).subs(sp.I, -sp.I)

    expr = transform_forward(rule, last)
    expr = expr.replace(sp.conjugate, conjugate)
    expr = expr.replace(sp.re, lambda a: (a + conjugate(a)) / 2)
    expr = expr.replace(sp.im, lambda a: (a - conjugate(a)) / (2 * sp.I))
    j, L = words["j"], words["L"]

    def derivative(base):
        found = formula._delta_outside_branches(sp.diff(expr, base[j])).doit()
        # j runs over the operand's L elements only: the branch j ≤ L - 1 is the one
        found = found.replace(lambda e: isinstance(e, sp.Piecewise) and len(e.args) == 2
                              and e.args[0].cond == (j <= L - 1), lambda e: e.args[0].expr)
        return sp.simplify(found) if not found.has(sp.Piecewise) else found

    return derivative(x), derivative(x_conjugate)


def _scale(rule, normalization, N) -> float:
    local = dict(functions.NAMES)
    local.update(_transform_vocabulary(rule))
    text = dict(rule.where)["scale"]
    return complex(parse_expr(text, local_dict=local).subs({local["normalization"]: normalization, local["N"]: N}))


# Note [phases reduced mod N]
# exp(±2πi·j·k/N) at j·k up to N² is exp of an argument that float64 holds
# only to |2π·j·k/N|·eps: at N = 4096 a phase off by 3e-12, more than the
# error budget of a float64 transform. j and k are integers, so the phase
# is the same at (j·k mod N): the derivative, with its saved arguments put
# in, is evaluated that way (the same number, exactly).
def _reduced_phases(expr: sp.Expr) -> sp.Expr:
    j, k = (sp.Symbol(name, **INDEX_ASSUMPTIONS) for name in ("j", "k"))
    N = sp.Symbol("N", integer=True, positive=True)

    def reduced(power):
        turns = sp.simplify(power.args[0] * N / (sp.I * sp.pi * j * k))
        if turns.is_integer and turns.is_even:
            return sp.exp(sp.I * sp.pi * turns * sp.Mod(j * k, N) / N)
        return power

    return expr.replace(lambda e: isinstance(e, sp.exp), reduced)


@lru_cache(maxsize=None)
def _at_arguments(expr: sp.Expr, arguments: Tuple[Tuple[str, float], ...]) -> sp.Expr:
    words = {s.name: s for s in expr.free_symbols}
    return _reduced_phases(expr.xreplace({words[n]: sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v)
                                          for n, v in arguments if n in words}))


def transform_matrices(rule, last: bool, values: Dict[str, object], K: int, L: int, N: int):
    """A[k, j] and B[k, j], the two derivatives at every k < K, j < L; None
    for one that is 0 (B of a holomorphic transform)."""
    d, d_conjugate = transform_derivatives(rule, last)
    grid = {"k": np.arange(K).reshape(-1, 1), "j": np.arange(L).reshape(1, -1), "N": N, "L": L,
            "scale": _scale(rule, values.get("normalization", 0), N)}
    saved = tuple(sorted((name, float(value)) for name, value in values.items()
                         if name in rule.params and name != "dim"))
    grid.update(saved)
    matrices = []
    for expr in (d, d_conjugate):
        if expr == 0:
            matrices.append(None)
            continue
        separated = _separated(_at_arguments(expr, saved))
        if separated is not None:
            matrices.append(_from_phases(separated, grid, K, L, N))
            continue
        function, names = formula.numeric(_at_arguments(expr, saved))
        with np.errstate(all="ignore"):
            value = function(*[grid[name] for name in names])
        matrices.append(np.broadcast_to(np.asarray(value, dtype=np.complex128), (K, L)))
    return tuple(matrices)


# Note [a DFT matrix from its N phases]
# Evaluated on the K×L grid, exp(±2πi·(j·k mod N)/N) costs K·L complex
# exponentials, though it takes only N values. Where the derivative is
# c·f(m)·g(j) with m = j·k mod N (sympy's separatevars, once a phase common
# to every branch of a Piecewise is taken out of it), f is evaluated at the N
# phases and g at the L places, and the matrix is gathered from them: the
# same numbers, in K·L lookups rather than K·L exponentials.
PHASE = sp.Symbol("m", **INDEX_ASSUMPTIONS)


def _phase_out_of_branches(piecewise: sp.Piecewise) -> sp.Expr:
    values = [value for value, _ in piecewise.args]
    common = [f for f in sp.Mul.make_args(values[0]) if f.has(PHASE)
              and all(f in sp.Mul.make_args(value) for value in values[1:])]
    if not common:
        return piecewise
    factor = sp.Mul(*common)
    return factor * piecewise.func(*((value / factor, condition) for value, condition in piecewise.args))


@lru_cache(maxsize=None)
def _separated(expr: sp.Expr):
    """(c, f(m), g(j)) with expr = c·f(m)·g(j), m = j·k mod N, or None."""
    j = sp.Symbol("j", **INDEX_ASSUMPTIONS)
    phased = expr.replace(lambda e: isinstance(e, sp.Mod), lambda e: PHASE)
    if phased.has(sp.Symbol("k", **INDEX_ASSUMPTIONS)) or not phased.has(PHASE):
        return None
    phased = phased.replace(lambda e: isinstance(e, sp.Piecewise), _phase_out_of_branches)
    parts = sp.separatevars(phased, symbols=[PHASE, j], dict=True)
    if parts is None:
        return None
    return parts["coeff"], parts[PHASE], parts[j]


def _from_phases(separated, grid: Dict[str, object], K: int, L: int, N: int) -> np.ndarray:
    """The K×L matrix c·f(j·k mod N)·g(j) (Note [a DFT matrix from its N phases])."""
    values = dict(grid, m=np.arange(N), j=np.arange(L))
    evaluated = []
    for part in separated:
        function, names = formula.numeric(part)
        with np.errstate(all="ignore"):
            evaluated.append(np.asarray(function(*[values[name] for name in names]), dtype=np.complex128))
    coefficient, phases, places = evaluated
    m = (np.arange(K, dtype=np.int64).reshape(-1, 1) * np.arange(L, dtype=np.int64).reshape(1, -1)) % N
    return coefficient * np.broadcast_to(phases, (N,))[m] * np.broadcast_to(places, (L,))
