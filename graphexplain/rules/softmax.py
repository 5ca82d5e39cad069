"""Softmax and its relatives, in index notation (`IndexFormula`).

Each row names one element of the result along the op's `dim`: softmax's
result[k] is exp(self[k]) over the sum of exp along the dim, and sympy
derives ∂L/∂self[j] = ∂/∂self[j] Σ_k G[k]·result[k] from it (Note [index
notation] in `graphexplain.derive.indexed`). nll_loss picks each target's
class, which cross_entropy (log_softmax, then nll_loss) builds on.
"""

from .kinds import IndexFormula

# nll_loss: an element counts when it is its row's target class, weighted by
# its class's weight, unless the target is ignore_index.
_PICKED = "weight[i]*KroneckerDelta(cls[i], target[i])*(1 - KroneckerDelta(target[i], ignore_index))"
_NLL = (f"Piecewise((-Sum({_PICKED}*self[i], i)/Sum({_PICKED}, i), Eq(reduction, 1)),"
        f" (-Sum({_PICKED}*self[i], i), True))")


def _nll(op: str) -> IndexFormula:
    return IndexFormula(
        op, "negative log-likelihood of the target class", _NLL, ("self",),
        ("target", "weight", "reduction", "ignore_index"), (("weight", 1),),
        layout="classes", branches_on=("reduction",),
    )


ROWS = (
    IndexFormula("SoftmaxBackward0", "softmax", "exp(self[k])/Sum(exp(self[i]), i)", params=("dim",)),
    # _safe_softmax: a row that is all -inf gives 0, not nan.
    IndexFormula(
        "SafeSoftmaxBackward0", "softmax (0 where a row is all -inf)",
        "Piecewise((exp(self[k])/Sum(exp(self[i]), i), Maximum(self[l], l) > -oo), (0, True))", params=("dim",),
    ),
    IndexFormula("LogSoftmaxBackward0", "log-softmax", "self[k] - log(Sum(exp(self[i]), i))", params=("dim",)),
    IndexFormula("LogsumexpBackward0", "log of the sum of exp", "log(Sum(exp(self[i]), i))",
                 params=("dim", "keepdim")),
    IndexFormula("LogcumsumexpBackward0", "running log of the sum of exp",
                 "log(Sum(exp(self[i]), (i, 0, k)))", params=("dim",)),
    # The ops that compute softmax's and log_softmax's own backward, as ops.
    IndexFormula(
        "SoftmaxBackwardDataBackward0", "softmax's backward, as an op",
        "output[k]*(grad_output[k] - Sum(grad_output[i]*output[i], i))", ("grad_output", "output"), ("dim",),
    ),
    IndexFormula(
        "LogSoftmaxBackwardDataBackward0", "log-softmax's backward, as an op",
        "grad_output[k] - exp(output[k])*Sum(grad_output[i], i)", ("grad_output", "output"), ("dim",),
    ),
    _nll("NllLossBackward0"),
    _nll("NllLoss2DBackward0"),
)
