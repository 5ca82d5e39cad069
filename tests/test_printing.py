"""A formula in the user's names is printed by sympy once per formula and
pattern of names, with stand-ins (Note [a formula printed once for every
layer] in graphexplain/derive/cache.py), and the text is the one sympy
prints with the names themselves: the same terms, in the same order."""

from __future__ import annotations

import random

import pytest
import sympy as sp

from graphexplain.derive import cache, formula, indexed
from graphexplain.derive.naming import rename, show
from graphexplain.rules import TABLE
from graphexplain.rules.kinds import IndexFormula, Matrix, Pointwise

# Names as the walkthrough gives them, and ones made to trip the stand-ins:
# a name that begins another, the formulas' own names (G, N, j, k), a
# parenthesised expression, dots and brackets.
NAMES = ["y", "G", "self", "other", "(y * y)", "layer1.0.conv1", "layer1", "layer1.0", "x[0]", "a", "z", "N",
         "w1", "loss", "out", "Y", "b", "encoder.layers.0.linear1", "h_t", "result", "x", "x1", "j", "k", "i",
         "weight", "running_mean", "Z", "_t", "(a + b)", "mean(x)", "eps"]
ROWS = sorted(op for op, rule in TABLE.items() if isinstance(rule, (Pointwise, IndexFormula, Matrix)))


def _formulas(rule):
    """The row's derived formulas, each operand's; none where the row needs more than a plain call."""
    found = []
    for name in rule.inputs:
        try:
            if isinstance(rule, Pointwise):
                found.append(formula._local_gradient(rule, name, ""))
            elif isinstance(rule, IndexFormula):
                found.append(indexed.vector_jacobian_product(rule, name))
            else:
                found.append(formula.vector_jacobian_product(rule, name, tuple((3, 3) for _ in rule.inputs))[0])
        except Exception:  # noqa: BLE001 - a row that needs its node's shapes or modes: others cover the code
            continue
    return found


@pytest.mark.parametrize("op", ROWS)
def test_a_formula_printed_with_stand_ins_is_the_formula_printed_in_the_names(op):
    rng = random.Random(op)
    for expr in _formulas(TABLE[op]):
        symbols = sorted(atom.name for atom in expr.atoms(sp.Symbol, sp.MatrixSymbol))
        for _ in range(12):
            names = {name: rng.choice(NAMES) for name in symbols if rng.random() < 0.8}
            if symbols and rng.random() < 0.2:
                names[rng.choice(symbols)] = sp.Rational(1, 2)  # a parameter's number put in
            try:
                direct = show(rename(expr, names))
            except (ValueError, TypeError):  # a number put in where sympy takes none (a sum's index)
                continue
            assert cache.named_formula(expr, names) == direct, (expr, names)


def test_every_layers_names_share_one_printing(monkeypatch):
    """Twelve layers' names for one formula: sympy prints it once; a name
    that begins another's is printed directly, and still right."""
    weight, bias, x = sp.symbols("weight bias x", real=True)
    expr = weight * x + bias * sp.exp(x)
    printed = []
    monkeypatch.setattr(cache, "rename", lambda e, names: printed.append(names) or rename(e, names))
    cache._printed_with.cache_clear()
    for layer in range(12):
        names = {"weight": f"layers.{layer}.weight", "bias": f"layers.{layer}.bias", "x": f"h{layer}"}
        assert cache.named_formula(expr, names) == show(rename(expr, names))
    assert len(printed) == 1
    names = {"weight": "h", "bias": "h1", "x": "z"}
    assert cache.named_formula(expr, names) == show(rename(expr, names)) and len(printed) == 2
