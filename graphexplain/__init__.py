"""graphexplain: see the autograd graph behind ``loss.backward()``, derive
every local gradient with sympy, and check each number against torch.

    >>> import graphexplain
    >>> sorted(graphexplain.__all__)[:3]
    ['ExplainError', 'Explanation', 'Graph']
"""

from .api import ExplainError, explain, recording
from .explanation import Explanation, Step
from .model import Graph

__version__ = "0.1.0"
__all__ = ["explain", "recording", "Explanation", "ExplainError", "Step", "Graph", "trace"]


def trace(path, args=(), call="first"):
    """Run a script as `graphexplain trace` does; returns the explanations of
    the calls selected by `call` (first, last, all or a number)."""
    from .capture.intercept import Selection
    from .capture.runner import run_script

    run = run_script(path, list(args), Selection.parse(call))
    return [Explanation.of(record.graph, record.index) for record in run.calls if record.graph is not None]
