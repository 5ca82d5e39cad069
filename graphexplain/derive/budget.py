"""How far torch's floating-point numbers may honestly stray from the exact
ones: an error budget carried next to every derived number.

Note [error budget]
The derivation runs in float64 from the values torch computed with; torch
ran the same chain rule in the computing dtype (float32, say), rounding at
every operation. A first-order forward error analysis bounds the difference:
each operation's rounding error is at most eps times the magnitude of what
it combined, so a sum of n terms is off by at most about n·eps·Σ|terms|,
however small the sum itself (cancellation), and errors that arrive with
the upstream are carried on by the local gradient's magnitude:

    budget(downstream) = |J|ᵀ·budget(upstream) + (rounding steps)·|J̃|ᵀ·|upstream|

in units of eps(dtype). |J̃| is the *term magnitude* of the local gradient
(`terms`: every subtraction counted as an addition, every function's
sensitivity to its argument added), taken over both ways torch may write it
(in its input and in its result: sigmoid's y·(1 − y) cancels where the
input's form does not). The rounding steps are the operations of the local
formula, the accuracy of torch's implementation of its functions, and the
summations: torch sums a reduction with cascade summation (about
16·⌈log16 n⌉ steps deep, not n) and a matrix product with dot products
(k steps). verify.py allows SAFETY·eps·budget. docs/verification.md states
the rule with an example.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

# Ulps of error in torch's own implementation of a function beyond the basic
# operations (Sleef's and glibc's are within 1 to 4). Special functions, by
# series and recurrences, are far looser: torch's float64 trigamma is off by
# about 5e-10 relative, so they are allowed SPECIAL_RELATIVE, or SPECIAL_ULPS
# where the dtype is coarser than that.
FUNCTION_ULPS = 4
SPECIAL_ULPS = 1024
SPECIAL_RELATIVE = 1e-8
SPECIAL = ("loggamma", "digamma", "polygamma", "zeta", "erfinv", "besseli", "besselj", "bessely", "besselk",
           "gamma", "lowergamma", "uppergamma", "erfc", "erfcx", "Ei", "expint", "li", "hyper", "i0", "i1")


def summation(n: int) -> float:
    """Rounding steps on the longest path of torch's sum of n numbers
    (cascade summation in blocks of 16, then a few vector lanes).

    >>> summation(1), summation(16), summation(2000)
    (0.0, 15.0, 64.0)
    """
    if n <= 1:
        return 0.0
    if n <= 16:
        return float(n - 1)
    return float(min(n - 1, 16 * math.ceil(math.log(n, 16)) + 16))


def dot_product(k: int) -> float:
    """Rounding steps of one element of a matrix product with inner size k."""
    return float(max(k, 1))


def _function_ulps(expr: sp.Basic, eps: float) -> float:
    names = {type(f).__name__ for f in expr.atoms(sp.Function)}
    if any(name.lower() in SPECIAL or name in SPECIAL for name in names):
        return max(float(SPECIAL_ULPS), SPECIAL_RELATIVE / eps)
    return float(FUNCTION_ULPS) if names or expr.atoms(sp.Pow) else 0.0


@lru_cache(maxsize=None)
def steps(expr: sp.Basic, eps: float = 2.0 ** -23) -> float:
    """Rounding steps of evaluating `expr` the way torch may, in a dtype of
    machine epsilon `eps`: one per operation, and the accuracy of the
    functions it calls."""
    return float(sp.count_ops(expr)) + 1.0 + _function_ulps(expr, eps)


def _is_constant(expr) -> bool:
    return isinstance(expr, sp.Basic) and expr.is_number


@lru_cache(maxsize=None)
def terms(expr: sp.Basic) -> sp.Basic:
    """The term magnitude of a scalar formula: evaluated at the same values,
    it bounds Σ|terms| (and its inputs' rounding carried through functions).

    >>> x = sp.Symbol("x", real=True)
    >>> terms(1 - x**2)
    x**2 + 1
    >>> terms(sp.exp(-x))
    exp(-x)*Abs(x) + exp(-x)
    """
    if _is_constant(expr):
        return sp.Abs(expr)
    if isinstance(expr, (sp.Symbol, sp.Indexed)):
        return sp.Abs(expr)
    if isinstance(expr, sp.Add):
        return sp.Add(*(terms(arg) for arg in expr.args))
    if isinstance(expr, sp.Mul):
        return sp.Mul(*(terms(arg) for arg in expr.args))
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        if exponent.is_Integer and exponent > 0:
            return terms(base) ** exponent
        # b**e: relative error |e|·(relative error of b), plus its own rounding
        if _is_constant(exponent):
            return sp.Abs(expr) * (1 + sp.Abs(exponent) * terms(base) / sp.Abs(base))
        return sp.Abs(expr) * (1 + sp.Abs(exponent) * terms(base) / sp.Abs(base)
                               + sp.Abs(sp.log(sp.Abs(base))) * terms(exponent))
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*((terms(value), condition) for value, condition in expr.args))
    if isinstance(expr, sp.Sum):
        return sp.Sum(terms(expr.function), *expr.limits)
    if isinstance(expr, sp.KroneckerDelta) or isinstance(expr, (sp.Heaviside, sp.sign)):
        return sp.Abs(expr)
    if isinstance(expr, sp.Function) and len(expr.args) == 1:
        (argument,) = expr.args
        if _is_constant(argument):
            return sp.Abs(expr)
        derivative = _function_derivative(expr)
        if derivative is None:
            return sp.Abs(expr)
        return sp.Abs(expr) + sp.Abs(derivative) * terms(argument)
    return sp.Abs(expr)


def _function_derivative(expr: sp.Function):
    """f'(a) for f(a), or None where sympy has no closed form."""
    u = sp.Dummy("u", real=True)
    try:
        derivative = expr.func(u).diff(u)
    except Exception:
        return None
    if derivative.has(sp.Derivative, sp.Subs):
        return None
    return derivative.subs(u, expr.args[0])



class NotPolynomial(Exception):
    """A matrix formula whose term magnitude is no formula of the same shape
    (an inverse, a determinant): its budget comes from condition numbers."""


def matrix_terms(expr: sp.Basic) -> sp.Basic:
    """The term magnitude of a matrix formula built from products, sums,
    transposes and elementwise products, to be evaluated at |operands| and
    |G|; raises NotPolynomial for anything else.

    >>> A, G = sp.MatrixSymbol("A", 2, 2), sp.MatrixSymbol("G", 2, 2)
    >>> matrix_terms(G*A.T - 2*A)
    2*A + G*A.T
    """
    if isinstance(expr, (sp.MatrixSymbol, sp.Symbol)):
        return expr
    if _is_constant(expr):
        return sp.Abs(expr)
    if isinstance(expr, (sp.ZeroMatrix, sp.Identity, sp.OneMatrix)):
        return expr
    if isinstance(expr, sp.Transpose):
        return sp.Transpose(matrix_terms(expr.arg))
    if isinstance(expr, (sp.MatAdd, sp.Add)):
        return sp.Add(*(matrix_terms(arg) for arg in expr.args)) if isinstance(expr, sp.Add) \
            else sp.MatAdd(*(matrix_terms(arg) for arg in expr.args)).doit()
    if isinstance(expr, (sp.MatMul, sp.Mul)):
        factors = [matrix_terms(arg) for arg in expr.args]
        return sp.MatMul(*factors).doit() if isinstance(expr, sp.MatMul) else sp.Mul(*factors)
    if isinstance(expr, sp.HadamardProduct):
        return sp.HadamardProduct(*(matrix_terms(arg) for arg in expr.args))
    if isinstance(expr, sp.Trace):
        return sp.Trace(matrix_terms(expr.arg))
    if isinstance(expr, MatrixElement):
        return MatrixElement(matrix_terms(expr.parent), *expr.indices)
    if isinstance(expr, sp.ImmutableMatrix):
        return sp.ImmutableMatrix(expr.rows, expr.cols, [_entry_terms(e) for e in expr])
    raise NotPolynomial(type(expr).__name__)


def _entry_terms(expr: sp.Basic) -> sp.Basic:
    """An element of an elementwise-written matrix (the cross product): a
    polynomial in matrix elements, each fed as its absolute value."""
    if _is_constant(expr):
        return sp.Abs(expr)
    if isinstance(expr, MatrixElement):
        return expr
    if isinstance(expr, (sp.Add, sp.Mul)):
        return expr.func(*(_entry_terms(arg) for arg in expr.args))
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and expr.exp > 0:
        return _entry_terms(expr.base) ** expr.exp
    raise NotPolynomial(type(expr).__name__)


def condition(values) -> float:
    """The largest condition number (ratio of extreme singular values) among
    the matrices of `values`, 1 where there are none: how far an inverse or
    pseudo-inverse may amplify rounding."""
    worst = 1.0
    for value in values:
        value = np.asarray(value) if isinstance(value, np.ndarray) else None
        if value is None or value.ndim < 2 or value.size == 0 or value.dtype.kind != "f":
            continue
        with np.errstate(all="ignore"):
            try:
                worst = max(worst, float(np.max(np.linalg.cond(value))))
            except np.linalg.LinAlgError:
                return float("inf")
    return worst if np.isfinite(worst) else float("inf")


def transform(n: int) -> float:
    """Rounding steps of one element of a length-n DFT, taken as a dot product
    of n complex terms (a complex product is a few operations more) with
    twiddle factors exp(±2πi·k·n/N) good to FUNCTION_ULPS; torch's FFT rounds
    on a shorter path, about log2(n) steps deep, so this bounds it.

    >>> transform(8)
    14.0
    """
    return dot_product(n) + 2.0 + FUNCTION_ULPS


FFT_CONSTANT = 8  # rounding steps per level of a fast Fourier transform, twiddle factors included


def fft(n: int) -> float:
    """Rounding steps, in units of the 2-norm of the whole transformed row,
    of torch's fast Fourier transform of length n: its normwise error is
    about c·log2(n)·eps·‖result‖₂ (Higham, Accuracy and Stability of
    Numerical Algorithms, §24.1), and no element is off by more than the
    whole row. For long rows this is far tighter than `transform`'s dot
    product, which counts n steps against the sum of |terms|.

    >>> fft(8), fft(1000)
    (32.0, 88.0)
    """
    return float(FFT_CONSTANT * (math.ceil(math.log2(max(n, 1))) + 1))
