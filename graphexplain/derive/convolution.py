"""Rows for convolutions (`Convolution`): sympy differentiates the forward in
index notation, numpy adds up the vector-Jacobian product over index grids.

Note [a convolution's local gradient]
The row states result[n, o, i] for one spatial dim; the derivation first
repeats its spatial indices and per-dim params once per spatial dim
(`expanded`: conv2d's i, k become i, j and k, l). sympy then differentiates
the whole forward with respect to an element X[q0, q1, ...] of an operand,
and the Sum comes back as

    ∂result[n, o, i, j]/∂X[q] = Σ_S coefficient · Π_m KroneckerDelta(q_m, B_m)

over the summed indices S (c, k, l), where B is the place in X that the
term read (weight's B is (o, c, k, l); input's is (n, floor(o/Og)·Cg + c,
i·stride + k·dilation − padding, ...)). Nothing in it is written by hand:
the coefficient and the places B are read off sympy's derivative. The
walkthrough states it as ∂result[n, o, i, j]/∂X[B] = coefficient, and the
vector-Jacobian product is

    ∂L/∂X[q] = Σ over the result's places and S of G[n, o, i, j] · coefficient, where B = q

which numpy evaluates as matrix products, one kernel offset at a time,
with the index maps B and the coefficient's element reads lambdified from
sympy's own index expressions (Note [the kernel's offsets, one at a time]).
A term whose B lies outside X, or whose element read does, is 0 (zero
padding). A term of a shape the offsets cannot take goes over the grid of
all the indices instead, each term to its place with np.bincount, cut into
blocks of at most BLOCK elements (Note [blocks of the grid]).

Note [whole places]
A transposed convolution reads its input at (i + padding − k·dilation)/stride,
a whole place only where stride divides it; elsewhere the term is 0 (the
input spread out by the stride, zeros between). Index arithmetic is done in
float64 on integers below 2**31, exact but for the division: a place is
whole where it lies within WHOLE of an integer, and floor(o/Og) is floor of
o/Og + WHOLE. A true fraction p/q (q at most a few thousand) is further than
that from every integer, and float64's error on o/Og is far below it.

Note [blocks of the grid]
The grid holds one element per (result element, summed index): for a
conv2d of 16 → 32 channels, 3×3, on 64×64 with a batch of 8, 8·32·64·64·16·9
= 150 million. It is cut along its leading axes (batch, then channels, ...)
into blocks of at most BLOCK elements, so memory stays near 100 MB whatever
the layer; each block is one vectorised pass.

Note [TF32 on CUDA]
On CUDA, torch runs float32 convolutions in TF32 unless
torch.backends.cudnn.allow_tf32 is turned off (it is on by default): each
product's operands are rounded to a 10-bit mantissa, the sums stay in
float32. A float32 node on a CUDA device is therefore allowed, on top of
its float32 rounding, 2·eps(TF32) of the term magnitude (one rounding per
factor), once per term: not per addition, so a wrong gradient still shows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import sympy as sp
from sympy.parsing.sympy_parser import parse_expr

from ..model import Node
from ..results import ChainStep, LocalGradient
from ..rules.kinds import Convolution
from . import arguments, budget, cache
from .naming import display_names

RESULT = "result"
UPSTREAM = "G"
OUT = ("n", "o")  # the result's batch and channel indices; its spatial ones follow
SIZES = ("Cg", "Og")  # channels per group, of the input and of the result
# Each spatial index word's name in each spatial dim.
PER_DIM_NAMES = {"i": ("i", "j", "t"), "k": ("k", "l", "u")}
BLOCK = 1 << 20  # grid elements per block (Note [blocks of the grid])
WHOLE = 1e-6  # Note [whole places]
TF32_EPS = 2.0 ** -10  # Note [TF32 on CUDA]


class CannotEvaluate(ValueError):
    """The node lacks something the row needs (a value torch did not keep)."""


def _integer(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


def _spatial_words(rule: Convolution) -> Tuple[str, ...]:
    return rule.spatial + rule.per_dim


def _dim_name(word: str, dim: int, ndim: int) -> str:
    """conv2d's second copy of i is j; of stride, stride1."""
    if word in PER_DIM_NAMES and dim < len(PER_DIM_NAMES[word]):
        return PER_DIM_NAMES[word][dim]
    return word if ndim == 1 else f"{word}{dim}"


@lru_cache(maxsize=None)
def parsed(rule: Convolution, transposed: bool) -> sp.Expr:
    """The row's forward for one spatial dim, as sympy."""
    text = rule.transposed_forward if transposed and rule.transposed_forward else rule.forward
    table: Dict[str, sp.Basic] = {name: sp.IndexedBase(name, real=True) for name in rule.inputs}
    for name in OUT + ("c",) + rule.spatial + rule.params + SIZES + rule.per_dim:
        if name not in table:
            table[name] = _integer(name)
    table["floor"] = sp.floor
    return parse_expr(text, local_dict=table)


def _copies(rule: Convolution, ndim: int) -> List[Dict[sp.Symbol, sp.Symbol]]:
    """For each spatial dim, its names for the words that stand for one per dim."""
    return [{_integer(word): _integer(_dim_name(word, dim, ndim)) for word in _spatial_words(rule)}
            for dim in range(ndim)]


@lru_cache(maxsize=None)
def expanded(rule: Convolution, transposed: bool, ndim: int) -> sp.Expr:
    """The forward with every index position that holds a spatial word
    repeated once per spatial dim, and every Sum over one likewise.

    >>> from graphexplain.rules import TABLE
    >>> str(expanded(TABLE["ConvolutionBackward0"], False, 2)).replace("input", "x")  # doctest: +ELLIPSIS
    'bias[o] + Sum(x[n, Cg*floor(o/Og) + c, dilation0*k + i*stride0 - padding0, ...'
    """
    copies = _copies(rule, ndim)
    words = set(copies[0]) if copies else set()

    def per_dim(argument) -> list:
        if argument.free_symbols & words:
            return [argument.xreplace(copy) for copy in copies]
        return [argument]

    def expand(expr):
        if isinstance(expr, sp.Indexed):
            return expr.base[tuple(item for argument in expr.indices for item in per_dim(argument))]
        if isinstance(expr, sp.Sum):
            limits = []
            for limit in expr.limits:
                if limit[0] in words:
                    limits += [tuple(part.xreplace(copy) for part in limit) for copy in copies]
                else:
                    limits.append(tuple(limit))
            return sp.Sum(expand(expr.function), *limits)
        if not expr.args:
            return expr
        return expr.func(*(expand(argument) for argument in expr.args))

    return expand(parsed(rule, transposed))


def out_indices(rule: Convolution, ndim: int) -> Tuple[sp.Symbol, ...]:
    """n, o, then the result's place along each spatial dim (i, j, ...)."""
    (place, *_), copies = rule.spatial, _copies(rule, ndim)
    return tuple(_integer(name) for name in OUT) + tuple(copy[_integer(place)] for copy in copies)


@dataclass(frozen=True)
class Term:
    """One term of sympy's derivative (Note [a convolution's local gradient]):
    Σ over `limits` of coefficient · [the element of the operand at `place`]."""

    limits: Tuple[Tuple[sp.Symbol, sp.Expr, sp.Expr], ...]
    coefficient: sp.Expr
    place: Tuple[sp.Expr, ...]


@lru_cache(maxsize=None)
def derivative_terms(rule: Convolution, transposed: bool, ndim: int, operand: str) -> Tuple[Term, ...]:
    """sympy's ∂result[n, o, i, ...]/∂operand[q0, q1, ...], read as Terms.

    >>> from graphexplain.rules import TABLE
    >>> (term,) = derivative_terms(TABLE["ConvolutionBackward0"], False, 1, "weight")
    >>> term.place, term.coefficient
    ((o, c, k), input[n, Cg*floor(o/Og) + c, dilation*k + i*stride - padding])
    """
    forward = expanded(rule, transposed, ndim)
    rank = 1 if operand == "bias" else ndim + 2
    element = [sp.Dummy(f"q{m}", integer=True) for m in range(rank)]
    derivative = forward.diff(sp.IndexedBase(operand, real=True)[tuple(element)])
    terms = []
    for part in sp.Add.make_args(derivative):
        limits, body = ((), part) if not isinstance(part, sp.Sum) else (part.limits, part.function)
        for piece in sp.Add.make_args(sp.expand(body, deep=False)):  # the places as sympy wrote them
            if piece == 0:
                continue
            factors = sp.Mul.make_args(piece)
            deltas = [f for f in factors if isinstance(f, sp.KroneckerDelta)]
            coefficient = sp.Mul(*(f for f in factors if not isinstance(f, sp.KroneckerDelta)))
            place = []
            for q in element:
                delta = next((d for d in deltas if q in d.args), None)
                if delta is None:
                    raise CannotEvaluate(f"sympy's derivative with respect to {operand} is not a sum of "
                                         f"single elements: {piece}")
                place.append(delta.args[1] if delta.args[0] == q else delta.args[0])
            terms.append(Term(tuple(tuple(limit) for limit in limits), coefficient, tuple(place)))
    return tuple(terms)


# --- a node's numbers ------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """One node's convolution: the saved arguments, and the sizes the shapes give."""

    ndim: int
    transposed: bool
    numbers: Dict[sp.Symbol, int]  # every size word and per-dim param, by its symbol
    out_shape: Tuple[int, ...]
    shapes: Dict[str, Tuple[int, ...]]  # each operand's shape
    values: Dict[str, Optional[np.ndarray]]  # each operand's numbers, None where unknown
    groups: int
    saved: Dict[str, object]


def _per_dim(value, ndim: int) -> Tuple[int, ...]:
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return tuple(int(v) for v in value) * (ndim if len(value) == 1 else 1)


def geometry(rule: Convolution, node: Node, out_shape: Optional[Tuple[int, ...]] = None) -> Geometry:
    """The node's convolution, read from its saved arguments and shapes."""
    operands = {operand.name: operand for operand in node.operands}
    weight = operands.get("weight")
    if weight is None or weight.value is None:
        raise CannotEvaluate("the weight's shape is unknown")
    ndim = len(weight.value.shape) - 2
    if ndim < 1:
        raise CannotEvaluate(f"a weight of shape {weight.value.shape} is no convolution kernel")
    saved = arguments.saved(node)
    transposed = bool(saved.get("transposed", False))
    groups = int(saved.get("groups", 1) or 1)
    if out_shape is None:
        out_shape = node.output.shape if node.output is not None else None
    source = operands.get("input")
    if out_shape is None or source is None or source.value is None:
        raise CannotEvaluate("the input's or the result's shape is unknown")
    numbers = {_integer("groups"): groups, _integer("Cg"): source.value.shape[1] // groups,
               _integer("Og"): out_shape[1] // groups}
    copies = _copies(rule, ndim)
    for word in rule.per_dim:
        values = tuple(weight.value.shape[2:]) if word == "K" else _per_dim(saved.get(word, 0), ndim)
        for dim, copy in enumerate(copies):
            numbers[copy[_integer(word)]] = values[dim]
    shapes = {name: operand.value.shape for name, operand in operands.items() if operand.value is not None}
    values = {name: (operand.value.data if operand.value is not None and operand.value.known else None)
              for name, operand in operands.items()}
    return Geometry(ndim, transposed, numbers, tuple(out_shape), shapes, values, groups, saved)


def _put_in(expr: sp.Expr, where: Geometry) -> sp.Expr:
    """The node's numbers put in; with one group, floor(o/Og) is 0 (o < Og)."""
    if where.groups == 1:
        expr = expr.replace(lambda e: isinstance(e, sp.floor), lambda e: sp.Integer(0))
    return expr.xreplace({symbol: sp.Integer(value) for symbol, value in where.numbers.items()})


def _floor(x):
    return np.floor(np.asarray(x, dtype=np.float64) + WHOLE)  # Note [whole places]


_MODULES = [{"floor": _floor}, "numpy"]


def _places(functions, grid, shape) -> Tuple[List[np.ndarray], np.ndarray]:
    """Each index function on the grid, as ints, and where together they
    name an element of a tensor of `shape` (Note [whole places]). Each
    keeps the grid axes it depends on only, so most of this work is done
    on arrays far smaller than the grid."""
    places, inside = [], np.ones((1,) * len(grid), dtype=bool)
    for function, size in zip(functions, shape):
        value = np.asarray(function(*grid), dtype=np.float64)
        whole = np.rint(value)
        valid = (np.abs(value - whole) < WHOLE) & (whole >= 0) & (whole < size)
        places.append(np.where(valid, whole, 0).astype(np.int64))
        inside = inside & valid
    return places, inside


def _flat(places: List[np.ndarray], shape) -> np.ndarray:
    """The places as positions in the flattened tensor (C order)."""
    strides = np.cumprod((1,) + tuple(shape[:0:-1]))[::-1]
    flat = np.zeros((1,) * places[0].ndim, dtype=np.int64)
    for place, stride in zip(places, strides):
        flat = flat + place * int(stride)
    return flat


@dataclass(frozen=True)
class Sums:
    """One operand's vector-Jacobian product and its error budget."""

    gradient: np.ndarray  # Σ G · coefficient
    error: np.ndarray  # Σ budget(G)·|coefficient| + (terms + rounding)·Σ |G|·|coefficient|, in eps


def _blocks(axes: Sequence[np.ndarray]) -> Iterator[List[np.ndarray]]:
    """The grid's axes cut into blocks of at most BLOCK elements
    (Note [blocks of the grid])."""
    sizes = [len(axis) for axis in axes]

    def cut(level: int, fixed: List[np.ndarray]) -> Iterator[List[np.ndarray]]:
        rest = int(np.prod(sizes[level + 1:], dtype=np.int64))
        if rest * sizes[level] <= BLOCK or level == len(axes) - 1:
            step = max(1, BLOCK // max(rest, 1))
            for start in range(0, sizes[level], step):
                yield fixed + [axes[level][start:start + step]] + list(axes[level + 1:])
        else:
            for at in range(sizes[level]):
                yield from cut(level + 1, fixed + [axes[level][at:at + 1]])

    if not axes or 0 in sizes:
        return
    yield from cut(0, [])


def sums(rule: Convolution, where: Geometry, operand: str, upstream: np.ndarray,
         upstream_budget: np.ndarray, rounding: float) -> Sums:
    """∂L/∂operand (Note [a convolution's local gradient]) and its error
    budget in eps, Σ budget(G)·|J| + (terms + `rounding`)·Σ |G|·|J|: by
    whole-array products where the terms allow (Note [the kernel's offsets,
    one at a time]), else over the grid. The terms behind each element are
    counted first, so that each offset adds its share of the budget whole
    (Note [a convolution's budget, offset by offset])."""
    shape = where.shapes[operand]
    size = int(np.prod(shape, dtype=np.int64))
    out = out_indices(rule, where.ndim)
    gradient, count = np.zeros(size), np.zeros(size)
    laid, magnitude, carried = [], None, None
    for term in derivative_terms(rule, where.transposed, where.ndim, operand):
        plan = _plan(rule, where.transposed, where.ndim, operand, term)
        offsets = None
        if plan is not None:
            try:
                offsets = _offsets(plan, where, operand)
            except _NotWhole:
                offsets = None
        if offsets is not None:
            laid.append((plan, offsets))
            _count(offsets, count, shape)
            continue
        found = _on_the_grid(term, out, where, operand, upstream, upstream_budget)
        gradient += found[0]
        count += found[3]
        magnitude = found[1] if magnitude is None else magnitude + found[1]
        carried = found[2] if carried is None else carried + found[2]
    factor = np.maximum(count, 1)
    factor += rounding
    del count
    error = np.zeros(size) if magnitude is None else carried + factor * magnitude
    del magnitude, carried
    for plan, offsets in laid:
        _by_offsets(plan, offsets, where, operand, upstream, upstream_budget, factor, gradient, error)
    return Sums(gradient.reshape(shape), error.reshape(shape))


def _on_the_grid(term: Term, out, where: Geometry, operand: str, upstream: np.ndarray,
                 upstream_budget: np.ndarray) -> List[np.ndarray]:
    """One term's sums, element by element over the whole grid of indices,
    cut into blocks (Note [blocks of the grid]): the general way, for a term
    the offsets cannot take."""
    shape = where.shapes[operand]
    size = int(np.prod(shape, dtype=np.int64))
    total = [np.zeros(size) for _ in range(4)]
    limits = [(symbol, int(_put_in(low, where)), int(_put_in(high, where))) for symbol, low, high in term.limits]
    symbols = list(out) + [symbol for symbol, _, _ in limits]
    axes = [np.arange(n) for n in where.out_shape] + [np.arange(low, high + 1) for _, low, high in limits]
    reads = sorted(_put_in(term.coefficient, where).atoms(sp.Indexed), key=str)
    stand_ins = [sp.Dummy(f"read{k}") for k in range(len(reads))]
    coefficient = _put_in(term.coefficient, where).xreplace(dict(zip(reads, stand_ins)))
    value_of = sp.lambdify(stand_ins + symbols, coefficient, modules=_MODULES)
    size_of = sp.lambdify(stand_ins + symbols, budget.terms(coefficient), modules=_MODULES)
    read_places = []
    for read in reads:
        name = str(read.base.label)
        if where.values.get(name) is None:
            raise CannotEvaluate(f"the numbers of {name} are unknown (torch did not keep them)")
        read_places.append((name, [sp.lambdify(symbols, index, modules=_MODULES) for index in read.indices]))
    place = [sp.lambdify(symbols, _put_in(index, where), modules=_MODULES) for index in term.place]
    for block in _blocks(axes):
        grid = [axis.reshape([-1 if a == b else 1 for b in range(len(block))]) for a, axis in enumerate(block)]
        full = tuple(len(axis) for axis in block)
        targets, inside = _places(place, grid, shape)
        inside = np.broadcast_to(inside, full)
        values = []
        for name, functions in read_places:
            at, known = _places(functions, grid, where.values[name].shape)
            values.append(np.where(known, where.values[name][tuple(at)], 0.0))
        chosen = np.ix_(*block[:len(out)])
        tail = (1,) * len(limits)
        g = upstream[chosen].reshape(upstream[chosen].shape + tail)
        b = upstream_budget[chosen].reshape(g.shape)
        local = np.broadcast_to(value_of(*values, *grid), full)
        local_size = np.abs(np.broadcast_to(size_of(*[np.abs(v) for v in values], *grid), full))
        flat = np.broadcast_to(_flat(targets, shape), full)[inside]
        for at, contribution in enumerate((g * local, np.abs(g) * local_size, np.abs(b) * local_size)):
            total[at] += np.bincount(flat, weights=np.broadcast_to(contribution, full)[inside], minlength=size)
        total[3] += np.bincount(flat, minlength=size)
    return total


# --- whole-array evaluation, one kernel offset at a time ----------------------------------
#
# Note [the kernel's offsets, one at a time]
# Over the whole grid (Note [blocks of the grid]) a conv2d layer of a ResNet
# is some 10⁸ elements, each gathered and scattered on its own. The same
# sums are matrix products once the kernel's place (k, l, ...) is fixed:
# every index position of sympy's derivative then depends on one index
# alone, or on the result channel's group and the channel within it, and
#
#   weight: ∂L/∂weight[o, c, k, l] = Σ_{n, i, j} G[n, o, i, j]·input[n, ., map_k(i), map_l(j)]
#   input:  ∂L/∂input[n, ., map_k(i), map_l(j)] += Σ_o G[n, o, i, j]·weight[o, c, k, l]
#   bias:   ∂L/∂bias[o] = Σ_{n, i, j} G[n, o, i, j]
#
# are one gather, one (batched) matrix product over the group and one add
# into the operand for each offset. The index maps (map_k: which place of
# the input the result's place i reads at offset k) are sympy's own index
# expressions of the term, lambdified and evaluated on the index ranges;
# a place outside the tensor, or a fractional one of a transposed
# convolution (Note [whole places]), is left out of that offset's ranges,
# which is the zero padding. The result channel o is written g·Og + o_g
# (its group g, its place o_g within it), floor(o/Og) being g for every
# o_g < Og: that is what Og means. The error budget's magnitudes are the
# same products on absolute values, and the count of terms behind each
# element is the product of the summed ranges, added at the same places.
# The places depend on the sizes alone, so they are worked out once per
# layer's sizes (`_layout`); where an operand's places at an offset are
# evenly spaced along each index they are a strided view (a slice), read
# and added to without a copy, else fancy indexing (np.bincount where two
# terms land on one element). A term of another shape (a coefficient with several reads, an index
# that mixes two ranges after all) goes over the grid instead.

GROUP, WITHIN = _integer("g"), _integer("o_g")  # the result channel o = g·Og + o_g


class _NotWhole(Exception):
    """An index map the offsets cannot take (a position of two ranges that
    falls outside the tensor): the term goes over the grid."""


@dataclass(frozen=True)
class Indexer:
    """A tensor's index positions as functions of the labels and the sizes:
    for each position, the labels it depends on (their places in the
    plan's labels) and its function."""

    depends: Tuple[Tuple[int, ...], ...]
    functions: Tuple[object, ...]


@dataclass(frozen=True)
class Plan:
    """How one term is evaluated offset by offset."""

    labels: Tuple[sp.Symbol, ...]  # the grid's indices, the result channel split in g, o_g
    ranges: Tuple[Tuple[sp.Expr, sp.Expr], ...]  # each label's first and last value, in sizes
    offsets: Tuple[Tuple[sp.Expr, sp.Expr], ...]  # each kernel place's first and last value, in sizes
    params: Tuple[sp.Symbol, ...]  # the size words the functions take after the labels and offsets
    upstream: Indexer
    target: Indexer
    read: Optional[Tuple[str, Indexer]]  # the coefficient's one element read, if any
    value_of: object  # the coefficient, given the read element
    size_of: object  # its term magnitude (derive/budget.py), given |the read element|


def _by_group(expr: sp.Expr) -> sp.Expr:
    o, per_group = _integer(OUT[1]), _integer(SIZES[1])
    return expr.xreplace({sp.floor(o / per_group): GROUP}).xreplace({o: GROUP * per_group + WITHIN})


BATCH, SPATIAL = "N", "size"  # the result's sizes, as the plan's ranges name them


@lru_cache(maxsize=None)
def _plan(rule: Convolution, transposed: bool, ndim: int, operand: str, term: Term) -> Optional[Plan]:
    """The term's index maps, read off sympy's derivative and lambdified once
    (Note [the kernel's offsets, one at a time]); None for a term of
    another shape."""
    out = out_indices(rule, ndim)
    n, _, *places = out
    kernel = {copy[_integer(rule.spatial[1])] for copy in _copies(rule, ndim)} if len(rule.spatial) > 1 else set()
    offsets = tuple(limit for limit in term.limits if limit[0] in kernel)
    summed = tuple(limit for limit in term.limits if limit[0] not in kernel)
    labels = (n, GROUP, WITHIN) + tuple(places) + tuple(symbol for symbol, _, _ in summed)
    ranges = ((0, _integer(BATCH) - 1), (0, _integer("groups") - 1), (0, _integer(SIZES[1]) - 1)) + \
        tuple((0, _integer(f"{SPATIAL}{d}") - 1) for d in range(ndim)) + tuple((low, high) for _, low, high in summed)
    coefficient = _by_group(term.coefficient)
    reads = sorted(coefficient.atoms(sp.Indexed), key=str)
    if len(reads) > 1:
        return None
    stand_in = sp.Dummy("read")
    value = coefficient.xreplace({read: stand_in for read in reads})
    if value.free_symbols - {stand_in}:
        return None  # a coefficient that depends on the indices themselves
    positions = [tuple(_by_group(p) for p in out), tuple(_by_group(p) for p in term.place)] + \
        [tuple(read.indices) for read in reads]
    every = set().union(*(p.free_symbols for position in positions for p in position))
    params = tuple(sorted(every - set(labels) - {symbol for symbol, _, _ in offsets}, key=str))
    arguments_ = list(labels) + [symbol for symbol, _, _ in offsets] + list(params)

    def indexer(position) -> Indexer:
        depends = tuple(tuple(at for at, label in enumerate(labels) if label in p.free_symbols) for p in position)
        return Indexer(depends, tuple(sp.lambdify(arguments_, p, modules=_MODULES) for p in position))

    upstream, target, *read = [indexer(position) for position in positions]
    return Plan(labels, ranges, tuple((low, high) for _, low, high in offsets), params, upstream, target,
                (str(reads[0].base.label), read[0]) if reads else None,
                sp.lambdify([stand_in], value, modules=_MODULES),
                sp.lambdify([stand_in], budget.terms(value), modules=_MODULES))


@dataclass
class Position:
    """One index position at one offset: its places over the labels it
    depends on, and where they are whole places inside the tensor."""

    depends: Tuple[int, ...]
    places: np.ndarray
    valid: np.ndarray


def _evaluate(indexer: Indexer, full: List[np.ndarray], fixed: list, shape) -> List[Position]:
    """Each position's places over the labels' whole ranges (Note [whole places])."""
    found = []
    for depends, function, size in zip(indexer.depends, indexer.functions, shape):
        grid = [0] * len(full)
        for axis, at in enumerate(depends):
            grid[at] = full[at].reshape([-1 if other == axis else 1 for other in range(len(depends))])
        value = np.broadcast_to(np.asarray(function(*grid, *fixed), dtype=np.float64),
                                tuple(len(full[at]) for at in depends))
        whole = np.rint(value)
        valid = (np.abs(value - whole) < WHOLE) & (whole >= 0) & (whole < size)
        found.append(Position(depends, whole.astype(np.int64), valid))
    return found


def _keep(positions: List[Position], keep: List[np.ndarray]) -> bool:
    """Narrows each label to the values at which every position that
    depends on it alone names a place in its tensor; False where a position
    that depends on none names none."""
    for position in positions:
        if not position.depends:
            if not bool(position.valid):
                return False
        elif len(position.depends) == 1:
            keep[position.depends[0]] = keep[position.depends[0]] & position.valid
    return True


def _chosen(positions: List[Position], keep: List[np.ndarray], labels: List[int]):
    """The positions' places at the kept values, laid over `labels` for fancy
    indexing; _NotWhole where a position of two labels leaves its tensor."""
    arrays = []
    for position in positions:
        places, valid = position.places, position.valid
        if position.depends:
            chosen = np.ix_(*[keep[at] for at in position.depends])
            places, valid = places[chosen], valid[chosen]
        if not valid.all():
            raise _NotWhole()
        arrays.append(places.reshape([places.shape[position.depends.index(at)] if at in position.depends else 1
                                      for at in labels]))
    return tuple(arrays)


def _labels_of(positions: List[Position]) -> List[int]:
    return sorted({at for position in positions for at in position.depends})


def _injective(positions: List[Position], keep: List[np.ndarray]) -> bool:
    """Whether no two kept places of the target are the same element: each
    label in one position only, and each position's places distinct."""
    seen = [at for position in positions for at in position.depends]
    if len(seen) != len(set(seen)):
        return False
    for position in positions:
        if position.depends:
            places = position.places[np.ix_(*[keep[at] for at in position.depends])]
            if np.unique(places).size != places.size:
                return False
    return True


def _contract(a: np.ndarray, a_labels, b: np.ndarray, b_labels, out_labels):
    """Σ a·b over the labels the result lacks, as one (batched) matrix
    product; the labels both have and the result keeps are its batch.
    Returns the product and the result's labels it has, in their order."""
    a_labels, b_labels = list(a_labels), list(b_labels)
    for side in ("a", "b"):
        array, labels, other = (a, a_labels, b_labels) if side == "a" else (b, b_labels, a_labels)
        alone = tuple(at for at, label in enumerate(labels) if label not in other and label not in out_labels)
        if alone:
            array = array.sum(axis=alone)
            labels = [label for at, label in enumerate(labels) if at not in alone]
        if side == "a":
            a, a_labels = array, labels
        else:
            b, b_labels = array, labels
    size = {**dict(zip(a_labels, a.shape)), **dict(zip(b_labels, b.shape))}
    batch = [label for label in a_labels if label in b_labels and label in out_labels]
    inner = [label for label in a_labels if label in b_labels and label not in out_labels]
    a_free = [label for label in a_labels if label not in b_labels]
    b_free = [label for label in b_labels if label not in a_labels]

    def count(labels):
        return int(np.prod([size[label] for label in labels], dtype=np.int64))

    left = a.transpose([a_labels.index(label) for label in batch + a_free + inner]).reshape(
        count(batch), count(a_free), count(inner))
    right = b.transpose([b_labels.index(label) for label in batch + inner + b_free]).reshape(
        count(batch), count(inner), count(b_free))
    # numpy's matmul calls BLAS only on contiguous operands (else it loops in C, far slower)
    left, right = np.ascontiguousarray(left), np.ascontiguousarray(right)
    product = (left[0] @ right[0])[None] if len(left) == 1 else np.matmul(left, right)
    order = batch + a_free + b_free
    product = product.reshape([size[label] for label in order])
    kept = [label for label in out_labels if label in order]
    return product.transpose([order.index(label) for label in kept]), kept


@dataclass(frozen=True)
class Offset:
    """What one kernel offset adds, in places: it depends on the sizes only,
    so it is worked out once per layer's sizes and reused by every node of
    those sizes, and by the check on torch's upstream."""

    counted: np.ndarray  # the target's places that count terms (whatever they read)
    terms: float  # terms behind each of them
    flat: Optional[np.ndarray]  # the places that receive a product; None where nothing is read
    injective: bool  # no place twice
    target: Tuple[int, ...]  # the target's labels
    grid: Tuple[int, ...]  # their kept lengths
    given: Tuple[tuple, Tuple[int, ...]]  # the upstream's index and the labels of its axes
    read: Optional[Tuple[tuple, Tuple[int, ...]]]  # the read element's index and labels
    repeat: float  # labels summed that no tensor reads: each term again so many times
    counted_window: Optional[Tuple[tuple, Tuple[int, ...]]]  # `counted` as a strided view, where it is one
    window: Optional[Tuple[tuple, Tuple[int, ...]]]  # `flat` likewise


def _numbers(where: Geometry) -> Tuple[Tuple[str, int], ...]:
    numbers = {symbol.name: value for symbol, value in where.numbers.items()}
    numbers[BATCH] = where.out_shape[0]
    numbers.update({f"{SPATIAL}{d}": where.out_shape[2 + d] for d in range(where.ndim)})
    return tuple(sorted(numbers.items()))


@lru_cache(maxsize=256)
def _layout(plan: Plan, numbers: Tuple[Tuple[str, int], ...], out_shape, shape, read_shape) -> Tuple[Offset, ...]:
    """Each kernel offset's places (Note [the kernel's offsets, one at a time])."""
    named = dict(numbers)
    if any(p.name not in named for p in plan.params):
        raise _NotWhole()
    params = [named[p.name] for p in plan.params]
    table = {_integer(name): sp.Integer(value) for name, value in numbers}

    def value(expr) -> int:
        return int(sp.sympify(expr).xreplace(table))

    full = [np.arange(value(low), value(high) + 1) for low, high in plan.ranges]
    strides = np.cumprod((1,) + tuple(shape[:0:-1]))[::-1]
    reader = plan.read[1] if plan.read is not None else None
    found = []
    for offset in itertools.product(*(range(value(low), value(high) + 1) for low, high in plan.offsets)):
        fixed = list(offset) + params
        into = _evaluate(plan.target, full, fixed, shape)
        given = _evaluate(plan.upstream, full, fixed, out_shape)
        keep = [np.ones(len(axis), dtype=bool) for axis in full]
        # the terms behind each element count whatever they read (a zero of the padding too)
        if not _keep(into + given, keep) or not all(k.any() for k in keep):
            continue
        t_labels = _labels_of(into)
        counted_at = _chosen(into, keep, t_labels)
        counted = _flat_at(counted_at, t_labels, keep, strides)
        counted_window = _as_slices(_window(counted_at, t_labels))
        injective = _injective(into, keep)
        terms = float(np.prod([keep[at].sum() for at in range(len(full)) if at not in t_labels]))
        reads = _evaluate(reader, full, fixed, read_shape) if reader is not None else []
        if not _keep(reads, keep) or not all(k.any() for k in keep):
            found.append(Offset(counted, terms, None, injective, tuple(t_labels), (), ((), ()), None, 0.0,
                                counted_window, None))
            continue
        target_at = _chosen(into, keep, t_labels)
        flat = _flat_at(target_at, t_labels, keep, strides)
        g_at, g_labels = _window(_chosen(given, keep, _labels_of(given)), _labels_of(given))
        read = _window(_chosen(reads, keep, _labels_of(reads)), _labels_of(reads)) if reader is not None else None
        r_labels = read[1] if read is not None else ()
        unread = [at for at in range(len(full)) if at not in g_labels + r_labels + tuple(t_labels)]
        found.append(Offset(counted, terms, flat, injective, tuple(t_labels),
                            tuple(int(keep[at].sum()) for at in t_labels), (g_at, g_labels), read,
                            float(np.prod([keep[at].sum() for at in unread])), counted_window,
                            _as_slices(_window(target_at, t_labels))))
    return tuple(found)


def _as_slices(window):
    """The window where it is slices and constants alone (a view), else None."""
    index, _ = window
    return window if all(isinstance(part, (int, slice)) for part in index) else None


def _offsets(plan: Plan, where: Geometry, operand: str) -> Tuple[Offset, ...]:
    """The term's offsets at this node's sizes (`_layout`); _NotWhole where
    the offsets cannot take it."""
    read_name = plan.read[0] if plan.read is not None else None
    if read_name is not None and where.values.get(read_name) is None:
        raise CannotEvaluate(f"the numbers of {read_name} are unknown (torch did not keep them)")
    read_shape = tuple(where.values[read_name].shape) if read_name else ()
    return _layout(plan, _numbers(where), tuple(where.out_shape), tuple(where.shapes[operand]), read_shape)


def _count(offsets: Tuple[Offset, ...], count: np.ndarray, shape) -> None:
    """Adds the terms each offset puts behind each element of the operand."""
    for offset in offsets:
        if offset.counted_window is not None:
            count.reshape(shape)[offset.counted_window[0]] += offset.terms
        else:
            _add(count, offset.counted, offset.terms, offset.injective, count.size)


# Note [a convolution's budget, offset by offset]
# The budget of an element q is Σ budget(G)·|J| + (terms(q) + rounding)·Σ |G|·|J|
# (Note [error budget] in derive/budget.py), the sums over every offset's
# terms. terms(q) depends on the sizes alone and is counted before any
# product, so each offset adds its own share, P_b + (terms + rounding)·P_G,
# straight into the one budget array: P_b and P_G are one matrix product of
# the stacked [|G|, budget(G)] with |J|, not two, and the magnitude and the
# carried budget are never arrays of their own. It is the same sum, added in
# another order, which moves its last bits only; a budget's last bits do not
# matter (it is used times SAFETY = 2).
_STACK = -1  # the label of the stacked [|G|, budget(G)] axis


def _by_offsets(plan: Plan, offsets: Tuple[Offset, ...], where: Geometry, operand: str, upstream: np.ndarray,
                upstream_budget: np.ndarray, factor: np.ndarray, gradient: np.ndarray, error: np.ndarray) -> None:
    """Adds one term's gradient and budget into `gradient` and `error`, one
    kernel offset at a time (Note [the kernel's offsets, one at a time],
    Note [a convolution's budget, offset by offset]); `factor` is each
    element's terms + rounding."""
    shape = where.shapes[operand]
    size = gradient.size
    read_value = where.values[plan.read[0]] if plan.read is not None else None
    sizes = np.stack([np.abs(upstream), np.abs(upstream_budget)])
    abs_value = np.abs(read_value) if read_value is not None else None
    for offset in offsets:
        if offset.flat is None:
            continue
        g_at, g_labels = offset.given
        g = upstream[g_at]
        stacked = sizes[(slice(None),) + g_at] if all(isinstance(part, (int, slice)) for part in g_at) \
            else np.stack([sizes[0][g_at], sizes[1][g_at]])
        if offset.read is not None:
            r_at, r_labels = offset.read
            read, abs_read = read_value[r_at], abs_value[r_at]
        else:
            r_labels, read, abs_read = (), np.ones(()), np.ones(())
        local = np.broadcast_to(np.asarray(plan.value_of(read), dtype=np.float64), read.shape)
        local_size = np.broadcast_to(np.abs(np.asarray(plan.size_of(abs_read), dtype=np.float64)), read.shape)
        signed = _spread(offset, *_contract(g, g_labels, local, r_labels, offset.target))
        both, kept = _contract(stacked, (_STACK,) + tuple(g_labels), local_size, r_labels,
                               (_STACK,) + offset.target)
        magnitude, carried = (_spread(offset, part, kept[1:]) for part in both)
        if offset.window is not None:
            index, _ = offset.window
            gradient.reshape(shape)[index] += _window_order(offset, signed)
            share = _window_order(offset, carried) + factor.reshape(shape)[index] * _window_order(offset, magnitude)
            error.reshape(shape)[index] += share
        else:
            _add(gradient, offset.flat, signed.ravel(), offset.injective, size)
            share = carried.ravel() + factor[offset.flat] * magnitude.ravel()
            _add(error, offset.flat, share, offset.injective, size)


def _spread(offset: Offset, product: np.ndarray, kept) -> np.ndarray:
    """A product over the labels it kept, laid over the target's grid (and
    repeated for labels summed that no tensor reads)."""
    spread = np.broadcast_to(product.reshape([offset.grid[offset.target.index(at)] if at in kept else 1
                                              for at in offset.target]), offset.grid)
    return spread * offset.repeat if offset.repeat != 1 else spread


def _window(at, labels) -> Tuple[tuple, Tuple[int, ...]]:
    """An index for the places `at` (one index array per position, over
    `labels`), and the labels of the axes it gives: slices where each
    position is one label's evenly spaced places or a constant (a strided
    window, a view, no copy), else the index arrays themselves."""
    window, window_labels = [], []
    for places in at:
        varying = [axis for axis, length in enumerate(places.shape) if length > 1]
        flat = places.ravel()
        if not varying:
            window.append(int(flat[0]))
            continue
        step = int(flat[1] - flat[0]) if flat.size > 1 else 1
        if len(varying) > 1 or step < 1 or not np.all(np.diff(flat) == step) or labels[varying[0]] in window_labels:
            return tuple(at), tuple(labels)
        window.append(slice(int(flat[0]), int(flat[-1]) + 1, step))
        window_labels.append(labels[varying[0]])
    return tuple(window), tuple(window_labels)


def _window_order(offset: Offset, values: np.ndarray) -> np.ndarray:
    """Values laid over the offset's target labels, as the axes of its
    strided window (the window's labels; the others have length 1)."""
    _, window_labels = offset.window
    labels = offset.target
    squeezed = values.reshape([length for label, length in zip(labels, values.shape)
                               if label in window_labels or length != 1])
    present = [label for label, length in zip(labels, values.shape) if label in window_labels or length != 1]
    return squeezed.transpose([present.index(label) for label in window_labels])


def _add(total: np.ndarray, flat: np.ndarray, weights, injective: bool, size: int) -> None:
    """Adds each weight into its place; where no two places are the same,
    in place (bincount would go over the whole operand once per offset)."""
    if injective:
        total[flat] += weights
    else:
        total += np.bincount(flat, weights=np.broadcast_to(weights, flat.shape), minlength=size)


def _flat_at(at, labels, keep, strides) -> np.ndarray:
    """The target's places over its labels, as positions in its flattened numbers."""
    flat = np.zeros(tuple(int(keep[label].sum()) for label in labels), dtype=np.int64)
    for places, stride in zip(at, strides):
        flat += places * int(stride)
    return flat.ravel()


# --- the walkthrough's words -------------------------------------------------------------


def _words(rule: Convolution, node: Node, expr: sp.Basic) -> str:
    return cache.named_formula(expr, display_names(rule, node))


@dataclass(frozen=True)
class Sizes:
    """What the walkthrough's formulas read of a Geometry: a model's layers
    of the same sizes share them, made and printed once."""

    transposed: bool
    ndim: int
    groups: int
    items: Tuple[Tuple[sp.Symbol, int], ...]

    @property
    def numbers(self) -> Dict[sp.Symbol, int]:
        return dict(self.items)

    @classmethod
    def of(cls, where: Geometry) -> "Sizes":
        return cls(where.transposed, where.ndim, where.groups, tuple(sorted(where.numbers.items(), key=str)))


def local_gradient(rule: Convolution, where: Geometry, operand: str) -> sp.Expr:
    """∂result[n, o, i, ...]/∂operand[place] = coefficient, one per term, in the row's words."""
    return _stated_local(rule, Sizes.of(where), operand)


def vector_jacobian_product(rule: Convolution, where: Geometry, operand: str) -> sp.Expr:
    """Σ_{indices} G[n, o, i, ...]·coefficient, each into operand[place]."""
    return _stated_product(rule, Sizes.of(where), operand)


@lru_cache(maxsize=512)
def _stated_local(rule: Convolution, where: Sizes, operand: str) -> sp.Expr:
    out = sp.IndexedBase(RESULT, real=True)[out_indices(rule, where.ndim)]
    stated = []
    for term in derivative_terms(rule, where.transposed, where.ndim, operand):
        element = sp.IndexedBase(operand, real=True)[tuple(_put_in(p, where) for p in term.place)]
        stated.append(Stated(out, element, _put_in(term.coefficient, where)))
    return stated[0] if len(stated) == 1 else sp.Tuple(*stated)


@lru_cache(maxsize=512)
def _stated_product(rule: Convolution, where: Sizes, operand: str) -> sp.Expr:
    out = out_indices(rule, where.ndim)
    upstream = sp.IndexedBase(UPSTREAM, real=True)[out]
    shown = []
    for term in derivative_terms(rule, where.transposed, where.ndim, operand):
        place = tuple(_put_in(p, where) for p in term.place)
        fixed = {p for p in place if isinstance(p, sp.Symbol)}
        summed = [s for s in list(out) + [limit[0] for limit in term.limits] if s not in fixed]
        element = sp.IndexedBase(operand, real=True)[place]
        shown.append(Into(sp.Tuple(*summed), upstream * _put_in(term.coefficient, where), element))
    return shown[0] if len(shown) == 1 else sp.Add(*shown, evaluate=False)


class Stated(sp.Basic):
    """``∂result[n, o, i]/∂weight[o, c, k] = input[...]``."""

    def _sympystr(self, printer):
        out, element, value = self.args
        return f"∂{printer.doprint(out)}/∂{printer.doprint(element)} = {printer.doprint(value)}"


class Into(sp.Basic):
    """``Σ_{n, i} G[n, o, i]*input[...], each into weight[o, c, k]``."""

    def _sympystr(self, printer):
        summed, value, element = self.args
        over = ", ".join(printer.doprint(s) for s in summed)
        return f"Σ_{{{over}}} {printer.doprint(value)}, each into {printer.doprint(element)}"


def shown_forward(rule: Convolution, node: Node, out_shape=None) -> sp.Basic:
    """The forward with the node's numbers put in, and without a bias where there is none."""
    where = geometry(rule, node, out_shape)
    forward = _put_in(expanded(rule, where.transposed, where.ndim), where)
    if not has_bias(node):
        forward = forward.replace(lambda e: isinstance(e, sp.Indexed) and str(e.base.label) == "bias",
                                  lambda e: sp.Integer(0))
    return ReadingZero(forward, sp.Symbol("input", real=True), sp.true if where.transposed else sp.false)


class ReadingZero(sp.Basic):
    """The forward, and the convention it reads the input with:
    ``…, input read as 0 outside it (and at fractional places)``."""

    def _sympystr(self, printer):
        forward, source, transposed = self.args
        where = " and at fractional places" if transposed == sp.true else ""
        return f"{printer.doprint(forward)}, {printer.doprint(source)} read as 0 outside it{where}"


def has_bias(node: Node) -> bool:
    """Whether the convolution had a bias: torch saves its size, (0,) or
    none when there was none, and leaves the node no edge for it."""
    sizes = arguments.saved(node).get("bias_sym_sizes_opt")
    if sizes is not None:
        return tuple(sizes) not in ((), (0,))
    bias = next((o for o in node.operands if o.name == "bias"), None)
    return bias is not None and (bias.producer is not None or bias.requires_grad)


def describe(rule: Convolution, node: Node) -> str:
    """The kernel in words, for the picture: ``conv2d 3→6, 5×5, stride 1, pad 0``.

    A node the row cannot read gives "".
    """
    try:
        where = geometry(rule, node)
    except CannotEvaluate:
        return ""
    copies = _copies(rule, where.ndim)

    def per_dim(word: str) -> Tuple[int, ...]:
        return tuple(where.numbers[copy[_integer(word)]] for copy in copies)

    def joined(values: Tuple[int, ...]) -> str:
        return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))

    channels_in = where.shapes["input"][1]
    parts = [f"conv{'_transpose' if where.transposed else ''}{where.ndim}d {channels_in}→{where.out_shape[1]}",
             "×".join(map(str, per_dim("K"))), f"stride {joined(per_dim('stride'))}",
             f"pad {joined(per_dim('padding'))}"]
    if any(d != 1 for d in per_dim("dilation")):
        parts.append(f"dilation {joined(per_dim('dilation'))}")
    if where.groups != 1:
        parts.append(f"groups {where.groups}")
    output_padding = _per_dim(where.saved.get("output_padding", 0), where.ndim)
    if where.transposed and any(output_padding):
        parts.append(f"output padding {joined(output_padding)}")
    return ", ".join(parts)


def vocabulary(rule: Convolution) -> set:
    """The words the row's forwards use, without indices and sizes.

    >>> from graphexplain.rules import TABLE
    >>> sorted(vocabulary(TABLE["ConvolutionBackward0"]))
    ['bias', 'dilation', 'input', 'padding', 'stride', 'weight']
    """
    words = set()
    for transposed in (False, True):
        expr = parsed(rule, transposed)
        words |= {s.name for s in expr.free_symbols if isinstance(s, sp.Symbol)}
        words |= {str(e.base.label) for e in expr.atoms(sp.Indexed)}
    return words - set(OUT) - {"c"} - set(rule.spatial) - set(SIZES) - {"K"}


# --- the family --------------------------------------------------------------------------


def steps(rule: Convolution, node: Node, upstream: np.ndarray, upstream_budget: np.ndarray, eps: float,
          each_output=None, each_budget=None):
    """Each operand's gradient, by the derived vector-Jacobian product, with
    its error budget in units of eps (Note [error budget] in derive/budget.py):
    Σ|J|·budget(G) + (terms + 2)·Σ|J|·|G|, the rounding of a dot product of
    that many terms, plus TF32's where it applies (Note [TF32 on CUDA])."""
    upstream = np.asarray(upstream, dtype=np.float64)
    where = geometry(rule, node, np.shape(upstream))
    if len(where.out_shape) != where.ndim + 2:
        raise CannotEvaluate(f"an upstream of shape {where.out_shape} for a conv{where.ndim}d")
    upstream_budget = np.broadcast_to(np.asarray(upstream_budget, dtype=np.float64), upstream.shape)
    per_term = _tf32_steps(node, eps)
    locals_, chain = [], []
    for operand in node.operands:
        if not operand.requires_grad:
            continue
        if operand.name not in where.shapes:
            raise CannotEvaluate(f"the shape of {operand.label} is unknown")
        found = sums(rule, where, operand.name, upstream, upstream_budget, 2 + per_term)
        local = local_gradient(rule, where, operand.name)
        locals_.append(LocalGradient(operand.name, operand.label, cache.printed(local), _words(rule, node, local)))
        formula = _words(rule, node, vector_jacobian_product(rule, where, operand.name))
        chain.append(ChainStep(operand.name, operand.label, upstream, None, found.gradient, "matrix", None,
                               formula, found.error))
    return locals_, chain


def _tf32_steps(node: Node, eps: float) -> float:
    """Note [TF32 on CUDA]: the extra rounding of each term, in units of eps."""
    value = node.output
    if value is None or value.dtype != "float32" or not str(value.device).startswith("cuda"):
        return 0.0
    return 2 * TF32_EPS / eps


__all__ = ["steps", "shown_forward", "describe", "vocabulary", "derivative_terms", "expanded"]
