"""A graph captured without a backward call of the script's: for
`graphexplain.explain(tensor)` and `graphexplain trace --target NAME`.

Torch's numbers come from ``torch.autograd.grad`` with ``retain_graph=True``,
so the user's ``.grad`` fields and the graph itself are left as they were.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..model import Graph, Source
from ..observed import Observed
from .intercept import ours, plain_words
from .naming import Names
from .provenance import Recorder
from .snapshot import PendingCall
from .subgraph import backward_order, gradient_edge


class NotExplainable(ValueError):
    """The tensor has no graph to explain; the message says why."""


def capture_tensor(tensor, grad_output: Optional[torch.Tensor], names: Names,
                   recorder: Optional[Recorder] = None, call: str = "explain()",
                   source: Optional[Source] = None) -> Tuple[Graph, Observed]:
    """The graph behind `tensor`, and torch's gradients at every node."""
    name = names.tensor(tensor) if isinstance(tensor, torch.Tensor) else ""
    if not isinstance(tensor, torch.Tensor):
        raise NotExplainable(f"{name or 'the value'} is a {type(tensor).__name__}, not a torch.Tensor.")
    if not tensor.requires_grad:
        raise NotExplainable(plain_words("does not require grad and does not have a grad_fn", tensor, name))
    if grad_output is None and tensor.numel() != 1:
        raise NotExplainable(plain_words("grad can be implicitly created only for scalar outputs", tensor, name))
    node, _ = gradient_edge(tensor)
    accumulators = [n for n in backward_order([node]) if type(n).__name__ == "AccumulateGrad"]
    leaves = [n.variable for n in accumulators]
    pending = PendingCall([tensor], [grad_output], names, recorder, call, source, leaves, accumulates=False,
                          input_edges=[(n, 0) for n in accumulators])
    pending.register_hooks()
    try:
        with ours():  # under `graphexplain trace`, explain() is no backward call of the script's
            results = torch.autograd.grad([tensor], leaves, [grad_output] if grad_output is not None else None,
                                          retain_graph=True, allow_unused=True)
    finally:
        pending.remove_hooks()
    return pending.finish(results)
