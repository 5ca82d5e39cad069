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

from .capture.intercept import plain_words
from .capture.naming import names_in_frame
from .capture.provenance import Recorder
from .capture.snapshot import PendingCall, backward_order, gradient_edge
from .explanation import Explanation


class ExplainError(ValueError):
    """The tensor cannot be explained; the message says why, in plain words."""


def explain(tensor: torch.Tensor, grad_output: Optional[torch.Tensor] = None) -> Explanation:
    """Explain and verify the gradient of `tensor` with respect to every leaf
    behind it, the way ``tensor.backward(grad_output)`` would compute it, but
    through ``torch.autograd.grad``: no ``.grad`` is touched.

    Names come from the caller's variables; source lines from graphs built
    under `recording()` (or under ``graphexplain trace``).
    """
    if not isinstance(tensor, torch.Tensor):
        raise ExplainError(f"explain() takes a torch.Tensor, not {type(tensor).__name__}.")
    if not tensor.requires_grad:
        raise ExplainError(plain_words("does not require grad and does not have a grad_fn", tensor))
    if grad_output is None and tensor.numel() != 1:
        raise ExplainError(plain_words("grad can be implicitly created only for scalar outputs", tensor))
    node, _ = gradient_edge(tensor)
    leaves = [n.variable for n in backward_order([node]) if type(n).__name__ == "AccumulateGrad"]
    names = names_in_frame(sys._getframe(1))
    pending = PendingCall([tensor], [grad_output], names, None, "explain()", None, leaves,
                          accumulates=False)
    pending.register_hooks()
    try:
        results = torch.autograd.grad([tensor], leaves, [grad_output] if grad_output is not None else None,
                                      retain_graph=True, allow_unused=True)
    finally:
        pending.remove_hooks()
    return Explanation.of(pending.finish(results))


def recording() -> Recorder:
    """A context manager that notes the source line of every op run inside
    it, so that `explain` can show it::

        with graphexplain.recording():
            loss = ((w * x - y) ** 2).mean()
        graphexplain.explain(loss)
    """
    return Recorder()
