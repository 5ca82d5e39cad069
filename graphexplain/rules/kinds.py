"""The kinds of row the rule table holds, and the vocabulary they share.

Vocabulary — written once, used by every row:

    self, other, mat1, mat2, target, ...
                the op's tensor operands, named as in PyTorch's
                ``tools/autograd/derivatives.yaml`` and listed in the order of
                ``grad_fn.next_functions``
    result      the op's output
    alpha, exponent, dim, keepdim, reduction, ...
                non-tensor arguments torch saved on the node
                (``grad_fn._saved_<name>``)
    N           how many elements a reduction combines into one output

A row states an op's **forward** formula in this vocabulary. It never states
a derivative: `graphexplain.derive` asks sympy for every local gradient.
The forward formula is a sympy-parsable string, so a row is plain data and
this package imports no sympy.

    >>> Pointwise("MulBackward0", "multiply", "self*other", ("self", "other")).family
    'pointwise'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Tuple


@dataclass(frozen=True)
class Rule:
    op: str  # grad_fn type name, the table's key
    title: str  # the op in plain words, for the walkthrough
    forward: str  # the forward formula in the vocabulary above
    inputs: Tuple[str, ...] = ("self",)  # operand names, next_functions order
    params: Tuple[str, ...] = ()  # read from grad_fn._saved_<name>
    defaults: Tuple[Tuple[str, Any], ...] = ()  # for a param torch saved as None
    family: ClassVar[str] = "rule"


@dataclass(frozen=True)
class Pointwise(Rule):
    """result[k] = forward(self[k], other[k], ...) with operands broadcast to
    the result's shape. A number operand (the 2 in ``y * 2``) is an operand
    like any other, so the row for ``y * 2`` is the row for ``y * other``."""

    family: ClassVar[str] = "pointwise"


@dataclass(frozen=True)
class Reduction(Rule):
    """result = reduce over some dims of an elementwise `forward`.

    `reduce` is "sum", "mean", or "reduction": read torch's `reduction`
    parameter (0 none, 1 mean, 2 sum) as nn losses do. `over` says which
    dims: "all", or "dim" for the saved ``dim``/``keepdim`` pair.
    """

    reduce: str = "sum"
    over: str = "all"
    family: ClassVar[str] = "reduction"


@dataclass(frozen=True)
class Routing(Rule):
    """result[k] = self[pi(k)]: the op only moves, copies or drops elements
    (views, reshapes, transposes, indexing). `forward` names a routing
    function of `graphexplain.derive.routing` and its saved arguments; the
    map pi comes from running that forward on the positions of self."""

    family: ClassVar[str] = "routing"


@dataclass(frozen=True)
class Matrix(Rule):
    """result = a matrix expression of the operands (``self*mat2`` is the
    matrix product). Operands named in `vectors` are 1-D tensors taken as
    column vectors; operands named in `broadcast` are broadcast to the
    result's shape (the bias of addmm). Operands with more than two dims
    are stacks of matrices (bmm): the formula holds for each matrix."""

    vectors: Tuple[str, ...] = ()
    broadcast: Tuple[str, ...] = ()
    family: ClassVar[str] = "matrix"


@dataclass(frozen=True)
class NotDifferentiable(Rule):
    """An op torch records but that has no gradient (it raises on backward)."""

    family: ClassVar[str] = "not-differentiable"
