"""Norms, variances and the normalization layers, in index notation
(`IndexFormula`): each row names one element of the result in terms of the
elements along the op's axis, and sympy derives the gradient from it.

Where a gradient is singular, the formula states torch's convention:

- a p-norm of a zero vector has gradient 0 (the norm is 0 where the sum of
  |x|**p is 0), and for p > 0 an element 0 adds nothing (|x|**p is 0 there,
  with derivative 0);
- the inf-norm is the mean of the elements that reach the largest |x|,
  so ties share the gradient equally;
- std is 0, with gradient 0, where var is 0.
"""

from typing import Tuple

from .kinds import IndexFormula


def p_norm(element: str, p: str) -> Tuple[Tuple[str, str], str]:
    """‖element‖_p along the axis, as (`where` names, formula); `element` is
    written with {i} for its index. `powers` is Σ|element|**p.

    >>> where, norm = p_norm("self[{i}]", "ord")
    >>> where[0][1]
    'Sum(Piecewise((Abs(self[i])**ord, Ne(self[i], 0) | (ord < 0)), (0, True)), i)'
    """
    def at(index: str) -> str:
        return element.format(i=index)

    value = at("i")
    # an element 0 adds 0 to the sum; for p < 0 it adds |0|**p = oo, as in torch
    powers = f"Sum(Piecewise((Abs({value})**{p}, Ne({value}, 0) | ({p} < 0)), (0, True)), i)"
    counted = f"Piecewise((1, Ne({value}, 0)), (0, True))"
    largest = f"Piecewise((1, Eq(Abs({value}), Maximum(Abs({at('l')}), l))), (0, True))"
    smallest = f"Piecewise((1, Eq(Abs({value}), Minimum(Abs({at('l')}), l))), (0, True))"
    norm = (
        f"Piecewise((Sum({counted}, i), Eq({p}, 0)),"
        f" (Sum(Abs({value})*{largest}, i)/Sum({largest}, i), Eq({p}, oo)),"
        f" (Sum(Abs({value})*{smallest}, i)/Sum({smallest}, i), Eq({p}, -oo)),"
        f" (Piecewise((powers**(1/{p}), powers > 0), (0, True)), True))"
    )
    return (("powers", powers),), norm


def _vector_norm(op: str, p: str, layout: str, params=()) -> IndexFormula:
    where, norm = p_norm("self[{i}]", p)
    return IndexFormula(op, "vector norm", norm, params=(p,) + params, defaults=((p, 2),), layout=layout,
                        where=where, branches_on=(p,))


_DIFFERENCE = p_norm("self[{i}] - other[{i}]", "p")
_ROW_DISTANCE = p_norm("x1[{i}] - x2[{i}]", "p")
_SLICE = p_norm("self[{i}]", "p")
_ROWS_OF_SELF = p_norm("row[{i}] - col[{i}]", "p")

_MEAN = ("mean", "Sum(self[i], i)/N")
_VAR = ("var", "Sum((self[i] - mean)**2, i)/(N - correction)")
_STD = "Piecewise((sqrt(var), var > 0), (0, True))"
_MOMENTS = ("correction", "dim", "keepdim")

# layer_norm, group_norm, batch_norm: (input - mean)/sqrt(var + eps) along the
# axis, var without correction, then weight and bias; the later outputs are
# the mean and 1/sqrt(var + eps) torch hands back.
_STATISTICS = (("mean", "Sum(input[i], i)/N"), ("var", "Sum((input[i] - mean)**2, i)/N"))
_NORMALIZED = "(input[k] - mean)/sqrt(var + eps)*weight[k] + bias[k]"
_AFFINE = ("weight", 1), ("bias", 0)
_LATER = ("mean", "1/sqrt(var + eps)")
# batch_norm outside training uses the running statistics: an affine map.
_BATCH_NORMALIZED = ("Piecewise(((input[k] - mean)/sqrt(var + eps), Eq(training, 1)),"
                     " ((input[k] - running_mean[k])/sqrt(running_var[k] + eps), True))*weight[k] + bias[k]")


def _batch_norm(op: str, training=None) -> IndexFormula:
    defaults = _AFFINE + ((("training", training),) if training is not None else ())
    return IndexFormula(
        op, "batch normalization", _BATCH_NORMALIZED, ("input", "weight", "bias"),
        ("eps", "training", "running_mean", "running_var"), defaults,
        layout="channels", where=_STATISTICS, outputs=_LATER, branches_on=("training",),
    )


ROWS = (
    _vector_norm("LinalgVectorNormBackward0", "ord", "dim", ("dim", "keepdim")),
    _vector_norm("NormBackward0", "p", "all"),
    _vector_norm("NormBackward1", "p", "dim", ("dim", "keepdim")),
    _vector_norm("NormBackward2", "p", "all"),
    _vector_norm("NormBackward3", "p", "dim", ("dim", "keepdim")),
    IndexFormula("DistBackward0", "p-norm of the difference", _DIFFERENCE[1], ("self", "other"), ("p",),
                 layout="all", where=_DIFFERENCE[0], branches_on=("p",)),
    IndexFormula("CdistBackward0", "p-norm distance between rows", _ROW_DISTANCE[1], ("x1", "x2"), ("p",),
                 layout="pairs", where=_ROW_DISTANCE[0], branches_on=("p",)),
    IndexFormula("PdistBackward0", "p-norm distance between each pair of rows", _ROWS_OF_SELF[1], ("self",),
                 ("p",), layout="condensed-pairs", where=_ROWS_OF_SELF[0], branches_on=("p",)),
    # renorm scales each slice along `dim` whose norm exceeds maxnorm down to
    # maxnorm; torch's forward adds 1e-7 to the norm it divides by.
    IndexFormula(
        "RenormBackward0", "renormalize slices",
        "Piecewise((self[k]*maxnorm/(norm + 1e-7), norm > maxnorm), (self[k], True))",
        params=("p", "dim", "maxnorm"), layout="all-but-dim",
        where=_SLICE[0] + (("norm", _SLICE[1]),), branches_on=("p",),
    ),
    IndexFormula("VarBackward0", "variance", "var", params=_MOMENTS, defaults=(("correction", 1),),
                 where=(_MEAN, _VAR)),
    IndexFormula("StdBackward0", "standard deviation", _STD, params=_MOMENTS, defaults=(("correction", 1),),
                 where=(_MEAN, _VAR)),
    IndexFormula("VarMeanBackward0", "variance and mean", "var", params=_MOMENTS,
                 defaults=(("correction", 1),), where=(_MEAN, _VAR), outputs=("mean",)),
    IndexFormula("StdMeanBackward0", "standard deviation and mean", _STD, params=_MOMENTS,
                 defaults=(("correction", 1),), where=(_MEAN, _VAR), outputs=("mean",)),
    IndexFormula(
        "NativeLayerNormBackward0", "layer normalization", _NORMALIZED, ("input", "weight", "bias"),
        ("normalized_shape", "result2"), _AFFINE, layout="trailing", where=_STATISTICS, outputs=_LATER,
    ),
    IndexFormula(
        "NativeGroupNormBackward0", "group normalization", _NORMALIZED, ("input", "weight", "bias"),
        ("eps",), _AFFINE, layout="groups", where=_STATISTICS, outputs=_LATER,
    ),
    _batch_norm("NativeBatchNormBackward0"),
    _batch_norm("NativeBatchNormLegitBackward0"),
    _batch_norm("NativeBatchNormLegitNoTrainingBackward0", training=0),
    _batch_norm("BatchNormWithUpdateBackward0", training=1),
    _batch_norm("BatchNormNoUpdateBackward0", training=0),
)
