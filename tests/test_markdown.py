"""`--markdown FILE` and the printers behind it (derive/printing.py): formulas
are sympy's LaTeX / MathML, user text is escaped, pictures resolve, and a
mismatch shows as ✗ with both numbers."""

from __future__ import annotations

import random
import re

import pytest

from graphexplain.derive.printing import to_latex, to_mathml

# --- derive/printing.py ---------------------------------------------------------------------

# (formula string as the records hold it, the user's names in it, the LaTeX sympy prints)
PRINTED = [
    ("4*(x + 2)/3", ["x"], r"\frac{4 \left(x + 2\right)}{3}"),
    ("2*(y * y)", ["y * y", "y"], r"2 \left(\mathtt{y\ *\ y}\right)"),
    ("mean(y * y * 2)", ["y * y * 2", "y * y", "y"], r"\operatorname{mean}{\left(\mathtt{y\ *\ y\ *\ 2} \right)}"),
    ("y**2", ["y"], r"y^{2}"),
    ("(y_hat - y)**2", ["y_hat", "y"], r"\left(\mathtt{y\_hat} - y\right)^{2}"),
    ("X*t(model.weight) + model.bias", ["X", "t(model.weight)", "model.bias"],
     r"X \mathtt{t(model.weight)} + \mathtt{model.bias}"),
    ("alpha*mat1.T*G", [], r"\alpha \mathtt{mat1}^{T} G"),  # a matrix product keeps its order
    ("G*t(model.head.weight).T", ["t(model.head.weight)"], r"G \mathtt{t(model.head.weight)}^{T}"),
    ("mul#12 + x[0]", ["mul#12", "x[0]"], r"\mathtt{mul\#12} + \mathtt{x[0]}"),
    ("1/3", [], r"\frac{1}{3}"),
    ("∂y/∂x = 1", ["x", "y"], r"\frac{\partial y}{\partial x} = 1"),
    ("Piecewise((1, self > 0), (0, True))", [],
     r"\begin{cases} 1 & \text{for}\: \mathtt{self} \gt  0 \\0 & \text{otherwise} \end{cases}"),
]


@pytest.mark.parametrize("text,names,latex", PRINTED, ids=[case[0] for case in PRINTED])
def test_latex_is_what_sympy_prints(text, names, latex):
    assert to_latex(text, names) == latex


def test_mathml_names_are_one_escaped_identifier():
    shown = to_mathml("2*(a<b & c)", ["a<b & c"])
    assert shown.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML">')
    assert '<mi mathvariant="monospace">a&lt;b &amp; c</mi>' in shown


def test_mathml_keeps_a_product_unexpanded():
    shown = to_mathml("4*(x + 2)/3", ["x"])
    assert "<mfrac>" in shown and "<mn>8</mn>" not in shown


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hacked')",
    "open('f').read()", "lambda: 1", "x.__class__", "[1, 2] * 3", "'a string'",
    "1 where result[k] was taken from self[j], else 0", "Σ_{n, i, j} G[n, o, i, j], each into w[o]",
    "", "((((", "1 +", "x if y else z",
])
def test_anything_else_is_escaped_text_never_code(text, capsys):
    latex, mathml = to_latex(text), to_mathml(text)
    assert latex.startswith(r"\text{") and mathml.count("<mtext>") == 1
    assert "hacked" not in capsys.readouterr().out
    assert not re.search(r"(?<!\\)[<>|]", latex)  # safe in a Markdown table cell


def test_a_statement_keeps_the_parts_that_parse():
    assert to_latex("∂y/∂x = 1 where result[k] was taken from x[j]", ["x", "y"]) == \
        r"\frac{\partial y}{\partial x} = \text{1 where result[k] was taken from x[j]}"


def test_a_builtins_name_is_only_a_name():
    """Every name is bound to a sympy Function or Symbol before parsing: `exit()` is printed, not run."""
    assert to_latex("exit() + print(x)", ["x"]) == r"\operatorname{exit}{\left( \right)} + \operatorname{print}{\left(x \right)}"


def test_printers_never_raise_on_noise():
    alphabet = "xy_*+-/()[]., 0123456789#'\"<>|&$\\{}^~∂Σ=T"
    rng = random.Random(11)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(2)]
        assert isinstance(to_latex(text, names), str) and isinstance(to_mathml(text, names), str)
