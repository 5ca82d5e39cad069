"""graphexplain: see the autograd graph behind ``loss.backward()``, derive
every local gradient with sympy, and check each number against torch.

    >>> import graphexplain
    >>> sorted(graphexplain.__all__)[:3]
    ['ExplainError', 'Explanation', 'Graph']

The public names are loaded on first use (PEP 562), so importing one stage,
``graphexplain.model`` say, or asking ``graphexplain --help``, does not pay
for torch and sympy.
"""

from importlib import import_module

__version__ = "0.1.0"
__all__ = ["explain", "recording", "Explanation", "ExplainError", "Step", "Graph", "trace",
           "check_function", "assert_function_correct", "intentional_gradient"]

_HOMES = {
    "explain": "api", "recording": "api", "ExplainError": "api",
    "check_function": "api", "assert_function_correct": "api", "intentional_gradient": "api",
    "Explanation": "explanation", "Step": "explanation", "Graph": "model",
}


def __getattr__(name):
    if name in _HOMES:
        value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphexplain' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def trace(path, args=(), call="first"):
    """Run a script as `graphexplain trace` does; returns the explanations of
    the calls selected by `call` (first, last, all or a number).

        >>> explanations = trace("examples/backprop_by_hand.py")  # doctest: +SKIP
    """
    from .capture.intercept import Selection
    from .capture.runner import run_script
    from .explanation import Explanation

    run = run_script(path, list(args), Selection.parse(call))
    return [Explanation.of(record.graph, record.observed, record.index)
            for record in run.calls if record.graph is not None]
