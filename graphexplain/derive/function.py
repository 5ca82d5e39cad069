"""A node with a hand-written backward, derived from its own forward.

A custom autograd.Function (and any node whose forward is a composite of
torch ops) has no row; capture/recapture.py ran its forward again and kept
the graph as `node.inner` (a `model.InnerForward`). Here that graph is
derived like any other: the node's derived upstream becomes the seed of the
graph's roots, the chain rule runs through the forward's ops (each from its
row, by sympy), and what arrives at the graph's leaves is the gradient of
each of the node's inputs. Nothing of torch's backward is read, so the
hand-written backward's numbers, compared with these in verify.py, can be
wrong and be caught.

    >>> derive_function(node, upstream)   # doctest: +SKIP
    NodeDerivation(status='derived', title='Cube (custom Function)', ...)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np
import sympy as sp

from ..model import Graph, InnerForward, Node, numbers
from ..results import BREAKS, DERIVED, NO_RULE, NOT_DERIVED, UNREACHED, ChainStep, LocalGradient, NodeDerivation
from ..rules import lookup
from ..rules.kinds import Pointwise
from . import formula
from .symbolic import NotElementwise, _check_shapes, _constant, _simplified, _substitutions

SMALL = 24  # inner nodes, at most, for the forward and its derivative as formulas


def _not_derived(node: Node, upstream, title: str, status: str, note: str, upstream_budget=None) -> NodeDerivation:
    steps = tuple(ChainStep(operand.name, operand.label, upstream, None, None, "unknown")
                  for operand in node.operands if operand.requires_grad)
    return NodeDerivation(node.id, status, title, "", "", upstream, (), steps, note, upstream_budget)


def seeded(inner: InnerForward, upstreams, budgets) -> Tuple[Graph, Tuple[np.ndarray, ...]]:
    """The inner graph with each root seeded by the upstream of the node's
    output it is (zeros for an output no gradient reached), and the seeds' budgets."""
    graph = inner.graph
    seeds = [np.zeros(root.value.shape if root.value is not None else ()) for root in graph.roots]
    seed_budgets = [np.zeros(np.shape(seed)) for seed in seeds]
    for nr, index in enumerate(inner.outputs):
        if index is None or nr >= len(upstreams) or upstreams[nr] is None:
            continue
        seeds[index] = numbers(np.broadcast_to(upstreams[nr], np.shape(seeds[index])))
        if nr < len(budgets) and budgets[nr] is not None:
            seed_budgets[index] = np.broadcast_to(np.asarray(budgets[nr], dtype=np.float64), np.shape(seeds[index]))
    roots = tuple(replace(root, grad_output=seed) for root, seed in zip(graph.roots, seeds))
    return replace(graph, roots=roots), tuple(seed_budgets)


def _first_break(inner_graph: Graph, derivation) -> Optional[str]:
    """Why the forward's graph is not wholly derived: its first op without a usable rule."""
    for node, derived in zip(inner_graph.nodes, derivation.nodes):
        if derived.status in BREAKS:
            where = f" ({node.source.code})" if node.source is not None and node.source.code else ""
            return f"its forward uses {node.op}{where}: {derived.note or derived.status}"
    for node, derived in zip(inner_graph.nodes, derivation.nodes):
        if derived.status != DERIVED:
            return f"its forward's step {node.name} [{node.op}] could not be derived"
    return None


def derive_function(node: Node, upstream: Optional[np.ndarray], each_output=None, upstream_budget=None,
                    each_budget=None) -> NodeDerivation:
    """The node's inputs' gradients, from its forward's graph (module docstring)."""
    from .chain import derive  # (chain calls this module for such nodes)
    from .replay import complete

    inner = node.inner
    title = inner.title
    if inner.graph is None:
        return _not_derived(node, upstream, title, NO_RULE,
                            f"no symbolic rule, and its forward cannot be differentiated instead: {inner.reason}",
                            upstream_budget)
    if upstream is None:
        return _not_derived(node, upstream, title, UNREACHED, "no derived gradient reached it")
    upstreams = each_output if each_output is not None else (upstream,)
    budgets = each_budget if each_budget is not None else (upstream_budget,)
    graph, seed_budgets = seeded(inner, upstreams, budgets)
    graph = complete(graph)
    derivation = derive(graph, symbolic=False, root_budgets=seed_budgets)
    problem = _first_break(graph, derivation)
    if problem is not None:
        return _not_derived(node, upstream, title, NOT_DERIVED, problem, upstream_budget)
    steps, locals_ = [], []
    formulas, forward = _formulas(inner)
    ops = len([n for n in graph.nodes if not n.is_leaf])
    for position, operand in enumerate(node.operands):
        if not operand.requires_grad:
            continue
        index = inner.inputs[position] if position < len(inner.inputs) else None
        shape = operand.value.shape if operand.value is not None else np.shape(upstream)
        if index is None:  # the forward never uses it: nothing flows back to it
            grad, error = np.zeros(shape), np.zeros(shape)
        else:
            leaf = derivation.leaves[index]
            if leaf.grad is None:
                return _not_derived(node, upstream, title, NOT_DERIVED,
                                    f"the gradient of {operand.label} through its forward could not be derived",
                                    upstream_budget)
            grad, error = leaf.grad, leaf.budget
        words = f"the chain rule through its forward's {ops} op{'s' if ops != 1 else ''}"
        steps.append(ChainStep(operand.name, operand.label, upstream, None, np.reshape(grad, shape), "matrix",
                               None, words, None if error is None else np.reshape(error, shape)))
        if index is not None:
            leaf_node = graph.leaves[index].node
            expr = formulas.get(leaf_node)
            if expr is not None:
                name = graph.leaves[index].name
                locals_.append(LocalGradient(operand.name, operand.label, expr,
                                             expr if name == operand.label else f"{expr}, at {name} = {operand.label}"))
    shown = forward if forward is not None else f"{inner.owner}.forward({', '.join(o.label for o in node.operands)})"
    upstream_budget = np.zeros(np.shape(upstream)) if upstream_budget is None else np.asarray(upstream_budget)
    return NodeDerivation(node.id, DERIVED, title, f"{inner.owner}.forward", shown, numbers(upstream),
                          tuple(locals_), tuple(steps), upstream_budget=upstream_budget)


_FORMULAS: Dict[int, Tuple[InnerForward, Dict[int, str], Optional[str]]] = {}  # id → (inner, locals, forward)


def _formulas(inner: InnerForward) -> Tuple[Dict[int, str], Optional[str]]:
    """{inner leaf node: ∂output/∂input} and the forward as one formula,
    once per InnerForward (sympy's simplify is slow, and a node is derived
    again for each Jacobian row)."""
    kept = _FORMULAS.get(id(inner))
    if kept is None or kept[0] is not inner:
        if len(_FORMULAS) > 256:
            _FORMULAS.clear()
        kept = _FORMULAS[id(inner)] = (inner, *local_formulas(inner))
    return kept[1], kept[2]


def local_formulas(inner: InnerForward) -> Tuple[Dict[int, str], Optional[str]]:
    """Where the forward is a small pointwise chain with one output: the
    forward as one formula in its inputs (composed from the rows' forwards),
    and sympy's derivative of it for each input. Legendre's P3,
    0.5*(5*x**3 - 3*x), gives 3*(5*x**2 - 1)/2. Never written by hand."""
    graph = inner.graph
    if graph is None or len(graph.roots) != 1 or len(graph.nodes) > SMALL:
        return {}, None
    exprs: Dict[int, sp.Expr] = {}
    symbols: Dict[int, sp.Symbol] = {}
    try:
        for node in reversed(graph.nodes):  # producers first
            rule = lookup(node.op)
            if not isinstance(rule, Pointwise):
                return {}, None
            if node.is_leaf:
                exprs[node.id] = symbols[node.id] = sp.Symbol(node.name, real=True)
                continue
            _check_shapes(node, rule)
            operand_exprs = {o.name: exprs[o.producer] if o.producer is not None else _constant(o)
                             for o in node.operands}
            exprs[node.id] = formula.forward(rule).xreplace(_substitutions(rule, node, operand_exprs, 1))
        forward = _rational(exprs[graph.roots[0].node])
        gradients = {leaf: str(_simplified(sp.diff(forward, symbol))) for leaf, symbol in symbols.items()}
        return gradients, str(_simplified(forward))
    except (NotElementwise, KeyError, TypeError, ValueError, AttributeError):
        return {}, None


def _rational(expr: sp.Expr) -> sp.Expr:
    """0.5 as 1/2, so sympy's factoring reads as written: 3*(5*x**2 - 1)/2,
    not 7.5*(1.0*x**2 - 0.2)."""
    try:
        return sp.nsimplify(expr, rational=True)
    except (TypeError, ValueError):
        return expr
