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


def intentional_gradient(why: str):
    """Mark a custom autograd.Function whose backward is meant to differ from
    its forward's derivative (a straight-through estimator, gradient
    reversal, clipping). A difference there is shown as intentional, with
    the numbers, and does not fail the run::

        @graphexplain.intentional_gradient("straight-through estimator")
        class RoundSTE(torch.autograd.Function): ...
    """
    def mark(function_class):
        function_class.graphexplain_intentional = str(why)
        return function_class
    return mark


_WEIGHTS_SEED = 20240607  # the fixed pseudo-random weighting of a non-scalar output


def _weights(output: torch.Tensor, position: int) -> torch.Tensor:
    """Fixed weights in [0.5, 1.5) for each element, drawn from a generator of
    our own (the script's random state is untouched): every element counts,
    and a backward that mixes elements up is seen."""
    generator = torch.Generator().manual_seed(_WEIGHTS_SEED + position)
    weights = torch.rand(tuple(output.shape), generator=generator, dtype=torch.float64) + 0.5
    return weights.to(dtype=output.dtype, device=output.device)


def check_function(function, *inputs, grad_output=None, **kwargs) -> Explanation:
    """Apply a custom autograd.Function to `inputs` and explain the result:
    its hand-written backward is checked against the derivative of its own
    forward, which graphexplain runs again on float64 copies.

        >>> explanation = graphexplain.check_function(Cube, torch.randn(3, requires_grad=True))  # doctest: +SKIP
        >>> explanation.status  # doctest: +SKIP
        'verified'

    The outputs are weighed into one number: by `grad_output` (one tensor,
    or one per output) when given, else by fixed pseudo-random weights. If
    no input requires grad, every floating-point input is made to.
    """
    return _check_function(function, inputs, grad_output, kwargs, names_in_frame(sys._getframe(1)))


def _check_function(function, inputs, grad_output, kwargs, names) -> Explanation:
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if tensors and not any(t.requires_grad for t in tensors):
        inputs = tuple(t.detach().clone().requires_grad_(True)
                       if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()) else t
                       for t in inputs)
        for original, made in zip(tensors, [t for t in inputs if isinstance(t, torch.Tensor)]):
            if names.tensor(original):
                names.tensors[id(made)] = names.tensor(original)
                names._keep.append(made)
    owner = getattr(function, "__name__", "the Function")
    with Recorder():
        result = function.apply(*inputs, **kwargs)
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        weights = list(grad_output) if isinstance(grad_output, (tuple, list)) else [grad_output] * len(outputs)
        terms = []
        for position, (output, weight) in enumerate(zip(outputs, weights)):
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                continue
            weight = weight if weight is not None else _weights(output, position)
            terms.append((output * weight).sum())
        if not terms:
            raise ExplainError(f"{owner}.apply returned no output that requires grad, so there is no backward "
                               "to check: give it an input with requires_grad=True.")
        total = terms[0] if len(terms) == 1 else torch.stack(terms).sum()
    for position, output in enumerate(outputs):
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            names.nodes.setdefault(id(output.grad_fn), f"{owner}(…)" if len(outputs) == 1 else f"{owner}(…)[{position}]")
            names._keep.append(output.grad_fn)
    names.tensors[id(total)] = "weighted"
    try:
        graph, observed = capture_tensor(total, None, names, call=f"graphexplain.check_function({owner})")
    except NotExplainable as problem:
        raise ExplainError(str(problem)) from None
    return Explanation.of(graph, observed)


def assert_function_correct(function, *inputs, grad_output=None, **kwargs) -> Explanation:
    """check_function, for a test: raises AssertionError, with a few readable
    lines about the first element that is wrong, unless every number was
    derived and agrees (a gradient marked intentional_gradient passes)."""
    explanation = _check_function(function, inputs, grad_output, kwargs, names_in_frame(sys._getframe(1)))
    problem = function_problem(explanation)
    if problem:
        raise AssertionError(problem)
    return explanation


def function_problem(explanation: Explanation) -> str:
    """What is wrong with the custom Functions in an explanation, in a few
    lines; empty when nothing is."""
    from .results import INTENTIONAL, MISMATCH, VERIFIED

    lines = []
    for step in explanation.steps:
        node, verified = step.node, step.verification
        if node.inner is None:
            continue
        if verified.status == MISMATCH and verified.reason:
            lines.append(verified.reason)
            for check in verified.checks:
                if check.status == MISMATCH and check.first_difference is None:
                    lines.append(f"  {check.what}: off by {check.max_abs_error:.4g}, more than rounding explains")
        elif verified.status not in (VERIFIED, INTENTIONAL, MISMATCH):
            why = step.derivation.note or verified.reason or verified.status
            lines.append(f"{node.inner.owner} could not be checked: {why}")
    if not lines and explanation.status == MISMATCH:
        node = explanation.first_mismatch()
        lines.append(f"the gradient disagrees with torch at {node.name} [{node.op}]" if node is not None else
                     "a leaf's gradient disagrees with torch")
    return "\n".join(lines)
