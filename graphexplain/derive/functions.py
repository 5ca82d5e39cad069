"""The functions a forward formula may call beyond sympy's own, and how
each is computed in numbers.

Rows are sympy strings, so ``exp``, ``erf``, ``loggamma``, ``besseli``,
``Max`` or ``Piecewise`` need nothing here. What this module adds:

- C's ``log1p``, ``expm1``, ``exp2``, ``log2``, ``log10`` and ``hypot``
  (sympy.codegen's, which know their derivatives and keep torch's precision
  near 0);
- the piecewise-constant ``floor``, ``ceiling``, ``trunc``, ``round`` and
  ``sign`` (Note [piecewise-constant functions]);
- ``ndtr``, the standard normal CDF, computed without cancelling;
- ``isfinite`` and ``isnan``, for conditions (nan_to_num keeps only finite
  values; fmax passes over a nan).

    >>> import sympy as sp
    >>> x = sp.Symbol("x", real=True)
    >>> sp.diff(NAMES["floor"](x) + NAMES["log1p"](x), x)
    1/(x + 1)
"""

from __future__ import annotations

import builtins
import functools
import importlib.util
import math
import types
from typing import Dict, List

import mpmath
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import exp2, expm1, hypot, log1p, log2, log10

# scipy computes the special functions (erfinv, loggamma, besseli, ...); it
# is imported only by a formula that calls one (Note [scipy only when a
# formula needs it]): its import costs a small script a third of a second.
HAVE_SCIPY = importlib.util.find_spec("scipy") is not None


# Note [piecewise-constant functions]
# floor, ceil, round, trunc and sign are constant between their jumps, so
# their derivative is 0 wherever it exists, and torch takes it as 0 at the
# jumps too. sympy knows the first half but not how to say it: it leaves
# d floor(x)/dx unevaluated and gives d sign(x)/dx as 2*DiracDelta(x). These
# are sympy's functions with the derivative they have between jumps, the
# way sympy's own sin knows that its derivative is cos: a fact about the
# function, true for every op that uses it, not a row's answer.
class _PiecewiseConstant:
    def fdiff(self, argindex=1):
        return sp.S.Zero

    def _eval_derivative(self, symbol):
        return sp.S.Zero


class floor(_PiecewiseConstant, sp.floor):
    pass


class ceiling(_PiecewiseConstant, sp.ceiling):
    pass


class sign(_PiecewiseConstant, sp.sign):
    pass


class trunc(_PiecewiseConstant, sp.Function):
    """Rounding toward 0, as torch.trunc and C's trunc."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            return sp.Integer(math.trunc(x))
        return None


class round(_PiecewiseConstant, sp.Function):  # noqa: A001 (torch.round's name)
    """Rounding to the nearest integer, halves to even, as torch.round."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            return sp.Integer(int(np.round(float(x))))
        return None


class ndtr(sp.Function):
    """The standard normal CDF, (1 + erf(x/sqrt(2)))/2, kept whole so that
    its numbers come from scipy's ndtr: far into the left tail 1 + erf(...)
    cancels to 0 while ndtr keeps its precision. sympy differentiates the
    definition."""

    nargs = 1

    @staticmethod
    def definition(x):
        return (1 + sp.erf(x / sp.sqrt(2))) / 2

    def fdiff(self, argindex=1):
        x = sp.Dummy("x", real=True)
        return sp.diff(self.definition(x), x).subs(x, self.args[0])

    def _eval_rewrite_as_erf(self, x, **kwargs):
        return self.definition(x)


# Tests on a value, 1 or 0; they appear only in conditions: Eq(isnan(other), 1).
isfinite = sp.Function("isfinite")
isnan = sp.Function("isnan")

# The names a row's formula can use, beyond sympy's.
NAMES: Dict[str, object] = {
    "log1p": log1p, "expm1": expm1, "exp2": exp2, "log2": log2, "log10": log10, "hypot": hypot,
    "floor": floor, "ceiling": ceiling, "trunc": trunc, "round": round, "sign": sign,
    "isfinite": isfinite, "isnan": isnan, "ndtr": ndtr,
}


class _Broadcasting:
    """A logical ufunc whose ``reduce`` broadcasts its operands.

    sympy prints ``(self > max) | (min > max)`` as
    ``logical_or.reduce((greater(self, max), greater(min, max)))``, and
    numpy's own reduce wants operands of one shape; here a scalar bound and
    an array condition combine as ``|`` would combine them.
    """

    def __init__(self, ufunc):
        self.ufunc = ufunc

    def __call__(self, *operands):
        return self.ufunc(*operands)

    def reduce(self, operands):
        return functools.reduce(self.ufunc, operands)


# How numpy computes the names its printer does not know.
_NUMPY: Dict[str, object] = {
    "trunc": np.trunc, "round": np.round, "isfinite": np.isfinite, "isnan": np.isnan,
    "logical_and": _Broadcasting(np.logical_and), "logical_or": _Broadcasting(np.logical_or),
}


def _ndtr(x):
    """scipy's ndtr, scipy imported at the first call rather than with this module."""
    import scipy.special

    return scipy.special.ndtr(x)


if HAVE_SCIPY:
    _NUMPY["ndtr"] = _ndtr

# How mpmath computes them, for Note [overflow inside a derived formula].
_MPMATH: Dict[str, object] = {
    "log1p": lambda x: mpmath.log(1 + x), "expm1": mpmath.expm1, "exp2": lambda x: mpmath.power(2, x),
    "log2": lambda x: mpmath.log(x, 2), "log10": mpmath.log10, "hypot": mpmath.hypot,
    "trunc": lambda x: mpmath.mpf(math.trunc(x)), "round": mpmath.nint, "ndtr": mpmath.ncdf,
    "isfinite": lambda x: 1 if mpmath.isfinite(x) else 0, "isnan": lambda x: 1 if mpmath.isnan(x) else 0,
}

NUMPY_MODULES: List[object] = [_NUMPY] + (["scipy"] if HAVE_SCIPY else []) + ["numpy"]


class _Numpy:
    """numpy's namespace as lambdify's "numpy" gives it (``from numpy import
    *; from numpy.linalg import *``, sympy's I and Heaviside), less numpy's
    lazily loaded submodules: the star import loads every one of them
    (numpy.polynomial, numpy.f2py, numpy.ma: a tenth of a second), and no
    generated code names a module. lambdify takes an object with a __dict__
    and numpy's __name__ for numpy itself (its printer, its namespace)."""

    __name__ = "numpy"

    def __init__(self):
        import numpy.linalg

        for module in (np, numpy.linalg):
            self.__dict__.update({name: getattr(module, name) for name in module.__all__
                                  if name in vars(module) and not isinstance(vars(module)[name], types.ModuleType)})
        self.__dict__.update({"numpy": np, "I": 1j, "Heaviside": np.heaviside})


NUMPY_ALONE: List[object] = [_NUMPY, _Numpy()]
MPMATH_MODULES: List[object] = [_MPMATH, "mpmath"]


# Note [scipy only when a formula needs it]
# With "scipy" among lambdify's modules, every name of scipy.special is put
# in the generated function's namespace, over numpy's, and `import
# scipy.special` costs more than all the rest graphexplain does for a small
# script. So a formula is first turned into code with numpy alone; that code
# is kept when every name it looks up is numpy's (or ours), and none is one
# that scipy.special would have put over numpy's (SHADOWED_BY_SCIPY, the names
# both define), and each is the object numpy's namespace holds (the printer
# imports math's erfc for a name numpy lacks: it takes no arrays). Otherwise
# (erf, loggamma, erfinv) it is generated again with scipy, exactly as
# before. Either way the function computes with the implementations it had
# when scipy was always among the modules.
SHADOWED_BY_SCIPY = frozenset({"cbrt", "exp2", "expm1", "i0", "log1p", "round", "sinc"})


def _names_looked_up(code) -> set:
    """The global names the code reads (not attributes: logical_and.reduce)."""
    import dis

    names = {op.argval for op in dis.get_instructions(code) if op.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for constant in code.co_consts:  # a comprehension or lambda inside has names of its own
        if hasattr(constant, "co_names"):
            names |= _names_looked_up(constant)
    return names


def _numpy_computes(function, modules) -> bool:
    """Whether every name the generated code looks up is the object one of
    `modules` gives it: not math's erfc (the printer imports math's
    functions for names numpy lacks; they take no arrays), not a name
    missing, not one scipy would have put over numpy's."""
    namespace = function.__globals__
    given: Dict[str, object] = {"builtins": builtins, "reduce": functools.reduce}  # the printer's Max, Min
    for module in reversed(modules):
        given.update(module if isinstance(module, dict) else vars(module))

    def as_given(name):
        if name not in namespace:
            return hasattr(builtins, name)
        return name not in SHADOWED_BY_SCIPY and given.get(name, given) is namespace[name]

    return all(as_given(name) for name in _names_looked_up(function.__code__))


def lambdify(arguments, expr, before=()):
    """sympy's lambdify into numpy, with scipy only where the formula needs
    it (Note [scipy only when a formula needs it]); `before`: namespaces that
    come first (numpy functions for names numpy's printer does not know).

    >>> x = sp.Symbol("x", real=True)
    >>> float(lambdify([x], sp.exp(x) + 1)(0.0))
    2.0
    """
    modules = list(before) + NUMPY_ALONE
    function = sp.lambdify(arguments, expr, modules=modules)
    if not HAVE_SCIPY or _numpy_computes(function, modules):
        return function
    return sp.lambdify(arguments, expr, modules=list(before) + NUMPY_MODULES)


def missing_implementation(error: NameError) -> str:
    """Why a formula could not be computed in numbers, in words."""
    name = getattr(error, "name", None) or str(error)
    hint = "" if HAVE_SCIPY else " (install scipy: it computes sympy's special functions)"
    return f"no numeric implementation of {name}{hint}"
