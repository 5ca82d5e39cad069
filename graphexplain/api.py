"""The library API: the same explanations as `graphexplain trace`, in Python.

    >>> import torch, graphexplain
    >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> graphexplain.explain(y).leaf("x").derived_grad.tolist()
    [2.0, 4.0]
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Optional

import torch

from .capture.intercept import plain_words
from .capture.naming import names_in_frame
from .capture.provenance import Recorder
from .capture.standalone import NotExplainable, capture_tensor
from .explanation import Explanation

_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


class ExplainError(NotExplainable):
    """The tensor cannot be explained; the message says why, in plain words."""


def _refusal(error: RuntimeError, tensor, grad_output, name: str) -> Optional[str]:
    """torch's refusal to compute the gradient, in plain words; None when the
    error is not torch's refusal (it began outside torch) and must surface
    as it is."""
    message = str(error)
    words = plain_words(message, tensor, name)
    if words is not None:
        return words
    root = name or "the tensor"
    if "Mismatch in shape" in message and isinstance(grad_output, torch.Tensor):
        return (f"grad_output has shape {tuple(grad_output.shape)}, but {root} has shape {tuple(tensor.shape)}: "
                f"the gradient given must have {root}'s own shape, one weight per element.")
    frames = traceback.extract_tb(error.__traceback__)
    if frames and frames[-1].filename.startswith(_TORCH):
        return f"torch refused to compute the gradient of {root}: {message}"
    return None


def explain(tensor: torch.Tensor, grad_output: Optional[torch.Tensor] = None) -> Explanation:
    """Explain and verify the gradient of `tensor` with respect to every leaf
    behind it, the way ``tensor.backward(grad_output)`` would compute it, but
    through ``torch.autograd.grad``: no ``.grad`` is touched.

    Names come from the caller's variables; source lines from graphs built
    under `recording()` (or under ``graphexplain trace``). Whatever torch
    refuses (a `grad_output` of the wrong shape, a graph already freed by a
    backward call) raises `ExplainError`, in plain words.
    """
    names = names_in_frame(sys._getframe(1))
    name = names.tensor(tensor) if isinstance(tensor, torch.Tensor) else ""
    try:
        graph, observed = capture_tensor(tensor, grad_output, names, call=f"graphexplain.explain({name})")
    except NotExplainable as problem:
        raise ExplainError(str(problem)) from None
    except RuntimeError as error:
        words = _refusal(error, tensor, grad_output, name)
        if words is None:
            raise
        raise ExplainError(words) from None
    return Explanation.of(graph, observed)


def recording() -> Recorder:
    """A context manager that notes the source line of every op run inside
    it, so that `explain` can show it::

        with graphexplain.recording():
            loss = ((w * x - y) ** 2).mean()
        graphexplain.explain(loss)
    """
    return Recorder()
