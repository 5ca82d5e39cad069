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
    # Convention: the dtype torch's backward kernel writes its constants in,
    # where that is coarser than the tensors' (ATen's hardsigmoid_backward
    # multiplies by 1.0f / 6.0f, a float32 number, even for float64). The
    # error budget then counts in that dtype's eps (docs/verification.md).
    constants_in: str = ""
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
    are stacks of matrices (bmm): the formula holds for each matrix.

    A stack named in `across` is one wide matrix [X₁ … X_B], one named in
    `down` one tall matrix [Y₁; …; Y_B], so that Σ_b X_b·Y_b (addbmm) is
    the product of the two. A saved bool argument (`left`, `upper`) is a
    Python value in the formula: ``A.I*B if left else B*A.I``. Words that
    name matrices the node's numbers imply are Note [matrix constants] in
    derive/formula.py. An op with several outputs names them in `outputs`,
    and its forward gives each, separated by commas. A value named in
    `full_rank` must have full rank (pinv's closed form); where it has not,
    the node is left to torch. With `along` naming a saved dim, vectors lie
    along that dim rather than the last (linalg.cross)."""

    vectors: Tuple[str, ...] = ()
    broadcast: Tuple[str, ...] = ()
    across: Tuple[str, ...] = ()
    down: Tuple[str, ...] = ()
    outputs: Tuple[str, ...] = ()
    full_rank: Tuple[str, ...] = ()
    along: str = ""
    family: ClassVar[str] = "matrix"


@dataclass(frozen=True)
class IndexFormula(Rule):
    """result[k] in index notation, for ops whose every output element
    combines many input elements (softmax, norms, var, layer_norm, cumsum).

    `self[k]` is the element at position k of the axis the op works along,
    `Sum(term, i)` sums `term` over that whole axis (`Sum(term, (i, 0, k))`
    over its first k + 1 places), `N` is the axis' length; other dims are
    independent rows. A formula without k (logsumexp, var) is one number per
    row. `layout` names how the op's dims become rows and axis
    (`graphexplain.derive.indexed.LAYOUTS`); `where` names per-row pieces of
    the formula (``("mean", "Sum(input[i], i)/N")``); `outputs` are the
    formulas of the op's later outputs (var_mean's mean); params named in
    `branches_on` pick a branch of a Piecewise and are put in before sympy
    derives."""

    layout: str = "dim"
    where: Tuple[Tuple[str, str], ...] = ()
    outputs: Tuple[str, ...] = ()
    branches_on: Tuple[str, ...] = ()
    family: ClassVar[str] = "indexed"


@dataclass(frozen=True)
class Composite(Rule):
    """A fused kernel written out in smaller ops, each of which has a row of
    its own. `forward` names a function of `graphexplain.capture.composites`
    (the op as plain torch code: an LSTM layer as its gate equations step by
    step, attention as softmax(q·kᵀ·scale)·v); graphexplain runs it again on
    float64 copies of the tensors torch saved on the node (`inputs`, in
    next_functions order) with the saved `params` as keywords, and derives
    that graph as it derives a custom Function's forward. `outputs` names
    the node's outputs as torch saved them (``_saved_<name>``: the re-run
    must reproduce them); one the forward does not return (a kernel's
    workspace) is not differentiable."""

    outputs: Tuple[str, ...] = ()
    family: ClassVar[str] = "composite"


@dataclass(frozen=True)
class NotDifferentiable(Rule):
    """An op torch records but that has no gradient (it raises on backward)."""

    family: ClassVar[str] = "not-differentiable"


@dataclass(frozen=True)
class Convolution(Rule):
    """result[n, o, i] in index notation for a kernel slid over the spatial
    dims (conv1d/2d/3d and their transposes), written for one spatial dim:
    the indices named in `spatial` (the output's place i, the kernel's k)
    and the saved params in `per_dim` (stride, padding, dilation) stand for
    one of each per spatial dim, and the derivation repeats every index
    position that holds them once per dim. `K` is the kernel's size along a
    dim, `Cg` and `Og` the input's and the output's channels per group. An
    element read outside its tensor, or at a fractional place, is 0: zero
    padding, and a transposed convolution's input spread out by the stride.
    `transposed_forward` is the forward when the saved `transposed` is true."""

    spatial: Tuple[str, ...] = ()
    per_dim: Tuple[str, ...] = ()
    transposed_forward: str = ""
    family: ClassVar[str] = "convolution"
