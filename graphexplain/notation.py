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
    if is_number(text) or _IDENTIFIER.match(text) or _CALL.match(text) or _NUMBERED.match(text):
        return text
    return f"({text})"


# Note [bounded labels]
# A name nobody wrote (a node inside nn.GRU, a long source expression) must
# not grow with the graph: composed names nested their inputs' names, and a
# recurrent graph doubled them each step (1.4 MB for one label of a 5-step
# GRU, which dot refuses). Every name, and every line of a label in the
# picture, the walkthrough and the JSON, is at most LABEL_WIDTH characters.
LABEL_WIDTH = 60
ELLIPSIS = "…"
_NUMBERED = re.compile(r"^\w+#\d+$")  # "mul#12": the op and its step number


def shorten(text: str, width: int = LABEL_WIDTH) -> str:
    """`text` cut to `width` characters, the cut marked with an ellipsis.

    >>> shorten("a" * 70)[-3:], len(shorten("a" * 70))
    ('aa…', 60)
    """
    return text if len(text) <= width else text[:width - 1].rstrip() + ELLIPSIS


def numbered(verb: str, step: int) -> str:
    """The name of a node known only by its op: `mul#12` is step 12's mul."""
    return f"{verb}#{step}"


def stands_in(name: str) -> bool:
    """Whether a name stands in for a longer one (cut, or only the op and a
    number), so that a legend line with the node's source helps."""
    return name.endswith(ELLIPSIS) or bool(_NUMBERED.match(name))
