r"""The records' formulas as LaTeX and presentation MathML, from sympy's printers.

The derivation stage keeps its formulas as strings (results.py: a node's
forward and forward_named, a local gradient's expr and named, a leaf's
symbolic gradient). A renderer that wants typeset mathematics (the Markdown
page, the HTML page) hands such a string to `to_latex` or `to_mathml` with
the user's names that may occur in it; sympy parses it back and prints it.

    >>> print(to_latex("4*(x + 2)/3", ["x"]))
    \frac{4 \left(x + 2\right)}{3}
    >>> print(to_latex("2*(y * y)", ["y * y"]))
    2 \left(\mathtt{y\ *\ y}\right)
    >>> print(to_mathml("x + 2", ["x"]))
    <math xmlns="http://www.w3.org/1998/Math/MathML"><mrow><mi>x</mi><mo>+</mo><mn>2</mn></mrow></math>

Neither ever raises: a string that does not parse (a sentence, an index
statement sympy has no syntax for) comes back as escaped plain text.

    >>> print(to_latex("1 where result[k] was taken from self[j], else 0"))
    \text{1 where result[k] was taken from self[j], else 0}

Note [parsing formulas back]
The strings hold the user's names verbatim (`y * y`, `mul#12`,
`model.weight`, `x[0]`, `self.fc(torch.flatten(x, 1))`), which are no
Python. Each name the caller gives is first replaced by a placeholder
identifier (longest names first, in its parenthesised form `(y * y)` and
bare), and becomes one Symbol, printed as text: it is a name, not
mathematics. What is left is sympy's own printing of a rule's formula. It
is tokenized and accepted only if it holds names, numbers, operators,
brackets and commas (no strings, no attribute access but `.T`, no keywords
but True/False); every name is bound to a Symbol, a Function or an
IndexedBase before sympy's parser evaluates it, under a namespace with no
builtins. Nothing of the user's text is ever evaluated as code. Parsing
runs with evaluate=False so that the formula is printed as it was derived,
not re-expanded (4*(x + 2)/3 stays a product).
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from functools import lru_cache
from html import escape as html_escape
from typing import Iterable, List, Optional, Tuple

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import auto_number, parse_expr
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter
from sympy.printing.precedence import PRECEDENCE

from ..notation import label, shorten

__all__ = ["to_latex", "to_mathml"]

MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"
_PLACEHOLDER = "GEname"  # + a number: stands for one of the user's names while parsing

# sympy functions a formula's string may call, by the name sympy prints them with
_FUNCTIONS = {name: getattr(sp, name) for name in (
    "exp", "log", "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh",
    "asinh", "acosh", "atanh", "Abs", "sign", "Heaviside", "Max", "Min", "floor", "ceiling", "erf", "erfc",
    "erfinv", "gamma", "loggamma", "polygamma", "digamma", "Piecewise", "KroneckerDelta", "Sum", "Product",
    "re", "im", "conjugate", "arg", "Mod", "DiracDelta", "cot", "sec", "csc", "LambertW",
)}
_CONSTANTS = {"pi": sp.pi, "E": sp.E, "I": sp.I, "oo": sp.oo, "zoo": sp.zoo, "nan": sp.nan}
# What sympy's parser itself writes into the code it evaluates (auto_number, evaluate=False).
_PARSER_NAMES = {"Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational, "Add": sp.Add,
                 "Mul": sp.Mul, "Pow": sp.Pow, "Mod": sp.Mod, "Symbol": sp.Symbol, "Gt": sp.Gt, "Lt": sp.Lt,
                 "Ge": sp.Ge, "Le": sp.Le, "Eq": sp.Eq, "Ne": sp.Ne}
_OPERATORS = {"+", "-", "*", "/", "**", "(", ")", "[", "]", ",", "<", ">", "<=", ">=", "==", "!=", "."}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
          "mu", "nu", "xi", "omicron", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"}

# Characters of a name, as LaTeX math mode shows them literally (Markdown-safe: no < > | `).
_LATEX_ESCAPES = {"\\": r"\backslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "#": r"\#", "$": r"\$",
                  "%": r"\%", "&": r"\&", "^": r"\hat{}", "~": r"\sim{}", " ": r"\ ", "|": r"\vert{}",
                  "<": r"\lt{}", ">": r"\gt{}", "'": r"\prime{}", "∂": r"\partial{}", "Σ": r"\Sigma{}",
                  "…": r"\dots{}", "×": r"\times{}", "→": r"\to{}", "`": r"\grave{}"}  # ` would open Markdown code
# ... and inside \text{...}, where only these are special
_TEXT_ESCAPES = {"\\": r"\backslash ", "{": r"\{", "}": r"\}", "$": r"\$", "%": r"\%", "&": r"\&",
                 "#": r"\#", "_": r"\_", "^": r"\hat{}", "~": r"\sim{}", "|": r"\vert{}", "<": r"\lt{}",
                 ">": r"\gt{}", "`": r"\grave{}"}
# sympy's own LaTeX, made safe to paste into Markdown (a table cell, text an HTML parser reads)
_LATEX_AFTER = (("\\|", r"\Vert "), ("|", r"\vert "), ("<", r"\lt "), (">", r"\gt "))


class ParseFailure(Exception):
    """The string is no formula sympy can read back; it is shown as text."""


class Transposed(sp.Function):
    """`X.T`, as the matrix rows print a transpose: X with a superscript T."""

    nargs = 1

    def _latex(self, printer):
        return f"{printer.parenthesize(self.args[0], PRECEDENCE['Pow'])}^{{T}}"

    def _mathml_presentation(self, printer):
        power = printer.dom.createElement("msup")
        power.appendChild(printer._print(self.args[0]))
        mark = printer.dom.createElement("mi")
        mark.appendChild(printer.dom.createTextNode("T"))
        power.appendChild(mark)
        return power

    def _sympystr(self, printer):
        return f"{printer.parenthesize(self.args[0], PRECEDENCE['Pow'])}.T"


class NamedExpression(sp.Symbol):
    """A user's name that is an expression, `y * y`: one symbol, which the
    printers put in parentheses where an operator binds it (2·(y * y)), as
    the walkthrough does (notation.label), and nowhere else (mean(y * y))."""

    precedence = PRECEDENCE["Add"]


def _is_expression(name: str) -> bool:
    """Whether a name is an expression outside its brackets: `y * y`, not `x[:, -1]` or `f(a + b)`."""
    outside, previous = name, None
    while outside != previous:
        previous, outside = outside, re.sub(r"\([^()]*\)|\[[^\[\]]*\]", "", outside)
    return bool(re.search(r"[\s+\-*/@%<>=&|^]", outside))


def _factors(product: sp.Mul) -> list:
    """A product's factors, nested unevaluated products opened: -w·x is -1, w, x."""
    factors = []
    for factor in product.args:
        factors += _factors(factor) if isinstance(factor, sp.Mul) else [factor]
    return factors


def _plain_symbol(name: str, users: frozenset) -> bool:
    """Whether sympy's own printing of a symbol suits it: a letter and digits
    (x, w1), or a Greek letter of the rules' vocabulary (alpha)."""
    return bool(re.fullmatch(r"[A-Za-z]\d*", name)) or (name in _GREEK and name not in users)


def _latex_text(name: str, escapes=_LATEX_ESCAPES) -> str:
    return "".join(escapes.get(character, character) for character in name)


class _Latex(LatexPrinter):
    def __init__(self, users: frozenset):
        super().__init__({"order": "none"})  # as derived: a matrix product's factors keep their order
        self._users = users

    def _print_Mul(self, expr):
        factors = _factors(expr)
        if len(factors) == 2 and factors[0] == -1 and isinstance(factors[1], NamedExpression):
            return r"- \left(" + self._print(factors[1]) + r"\right)"  # sympy's would drop them: -y * y
        return super()._print_Mul(expr)

    def _print_Symbol(self, expr, style="plain"):
        if _plain_symbol(expr.name, self._users):
            return super()._print_Symbol(expr, style)
        return r"\mathtt{" + _latex_text(expr.name) + "}"


class _MathML(MathMLPresentationPrinter):
    def __init__(self, users: frozenset):
        super().__init__({"order": "none"})
        self._users = users

    def mathml_tag(self, e):
        if isinstance(e, AppliedUndef):  # a rule's own function (mean, transpose): its name as written
            return e.func.__name__
        return super().mathml_tag(e)

    def _element(self, tag: str, *children, text: Optional[str] = None):
        element = self.dom.createElement(tag)
        if text is not None:
            element.appendChild(self.dom.createTextNode(text))
        for child in children:
            element.appendChild(child)
        return element

    def _print_Piecewise(self, expr):
        """Cases, as the LaTeX printer's \\begin{cases}: sympy's MathML printer has none."""
        rows = []
        for value, condition in expr.args:
            case = self._element("mtext", text="otherwise") if condition == sp.true else \
                self._element("mrow", self._element("mtext", text="if "), self._print(condition))
            rows.append(self._element("mtr", self._element("mtd", self._print(value)), self._element("mtd", case)))
        return self._element("mrow", self._element("mo", text="{"), self._element("mtable", *rows))

    def _print_Relational(self, expr):
        """sympy's would write `<` unescaped (its writer escapes nothing): entities here."""
        operators = {"<": "&lt;", ">": "&gt;", "<=": "&#8804;", ">=": "&#8805;", "==": "=", "!=": "&#8800;"}
        operator = self._element("mo", text=operators.get(expr.rel_op, html_escape(expr.rel_op)))
        return self._element("mrow", self._print(expr.lhs), operator, self._print(expr.rhs))

    def _print_KroneckerDelta(self, expr):
        indices = self._element("mrow")
        for position, index in enumerate(expr.args):
            if position:
                indices.appendChild(self._element("mo", text=","))
            indices.appendChild(self._print(index))
        return self._element("msub", self._element("mi", text="δ"), indices)

    def _print_Mul(self, expr):
        """A product as parsed, unevaluated: sympy's own would first evaluate
        its numerator (4*(x + 2)/3 into (4x + 8)/3)."""
        factors = _factors(expr)
        over = [f for f in factors if f.is_Pow and f.exp.is_negative and f.exp.is_number]
        if over:
            numerator = [f for f in factors if f not in over] or [sp.Integer(1)]
            denominator = [f.base if f.exp == -1 else sp.Pow(f.base, -f.exp, evaluate=False) for f in over]
            fraction = self.dom.createElement("mfrac")
            for part in (numerator, denominator):
                fraction.appendChild(self._print(part[0] if len(part) == 1 else sp.Mul(*part, evaluate=False)))
            return fraction
        row = self.dom.createElement("mrow")
        if len(factors) > 1 and factors[0].is_Number and factors[0].is_negative:  # -2·u·w, not (-2)·u·w
            sign = self.dom.createElement("mo")
            sign.appendChild(self.dom.createTextNode("-"))
            row.appendChild(sign)
            factors = ([-factors[0]] if factors[0] != -1 else []) + factors[1:]
        for position, factor in enumerate(factors):
            if position:
                times = self.dom.createElement("mo")
                times.appendChild(self.dom.createTextNode("&InvisibleTimes;"))
                row.appendChild(times)
            row.appendChild(self.parenthesize(factor, PRECEDENCE["Mul"]))
        return row

    def _print_Symbol(self, sym, style="plain"):
        if _plain_symbol(sym.name, self._users):
            return super()._print_Symbol(sym, style)
        name = self.dom.createElement("mi")
        name.setAttribute("mathvariant", "monospace")
        # sympy's MathML writer does not escape text (its own holds entities): a name is escaped here
        name.appendChild(self.dom.createTextNode(html_escape(sym.name, quote=False)))
        return name


def _forms(name: str) -> List[str]:
    """How a name may appear in a formula's string: parenthesised (as
    notation.label writes it), cut (notation.shorten), or bare."""
    forms = []
    for shown in (name, shorten(name)):
        forms += [label(shown), shown]
    return list(dict.fromkeys(forms))


def _with_placeholders(text: str, names: Iterable[str]) -> Tuple[str, dict]:
    """`text` with each of the user's names replaced by a placeholder
    identifier; {placeholder: the name}. Longest forms first, so that
    `y * y * 2` is one name, not `y` three times."""
    if _PLACEHOLDER in text:
        raise ParseFailure(text)
    forms = sorted({(form, name) for name in names if name for form in _forms(name)},
                   key=lambda pair: (-len(pair[0]), pair))
    placeholders: dict = {}
    by_name: dict = {}
    for form, name in forms:
        placeholder = by_name.setdefault(name, f"{_PLACEHOLDER}{len(by_name)}")
        if form.startswith("(") and form.endswith(")") and form != name:
            text, count = re.subn(re.escape(form) + r"(?=\[)", placeholder, text)  # indexed: (a * b)[i] is one base
            if count:
                placeholders[placeholder] = name
            pattern, replacement = re.escape(form), f"({placeholder})"  # its parentheses may be a call's
        else:  # not part of a longer identifier, an attribute, or a call; `.T` after it is a transpose
            pattern, replacement = r"(?<![\w.#])" + re.escape(form) + r"(?!\w|#|\((?!\s)|\.(?!T\b))", placeholder
        text, count = re.subn(pattern, replacement, text)
        if count:
            placeholders[placeholder] = name
    return text, placeholders


def _tokens(text: str) -> list:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as error:
        raise ParseFailure(text) from error
    kept = []
    for kind, value, *_ in tokens:
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if kind == tokenize.NAME:
            if value.startswith("_") or (keyword.iskeyword(value) and value not in ("True", "False")):
                raise ParseFailure(text)
        elif kind == tokenize.NUMBER:
            if not re.fullmatch(r"\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?", value):
                raise ParseFailure(text)  # no 0x.., 1j, 1_000: sympy never prints them
        elif kind != tokenize.OP or value not in _OPERATORS:
            raise ParseFailure(text)
        kept.append((kind, value))
    return kept


def _atom_start(tokens: list, end: int) -> int:
    """Where the operand ending at tokens[end] begins: a name, or a bracketed
    group with the name or call before it."""
    kind, value = tokens[end]
    if kind in (tokenize.NAME, tokenize.NUMBER):
        return end
    if value not in (")", "]"):
        raise ParseFailure(value)
    depth, position = 0, end
    while position >= 0:
        value = tokens[position][1]
        depth += value in (")", "]")
        depth -= value in ("(", "[")
        if depth == 0:
            break
        position -= 1
    if position < 0:
        raise ParseFailure("unbalanced")
    if position > 0 and tokens[position - 1][0] == tokenize.NAME or position > 0 and tokens[position - 1][1] in (")", "]"):
        return _atom_start(tokens, position - 1)
    return position


def _transposes(tokens: list) -> list:
    """`X.T` → `Transposed(X)`; any other `.` is refused."""
    result: list = []
    position = 0
    while position < len(tokens):
        kind, value = tokens[position]
        if value == ".":
            following = tokens[position + 1] if position + 1 < len(tokens) else (None, None)
            if following != (tokenize.NAME, "T") or not result:
                raise ParseFailure(".")
            start = _atom_start(result, len(result) - 1)
            result[start:] = [(tokenize.NAME, "Transposed"), (tokenize.OP, "(")] + result[start:] + [(tokenize.OP, ")")]
            position += 2
            continue
        result.append((kind, value))
        position += 1
    return result


def _bind_names(tokens: list, placeholders: dict) -> dict:
    """Every name of the formula bound before sympy evaluates it: a user's
    name or a vocabulary word to a Symbol (an IndexedBase before `[`), a
    call to sympy's function of that name or an undefined Function."""
    names: dict = {"Transposed": Transposed, "True": sp.true, "False": sp.false}
    for position, (kind, value) in enumerate(tokens):
        if kind != tokenize.NAME or value in names:
            continue
        following = tokens[position + 1][1] if position + 1 < len(tokens) else ""
        symbol = sp.Symbol(placeholders.get(value, value))
        if value in placeholders and _is_expression(symbol.name):
            symbol = NamedExpression(symbol.name)
        if value in placeholders:
            names[value] = sp.IndexedBase(symbol) if following == "[" else symbol
        elif following == "(":
            names[value] = _FUNCTIONS.get(value) or sp.Function(value)
        elif following == "[":
            names[value] = sp.IndexedBase(symbol)
        else:
            names[value] = _CONSTANTS.get(value, symbol)
    return names


def _expression(text: str, placeholders: dict) -> sp.Basic:
    tokens = _transposes(_tokens(text))
    if not tokens:
        raise ParseFailure(text)
    local = _bind_names(tokens, placeholders)
    code = tokenize.untokenize(tokens)
    namespace = {"__builtins__": {}, **_PARSER_NAMES}
    try:
        expr = parse_expr(code, local_dict=local, global_dict=namespace, transformations=(auto_number,),
                          evaluate=False)
    except Exception as error:  # whatever sympy raises on text it cannot read: shown as text
        raise ParseFailure(text) from error
    if not isinstance(expr, sp.Basic):
        raise ParseFailure(text)
    return _tidy(expr)


def _tidy(expr: sp.Basic) -> sp.Basic:
    """Unevaluated parsing writes `1/3` as 1·3⁻¹ and `-Y/2` as (-1·Y)·2⁻¹:
    the factor 1 is dropped, nested products opened."""
    if not expr.args or isinstance(expr, (sp.Indexed, sp.IndexedBase)):
        return expr
    args = [_tidy(arg) for arg in expr.args]
    if isinstance(expr, sp.Mul):  # nested products opened, in order: -Y/2 is -1·Y·2⁻¹, printed -Y/2
        args = [factor for arg in args for factor in (arg.args if isinstance(arg, sp.Mul) else (arg,))]
        kept = [arg for arg in args if arg != 1] or [sp.Integer(1)]
        return kept[0] if len(kept) == 1 else sp.Mul(*kept, evaluate=False)
    if args == list(expr.args):
        return expr
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


_DERIVATIVE = re.compile(r"^∂(.+)/∂(.+)$")


def _restored(part: str, placeholders: dict) -> str:
    for placeholder in sorted(placeholders, key=len, reverse=True):
        part = part.replace(placeholder, placeholders[placeholder])
    return part


def _parts(text: str, names: Tuple[str, ...]) -> list:
    """The formula's parts: a statement `a = b = c` is printed part by part;
    a part `∂a/∂b` as a fraction of partials. Each part is an expression, a
    pair (numerator, denominator) of expressions, or, where it does not
    parse, its text: a statement keeps the parts that do."""
    try:
        replaced, placeholders = _with_placeholders(text, names)
    except ParseFailure:
        return [text]
    parts: list = []
    for part in replaced.split(" = "):
        derivative = _DERIVATIVE.match(part.strip())
        try:
            if derivative:
                parts.append((_expression(derivative.group(1), placeholders),
                              _expression(derivative.group(2), placeholders)))
            else:
                parts.append(_expression(part.strip(), placeholders))
        except Exception:  # Note [parsing formulas back]: never an exception, plain text instead
            parts.append(_restored(part, placeholders))
    return parts


@lru_cache(maxsize=4096)  # a loop's many calls print the same formulas
def _to_latex(text: str, names: Tuple[str, ...]) -> str:
    printer = _Latex(frozenset(names))
    shown = []
    for part in _parts(text, names):
        try:
            if isinstance(part, str):
                shown.append(r"\text{" + _latex_text(part, _TEXT_ESCAPES) + "}")
                continue
            if isinstance(part, tuple):
                latex = (r"\frac{\partial " + printer.doprint(part[0]) + r"}{\partial " +
                         printer.doprint(part[1]) + "}")
            else:
                latex = printer.doprint(part)
        except Exception:  # a printer that cannot print what parsed: its text
            shown.append(r"\text{" + _latex_text(str(part), _TEXT_ESCAPES) + "}")
            continue
        for before, after in _LATEX_AFTER:
            latex = latex.replace(before, after)
        shown.append(latex.strip())
    return " = ".join(shown)


def _names(names: Optional[Iterable[str]]) -> Tuple[str, ...]:
    return tuple(sorted({str(name) for name in names or () if name}))


def to_latex(text: str, names: Optional[Iterable[str]] = None) -> str:
    r"""A formula string of the records as LaTeX (for `$…$`), printed by
    sympy's `latex`. `names` are the user's names that may occur in it
    (operand labels, the node's name, leaf names): each is one symbol,
    printed as text (`\mathtt{…}`) unless it is a plain letter. Never
    raises: text that is no formula comes back as `\text{…}`. The result
    holds no `|`, `<` or `>`, so it is safe in a Markdown table cell.

        >>> print(to_latex("mean(y * y * 2)", ["y * y * 2"]))
        \operatorname{mean}{\left(\mathtt{y\ *\ y\ *\ 2} \right)}
        >>> print(to_latex("X_train.T*G", ["X_train"]))
        \mathtt{X\_train}^{T} G
        >>> print(to_latex("∂y/∂x = 1", ["x", "y"]))
        \frac{\partial y}{\partial x} = 1
    """
    return _to_latex(str(text), _names(names))


@lru_cache(maxsize=4096)
def _to_mathml(text: str, names: Tuple[str, ...]) -> str:
    printer = _MathML(frozenset(names))
    shown = []
    for part in _parts(text, names):
        try:
            if isinstance(part, str):
                shown.append(f"<mtext>{html_escape(part, quote=False)}</mtext>")
            elif isinstance(part, tuple):
                shown.append("<mfrac><mrow><mo>∂</mo>" + printer.doprint(part[0]) + "</mrow><mrow><mo>∂</mo>" +
                             printer.doprint(part[1]) + "</mrow></mfrac>")
            else:
                shown.append(printer.doprint(part))
        except Exception:  # a printer that cannot print what parsed: its text
            shown.append(f"<mtext>{html_escape(str(part), quote=False)}</mtext>")
    # A visible product dot: sympy's invisible times runs names of several
    # letters together ("X_trainᵀG") in every browser.
    body = "<mo>=</mo>".join(shown).replace("<mo>&InvisibleTimes;</mo>", "<mo>·</mo>")
    if len(shown) > 1:
        body = f"<mrow>{body}</mrow>"
    return f'<math xmlns="{MATHML_NAMESPACE}">{body}</math>'


def to_mathml(text: str, names: Optional[Iterable[str]] = None) -> str:
    """A formula string of the records as a presentation MathML `<math>`
    element, printed by sympy's MathML printer; `names` as for `to_latex`
    (a user's name is one `<mi>`, in monospace unless a plain letter).
    Never raises: text that is no formula is one escaped `<mtext>`.

        >>> print(to_mathml("2*(y * y)", ["y * y"]))
        <math xmlns="http://www.w3.org/1998/Math/MathML"><mrow><mn>2</mn><mo>·</mo><mrow><mo>(</mo><mi mathvariant="monospace">y * y</mi><mo>)</mo></mrow></mrow></math>
        >>> print(to_mathml("a < b & c, not a formula"))
        <math xmlns="http://www.w3.org/1998/Math/MathML"><mtext>a &lt; b &amp; c, not a formula</mtext></math>
    """
    return _to_mathml(str(text), _names(names))
