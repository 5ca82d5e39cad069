"""The library API: the same explanations as `graphexplain trace`, in Python.

    >>> import torch, graphexplain
    >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> graphexplain.explain(y).leaf("x").derived_grad.tolist()
    [2.0, 4.0]
"""

from __future__ import annotations

import sys
from typing import Optional

import torch

from .capture.naming import names_in_frame
from .capture.provenance import Recorder
from .capture.standalone import NotExplainable, capture_tensor
from .explanation import Explanation


class ExplainError(NotExplainable):
    """The tensor cannot be explained; the message says why, in plain words."""


def explain(tensor: torch.Tensor, grad_output: Optional[torch.Tensor] = None) -> Explanation:
    """Explain and verify the gradient of `tensor` with respect to every leaf
    behind it, the way ``tensor.backward(grad_output)`` would compute it, but
    through ``torch.autograd.grad``: no ``.grad`` is touched.

    Names come from the caller's variables; source lines from graphs built
    under `recording()` (or under ``graphexplain trace``).
    """
    names = names_in_frame(sys._getframe(1))
    try:
        name = names.tensor(tensor) if isinstance(tensor, torch.Tensor) else ""
        graph, observed = capture_tensor(tensor, grad_output, names, call=f"graphexplain.explain({name})")
    except NotExplainable as problem:
        raise ExplainError(str(problem)) from None
    return Explanation.of(graph, observed)


def recording() -> Recorder:
    """A context manager that notes the source line of every op run inside
    it, so that `explain` can show it::

        with graphexplain.recording():
            loss = ((w * x - y) ** 2).mean()
        graphexplain.explain(loss)
    """
    return Recorder()
