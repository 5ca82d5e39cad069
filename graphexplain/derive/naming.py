"""Formulas in the user's words: the row's vocabulary (self, other, alpha,
N) replaced by the script's names and the node's own numbers.

    >>> import sympy as sp
    >>> str(rename(sp.Symbol("other") * 2, {"other": "y"}))
    '2*y'
"""

from __future__ import annotations

import re
from typing import Dict, Union

import numpy as np
import sympy as sp
from sympy.core.mul import _keep_coeff
from sympy.printing.precedence import precedence
from sympy.printing.str import StrPrinter

from ..model import Node
from ..rules.kinds import Rule
from ..notation import is_number, label, shorten
from . import arguments, formula



def _number(value) -> Union[sp.Expr, None]:
    array = np.asarray(value, dtype=np.float64)
    if array.size != 1:
        return None
    number = float(array.reshape(()))
    return sp.Integer(int(number)) if number.is_integer() and abs(number) < 1e15 else sp.Float(number, 4)


def display_names(rule: Rule, node: Node, count=None) -> Dict[str, Union[str, sp.Expr]]:
    """For each vocabulary word of this node: the user's name, or a number
    for scalar parameters, number operands and N."""
    names: Dict[str, Union[str, sp.Expr]] = {}
    for operand in node.operands:
        literal = operand.producer is None and not operand.requires_grad and is_number(operand.label)
        number = _number(operand.value.data) if literal and operand.value is not None and operand.value.known else None
        names[operand.name] = number if number is not None else label(shorten(operand.label))
    params = arguments.saved(node)
    present = {o.name for o in node.operands if o.producer is not None or (o.value is not None and o.value.known)}
    for name in rule.params + tuple(name for name, _ in rule.defaults):
        if name in present and name not in params:
            continue  # an operand's default (layer_norm's weight) is for when torch left the operand out
        value = params.get(name, dict(rule.defaults).get(name))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            names[name] = _number(value)
    names[formula.RESULT] = label(shorten(node.name))  # Note [bounded labels] in notation.py
    if count is not None:
        names[formula.COUNT] = sp.Integer(count)
    return names


class _FormulaPrinter(StrPrinter):
    """sympy's string printer, but a product of matrices is written with @,
    as PyTorch writes it: `x @ w1` is a matrix product, `x*w1` reads as an
    elementwise one. A number or a scalar in front keeps its *: alpha*mat1.T @ G."""

    def _print_MatMul(self, expr):
        coefficient, matrices = expr.as_coeff_mmul()
        sign = ""
        if coefficient.is_number:  # a negative number in front: its minus first, as sympy prints it
            real, imaginary = coefficient.as_real_imag()
            if imaginary.is_zero and real.is_negative or real.is_zero and imaginary.is_negative:
                expr, sign = _keep_coeff(-coefficient, matrices), "-"
        text = ""
        for k, factor in enumerate(expr.args):
            if k:
                text += " @ " if factor.is_Matrix and expr.args[k - 1].is_Matrix else "*"
            text += self.parenthesize(factor, precedence(expr))
        return sign + text


_PRINTER = _FormulaPrinter()


def formula_text(expr: sp.Basic) -> str:
    """A formula as graphexplain prints it: sympy's string, matrix products with @.

        >>> A, B = sp.MatrixSymbol("A", 2, 2), sp.MatrixSymbol("B", 2, 2)
        >>> formula_text(2 * A.T * B)
        '2*A.T @ B'
    """
    return _PRINTER.doprint(expr)


def show(expr: sp.Basic) -> str:
    """sympy's string of a renamed formula, without the doubled parentheses
    of a call on a parenthesised name: mean((y * y)) → mean(y * y)."""
    return tidied(formula_text(expr))


def tidied(text: str) -> str:
    """`show`'s text from sympy's string."""
    return re.sub(r"(\w)\(\(([^()]*)\)\)", r"\1(\2)", text)


def rename(expr: sp.Basic, names: Dict[str, Union[str, sp.Expr]]) -> sp.Basic:
    """Replace each symbol whose name is in `names`, keeping matrix shapes."""
    replacements = {}
    for atom in expr.atoms(sp.Symbol, sp.MatrixSymbol):
        new = names.get(atom.name)
        if new is None:
            continue
        if isinstance(atom, sp.MatrixSymbol):
            if isinstance(new, str):
                replacements[atom] = sp.MatrixSymbol(new, *atom.shape)
        else:
            replacements[atom] = sp.Symbol(new, real=True) if isinstance(new, str) else new
    renamed = expr.xreplace(replacements)
    # 1*G and the like: products with the numbers put in, multiplied out.
    return renamed.doit() if isinstance(renamed, sp.MatrixExpr) else renamed
