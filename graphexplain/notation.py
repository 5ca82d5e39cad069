"""How names appear inside formulas: plain strings, shared by the derivation
stage (which prints formulas) and the renderers (which print around them).

    >>> label("y"), label("y * y"), label("t(w)"), label("2")
    ('y', '(y * y)', 't(w)', '2')
"""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_CALL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*\([^()]*(\([^()]*\))*[^()]*\)$")  # f(a, g(b))


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def is_name(text: str) -> bool:
    return bool(_IDENTIFIER.match(text))


def label(text: str) -> str:
    """A name as a formula shows it: an expression goes in parentheses."""
    if is_number(text) or _IDENTIFIER.match(text) or _CALL.match(text):
        return text
    return f"({text})"
