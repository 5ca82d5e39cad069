"""The Jacobian behind a vector-Jacobian product, for small non-scalar roots.

``z.backward(v)`` computes vᵀ·J without ever forming J. For a learner, J
itself is the point: row i is the gradient of z[i], which is the chain rule
run with the seed e_i (1 at i, 0 elsewhere). Each row is derived exactly as
the walkthrough's numbers are, so vᵀ·J = x.grad is a real check.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict

import numpy as np

from ..model import Graph
from .chain import derive

LIMIT = 64  # entries of J; larger Jacobians are not shown


def jacobians(graph: Graph, limit: int = LIMIT) -> Dict[int, np.ndarray]:
    """{leaf node id: J of shape (root elements, leaf elements)} for a graph
    with one non-scalar root, when J is small enough to print."""
    if len(graph.roots) != 1:
        return {}
    root = graph.roots[0]
    outputs = root.value.numel if root.value is not None else 1
    leaves = [leaf for leaf in graph.leaves if outputs * leaf.value.numel <= limit]
    if outputs <= 1 or not leaves or any(leaf.value.dtype.startswith("complex") for leaf in graph.leaves):
        return {}
    rows = {leaf.node: [] for leaf in leaves}
    for i in range(outputs):
        seed = np.zeros(root.value.shape)
        seed.reshape(-1)[i] = 1.0
        derived = derive(replace(graph, roots=(replace(root, grad_output=seed),)), symbolic=False)
        for leaf in derived.leaves:
            if leaf.node in rows and leaf.grad is None:
                del rows[leaf.node]  # a row that cannot be derived: no J at all, never a borrowed one
            elif leaf.node in rows:
                rows[leaf.node].append(np.asarray(leaf.grad).reshape(-1))
    return {node: np.array(matrix) for node, matrix in rows.items()}
