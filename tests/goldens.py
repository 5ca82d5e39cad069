"""Golden files compared the way their contents deserve: words and structure
exactly, numbers within the precision they were computed and printed in.

    >>> difference('{"grad": [1.0, 2.0]}', '{"grad": [1.0, 2.000000001]}', "json") is None
    True
    >>> print(difference('{"grad": [1.0, 2.0]}', '{"grad": [1.0, 2.1]}', "json"))
    grad[1]: golden 2.0, actual 2.1 (off by 0.1, tolerance 2.1e-05)
    >>> difference("grad [0.3333, 2.785]", "grad [0.3334, 2.786]", "txt") is None
    True
    >>> print(difference("grad [0.3333]", "grads [0.3333]", "txt"))
    line 1, column 5: golden ' [0.3333]', actual 's [0.3333]'
      golden: grad [0.3333]
      actual: grads [0.3333]

See Note [why goldens are not compared byte for byte] for the tolerances.
"""

# Note [why goldens are not compared byte for byte]
# The numbers are float32 results (or float64 ones computed from them). Another
# CPU (AVX2 or AVX-512, another BLAS kernel, another thread count) sums in
# another order, so their last bits differ, and a training loop carries the
# difference from step to step. So:
# - JSON numbers (floats rounded to 10 significant digits) may differ by
#   FLOAT32_REL of the largest number they are shown with: their tensor, or,
#   for a scalar field, the same field in the other records of its list (a
#   leaf's gradient norm over the backward calls of a training loop). A value
#   that cancels to 1e-9 next to values near 1 has lost its own digits, and
#   such a field shrinks by orders of magnitude over a training run.
#   (Measured: the goldens hold against runs with torch's kernels forced to
#   ATEN_CPU_CAPABILITY=avx2 or default, MKL to AVX2 or SSE4.2, and one
#   thread, down to 3e-7; 1e-5 leaves a margin of 30.)
# - Printed numbers (4 significant digits) may also straddle a rounding
#   boundary: one unit of the fourth digit is at most 1e-3 of the number.
# - Error magnitudes (max_abs_error, tolerances, budgets) are the rounding
#   noise itself: only that they are numbers, and finite, is compared.
# - Integers (shapes, ids, line numbers), strings, keys and the text between
#   numbers compare exactly: no CPU changes them.

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

FLOAT32_REL = 1e-5  # about 100 float32 ulps; the 10-digit rounding (1e-10) is far below it
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # below float32's smallest normal number is zero
PRINTED_REL = 2e-3  # one unit of the 4th significant digit is at most 1e-3 of the number

# Names of fields that hold error magnitudes (max_abs_error, error, atol, rtol,
# tolerance, error_budget, ...); in text, the word just before a number.
ERROR_MAGNITUDE = re.compile(r"error|toleran|budget|(?:^|_)[ar]?tol(?:$|_)", re.IGNORECASE)
ERROR_WORD_BEFORE = re.compile(r"(?:error|toleran\w*|budget|\b[ar]?tol)\W{0,3}$", re.IGNORECASE)

# A number as printed: not part of a name (n0, gray35, PowBackward0, #1d4ed8)
# nor of a dotted version (1.2.3).
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?!\w|\.\d)")

Where = Tuple[Any, ...]  # a place in a JSON document: keys and list indices


def difference(golden: str, actual: str, kind: str) -> Optional[str]:
    """Where `actual` first differs from `golden` beyond the tolerances, as
    one readable line (or a few); None when they match. `kind` is the file's
    suffix: "json" compares the parsed documents, anything else the text."""
    if kind == "json":
        return json_difference(json.loads(golden), json.loads(actual))
    return text_difference(golden, actual)


# --- JSON ------------------------------------------------------------------------


def json_difference(golden: Any, actual: Any) -> Optional[str]:
    """The first place where two parsed JSON documents differ, and how many do.

    >>> json_difference({"shape": [3], "max_abs_error": 0.0}, {"shape": [3], "max_abs_error": 1e-9}) is None
    True
    >>> print(json_difference({"shape": [3]}, {"shape": [4]}))
    shape[0]: golden 3, actual 4
    """
    series = _series_scales(golden)
    for key, scale in _series_scales(actual).items():
        series[key] = max(series.get(key, 0.0), scale)
    found = list(_differences(golden, actual, (), None, False, series))
    if not found:
        return None
    return found[0] + (f"  ({len(found)} places differ in all)" if len(found) > 1 else "")


def _differences(golden, actual, where: Where, scale: Optional[float], loose: bool,
                 series: Dict[Where, float]) -> Iterator[str]:
    """Every difference below `where`. `scale` is the magnitude of the tensor
    the numbers belong to (None outside one); `loose` marks an error magnitude."""
    if isinstance(golden, dict) and isinstance(actual, dict):
        if list(golden) != list(actual):
            yield f"{_name(where)}: {_keys_difference(list(golden), list(actual))}"
        for key in golden:
            if key in actual:
                yield from _differences(golden[key], actual[key], where + (key,), None,
                                        loose or bool(ERROR_MAGNITUDE.search(key)), series)
    elif isinstance(golden, list) and isinstance(actual, list):
        if len(golden) != len(actual):
            yield f"{_name(where)}: golden has {len(golden)} items, actual {len(actual)}"
        if scale is None and _is_tensor(golden) and _is_tensor(actual):
            scale = max(_largest(golden), _largest(actual))
        for index, (g, a) in enumerate(zip(golden, actual)):
            yield from _differences(g, a, where + (index,), scale, loose, series)
    elif loose and _is_number(golden) and _is_number(actual):
        if math.isfinite(golden) != math.isfinite(actual):
            yield f"{_name(where)}: golden {golden!r}, actual {actual!r} (finite in only one)"
    elif _is_float(golden) and _is_float(actual):
        problem = _float_difference(golden, actual, scale or series.get(_series_of(where), 0.0))
        if problem is not None:
            yield f"{_name(where)}: golden {golden!r}, actual {actual!r}{problem}"
    elif type(golden) is not type(actual) or golden != actual:
        yield f"{_name(where)}: golden {_short(golden)}, actual {_short(actual)}"


def _float_difference(golden: float, actual: float, scale: float) -> Optional[str]:
    if not (math.isfinite(golden) and math.isfinite(actual)):
        same = golden == actual or (math.isnan(golden) and math.isnan(actual))
        return None if same else ""
    tolerance = FLOAT32_REL * max(scale, abs(golden), abs(actual)) + FLOAT32_TINY
    off = abs(golden - actual)
    return None if off <= tolerance else f" (off by {off:.3g}, tolerance {tolerance:.3g})"


def _series_scales(document: Any) -> Dict[Where, float]:
    """The largest magnitude of each scalar field over the records of its
    list: `backward_calls[*].root.value` over all calls."""
    scales: Dict[Where, float] = {}

    def visit(value, where: Where):
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, where + (key,))
        elif isinstance(value, list) and not _is_tensor(value):
            for index, item in enumerate(value):
                visit(item, where + (index,))
        elif _is_float(value) and math.isfinite(value):
            key = _series_of(where)
            scales[key] = max(scales.get(key, 0.0), abs(value))

    visit(document, ())
    return scales


def _series_of(where: Where) -> Where:
    """`where` with its innermost list index made a wildcard."""
    for position in range(len(where) - 1, -1, -1):
        if isinstance(where[position], int):
            return where[:position] + ("*",) + where[position + 1:]
    return where


def _is_tensor(value: list) -> bool:
    """A list of numbers, or of such lists: one tensor (no records in it)."""
    return all(_is_tensor(item) if isinstance(item, list) else not isinstance(item, dict) for item in value)


def _largest(tensor: list) -> float:
    return max((_largest(item) if isinstance(item, list) else
                abs(item) if _is_float(item) and math.isfinite(item) else 0.0 for item in tensor), default=0.0)


def _is_float(value) -> bool:
    return type(value) is float  # ints (shapes, ids, lines) and bools compare exactly


def _is_number(value) -> bool:
    return type(value) in (int, float)


def _keys_difference(golden: List[str], actual: List[str]) -> str:
    only_golden = [k for k in golden if k not in actual]
    only_actual = [k for k in actual if k not in golden]
    if not only_golden and not only_actual:
        return f"the same keys in another order: golden {golden}, actual {actual}"
    return f"keys only in golden {only_golden}, only in actual {only_actual}"


def _name(where: Where) -> str:
    text = ""
    for part in where:
        if isinstance(part, int) or part == "*":
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_]\w*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "(the whole document)"


def _short(value, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[:width - 1] + "…"


# --- text (walkthrough, DOT) -------------------------------------------------------


def text_difference(golden: str, actual: str) -> Optional[str]:
    """The first place where two texts differ: in the text between numbers,
    or in a number beyond what printing and float32 allow.

    >>> text_difference("value (3,) [1e-04, 12.17]", "value (3,) [0.0001, 12.18]") is None
    True
    >>> print(text_difference("line 21", "line 22"))
    line 1, column 6: golden '21', actual '22' (off by 1, tolerance 0.0442)
      golden: line 21
      actual: line 22
    """
    golden_pieces, actual_pieces = _pieces(golden), _pieces(actual)
    golden_scales, actual_scales = _line_scales(golden_pieces), _line_scales(actual_pieces)
    for index in range(max(len(golden_pieces), len(actual_pieces))):
        if index >= len(actual_pieces):  # the texts agreed up to here and actual stops
            return _text_place(golden, actual, golden_pieces[index][1], len(actual),
                               f"golden goes on with {golden_pieces[index][0][:30]!r}, actual ends")
        if index >= len(golden_pieces):
            return _text_place(golden, actual, len(golden), actual_pieces[index][1],
                               f"golden ends, actual goes on with {actual_pieces[index][0][:30]!r}")
        (g, g_at), (a, a_at) = golden_pieces[index], actual_pieces[index]
        if index % 2 == 0:  # text between numbers
            if g != a:
                common = _common_prefix(g, a)
                return _text_place(golden, actual, g_at + common, a_at + common,
                                   f"golden {golden[g_at + common:][:30]!r}, actual {actual[a_at + common:][:30]!r}")
            continue
        if ERROR_WORD_BEFORE.search(golden_pieces[index - 1][0]):
            continue  # an error magnitude: rounding noise by design
        gx, ax = float(g), float(a)
        scale = max(golden_scales[index // 2], actual_scales[index // 2])
        tolerance = PRINTED_REL * max(abs(gx), abs(ax)) + FLOAT32_REL * scale + FLOAT32_TINY
        if abs(gx - ax) > tolerance:
            return _text_place(golden, actual, g_at, a_at,
                               f"golden {g!r}, actual {a!r} (off by {abs(gx - ax):.3g}, tolerance {tolerance:.3g})")
    return None


def _pieces(text: str) -> List[Tuple[str, int]]:
    """Text and numbers, alternating, each with its offset; text comes first
    and last (perhaps empty)."""
    pieces, at = [], 0
    for match in NUMBER.finditer(text):
        pieces += [(text[at:match.start()], at), (match.group(), match.start())]
        at = match.end()
    return pieces + [(text[at:], at)]


def _line_scales(pieces: List[Tuple[str, int]]) -> List[float]:
    """For each number, the largest magnitude of the numbers on its line."""
    lines, line = [], 0
    for text, _ in pieces[:-1:2]:  # the text before each number
        line += text.count("\n")
        lines.append(line)
    largest: Dict[int, float] = {}
    for line, (number, _) in zip(lines, pieces[1::2]):
        largest[line] = max(largest.get(line, 0.0), abs(float(number)))
    return [largest[line] for line in lines]


def _line_of(text: str, at: int) -> int:
    return text.count("\n", 0, at)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _text_place(golden: str, actual: str, g_at: int, a_at: int, what: str) -> str:
    line = _line_of(golden, g_at)
    column = g_at - (golden.rfind("\n", 0, g_at) + 1)
    return (f"line {line + 1}, column {column + 1}: {what}\n"
            f"  golden: {_line_around(golden, g_at)}\n  actual: {_line_around(actual, a_at)}")


def _line_around(text: str, at: int) -> str:
    return text[text.rfind("\n", 0, at) + 1:].split("\n", 1)[0]
