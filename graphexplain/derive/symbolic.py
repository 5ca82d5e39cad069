"""A leaf's whole gradient as one formula, when the graph allows it.

When every op between the root and a leaf works element by element (and
reductions only collapse everything to the final number), the chain rule
composes into a formula in the leaf itself: for ``z = mean((x + 2)*(x + 2)*2)``
it is ``4*(x + 2)/3``. Each factor is a local gradient sympy derived from a
row; here they are multiplied along every path and simplified. Graphs with
matrix products or reshapes get numbers only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict

import numpy as np
import sympy as sp

from ..model import Graph, Node
from ..rules import lookup
from ..rules.kinds import Pointwise, Reduction
from . import arguments, cache, formula
from ..notation import is_name
from .naming import _number

SEED = "v"  # the vector of z.backward(v)


class NotElementwise(Exception):
    pass


def _constant(operand) -> sp.Expr:
    if is_name(operand.label):
        return sp.Symbol(operand.label, real=True)
    number = _number(operand.value.data) if operand.value is not None and operand.value.known else None
    if number is None:
        raise NotElementwise(operand.label)
    return number


def _check_shapes(node: Node, rule) -> None:
    result = node.output.shape if node.output is not None else None
    for operand in node.operands:
        if operand.requires_grad and operand.value is not None:
            if isinstance(rule, Pointwise) and operand.value.shape != result:
                raise NotElementwise("broadcast")
    if isinstance(rule, Reduction) and arguments.reduction_mode(rule, node) != "none":
        if rule.over != "all" or (result is not None and int(np.prod(result)) != 1):
            raise NotElementwise("partial reduction")


def _substitutions(rule, node: Node, operand_exprs: Dict[str, sp.Expr], count: int) -> Dict:
    names = formula.symbols(rule)
    table = {names[name]: expr for name, expr in operand_exprs.items()}
    params = arguments.saved(node)
    for name in rule.params + tuple(n for n, _ in rule.defaults):
        value = params.get(name, dict(rule.defaults).get(name))
        number = _number(value) if value is not None and np.size(value) == 1 else None
        if number is None and formula.symbols(rule)[name] in formula.forward(rule).free_symbols:
            raise NotElementwise(name)
        if number is not None:
            table[names[name]] = number
    table[names[formula.COUNT]] = sp.Integer(count)
    return table


@lru_cache(maxsize=1024)  # a training loop composes the same formula at every step: simplified once
def _simplified(expr: sp.Expr) -> sp.Expr:
    """The composed gradient in its shortest usual form. sympy.simplify on
    a Piecewise (huber, clamp) takes seconds; those are only factored."""
    if expr.has(sp.Piecewise):
        return sp.piecewise_fold(expr)
    return sp.factor(sp.simplify(expr))


def leaf_formulas(graph: Graph) -> Dict[int, str]:
    """{leaf node id: its gradient as a formula} for the leaves it exists for."""
    try:
        return _compose(graph)
    except (NotElementwise, KeyError, TypeError, ValueError):
        return {}


def _compose(graph: Graph) -> Dict[int, str]:
    forward_exprs: Dict[int, sp.Expr] = {}
    substitutions: Dict[int, Dict] = {}
    for node in reversed(graph.nodes):  # producers first
        rule = lookup(node.op)
        if not isinstance(rule, (Pointwise, Reduction)):
            raise NotElementwise(node.op)
        if node.is_leaf:
            forward_exprs[node.id] = sp.Symbol(node.name, real=True)
            substitutions[node.id] = {formula.symbols(rule)["self"]: forward_exprs[node.id]}
            continue
        _check_shapes(node, rule)
        operand_exprs = {
            o.name: forward_exprs[o.producer] if o.producer is not None else _constant(o)
            for o in node.operands
        }
        count = int(np.prod(node.operands[0].value.shape)) if node.operands[0].value is not None else 1
        table = _substitutions(rule, node, operand_exprs, count)
        substitutions[node.id] = table
        if isinstance(rule, Reduction) and arguments.reduction_mode(rule, node) != "none":
            forward_exprs[node.id] = sp.Symbol(node.name, real=True)  # one number from here on
        else:
            forward_exprs[node.id] = formula.forward(rule).xreplace(table)

    upstream: Dict[int, sp.Expr] = {}
    for root in graph.roots:
        seed = np.asarray(root.grad_output)
        upstream[root.node] = sp.Integer(1) if np.all(seed == 1) else sp.Symbol(SEED, real=True)
    formulas: Dict[int, str] = {}
    for node in graph.nodes:
        if node.id not in upstream:
            continue
        if node.is_leaf:
            whole = upstream[node.id]  # simplified once per expression, also across runs
            formulas[node.id] = cache.derived_text("leaf-formula", whole, lambda: str(_simplified(whole)))
            for operand in node.operands:  # a non-leaf input passes its gradient on, unchanged
                if operand.producer is not None:
                    upstream[operand.producer] = upstream.get(operand.producer, 0) + upstream[node.id]
            continue
        rule = lookup(node.op)
        mode = arguments.reduction_mode(rule, node) if isinstance(rule, Reduction) else ""
        for operand in node.operands:
            if operand.producer is None:
                continue
            local = formula.local_gradient(rule, operand.name, mode).xreplace(substitutions[node.id])
            upstream[operand.producer] = upstream.get(operand.producer, 0) + upstream[node.id] * local
    return formulas
