"""Machine epsilon of each dtype torch computes in, by name: the unit of
every rounding-error budget (Note [error budget] in derive/budget.py).

    >>> epsilon("float32")
    1.1920928955078125e-07
    >>> epsilon("complex128") == epsilon("float64")
    True
"""

EPSILON = {
    "float64": 2.0 ** -52,
    "float32": 2.0 ** -23,
    "float16": 2.0 ** -10,
    "bfloat16": 2.0 ** -7,
    "complex128": 2.0 ** -52,
    "complex64": 2.0 ** -23,
    "complex32": 2.0 ** -10,
}
# Integer and bool tensors, and Python numbers, take part in float ops in
# torch's default dtype.
DEFAULT = "float32"

# The smallest normal number: below it a difference is no rounding to speak of.
TINY = {"float64": 2.2250738585072014e-308, "float32": 1.1754943508222875e-38, "float16": 6.103515625e-05,
        "bfloat16": 1.1754943508222875e-38}


def _name(dtype: str) -> str:
    return str(dtype).replace("torch.", "")


def epsilon(dtype: str) -> float:
    return EPSILON.get(_name(dtype), EPSILON[DEFAULT])


def tiny(dtype: str) -> float:
    name = _name(dtype).replace("complex128", "float64").replace("complex64", "float32")
    return TINY.get(name, TINY[DEFAULT])
