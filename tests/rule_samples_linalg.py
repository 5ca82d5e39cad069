"""Samples for the linear-algebra rows (graphexplain/rules/linalg.py).

Inverses, solves and determinants are drawn on well-conditioned matrices
(R + n·I: diagonally dominant, far from singular), Cholesky factors as
triangles with a positive diagonal, and LU factors with fixed pivots. The
triangular solves take a full matrix, of which torch reads one triangle:
the derived gradient must land on that triangle only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from rule_sampling import BASIC, DTYPE, Domain, constant, real, sample


@dataclass(frozen=True)
class SquareMatrices(Domain):
    """Square matrices R + n·I, R uniform in [low, high]: well conditioned.
    `triangle` keeps only the "lower" or "upper" one (a Cholesky factor);
    `negative` flips the sign of the first row (a negative determinant)."""

    triangle: str = ""
    negative: bool = False

    def leaf(self, shape: Tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        size = shape[-1]
        values = torch.empty(shape, dtype=DTYPE).uniform_(self.low, self.high, generator=generator)
        values = values + size * torch.eye(size, dtype=DTYPE)
        if self.triangle:
            values = values.tril() if self.triangle == "lower" else values.triu()
        if self.negative:
            values[..., 0, :] *= -1
        return values.requires_grad_(True)


WELL = SquareMatrices(-1.0, 1.0)


def well(*shape: int):
    return WELL, shape


def lower(*shape: int):
    return SquareMatrices(-1.0, 1.0, triangle="lower"), shape


def upper(*shape: int):
    return SquareMatrices(-1.0, 1.0, triangle="upper"), shape


PIVOTS = torch.tensor([2, 3, 3], dtype=torch.int32)  # LAPACK's: row i swapped with row pivots[i] - 1
BATCH_PIVOTS = torch.tensor([[3, 2, 3], [1, 3, 3]], dtype=torch.int32)
CLONE_WEIGHT = constant(3, 3, seed=11)
# A right-hand side that needs no gradient: torch keeps the solution, not B,
# so B is recovered from the result (Note [an operand recovered from the result]).
RIGHT_HAND_SIDE = constant(3, 2, seed=12)


def both_outputs_of_triangular_solve(b, a, **options):
    solution, clone = torch.triangular_solve(b, a, **options)
    return solution.sum() + (clone * CLONE_WEIGHT).sum()


def both_outputs_of_slogdet(a):
    sign, logabsdet = torch.linalg.slogdet(a)
    return (sign * 3).sum() + logabsdet.sum()


SAMPLES = {
    # --- products -----------------------------------------------------------------
    "MvBackward0": {
        "vector-times-matrix": sample(lambda v, m: torch.mv(m.t(), v), v=real(2), m=real(2, 3)),
    },
    "VdotBackward0": {BASIC: sample(torch.vdot, x=real(4), y=real(4))},
    "BaddbmmBackward0": {
        BASIC: sample(torch.baddbmm, b=real(2, 3, 5), x=real(2, 3, 4), y=real(2, 4, 5)),
        "scaled": sample(lambda b, x, y: torch.baddbmm(b, x, y, beta=0.5, alpha=2.0),
                         b=real(2, 3, 5), x=real(2, 3, 4), y=real(2, 4, 5)),
        "bias-row": sample(torch.baddbmm, b=real(5), x=real(2, 3, 4), y=real(2, 4, 5)),
        "bias-matrix": sample(torch.baddbmm, b=real(3, 5), x=real(2, 3, 4), y=real(2, 4, 5)),
    },
    "AddbmmBackward0": {
        BASIC: sample(torch.addbmm, b=real(3, 5), x=real(2, 3, 4), y=real(2, 4, 5)),
        "scaled": sample(lambda b, x, y: torch.addbmm(b, x, y, beta=0.6, alpha=0.2),
                         b=real(3, 5), x=real(3, 3, 4), y=real(3, 4, 5)),
        "bias-scalar": sample(torch.addbmm, b=real(), x=real(2, 3, 4), y=real(2, 4, 5)),
    },
    "AddmvBackward0": {
        BASIC: sample(torch.addmv, b=real(3), m=real(3, 4), v=real(4)),
        "scaled": sample(lambda b, m, v: torch.addmv(b, m, v, beta=0.2, alpha=0.6), b=real(3), m=real(3, 4), v=real(4)),
        "bias-scalar": sample(torch.addmv, b=real(1), m=real(3, 4), v=real(4)),
    },
    "AddrBackward0": {
        BASIC: sample(torch.addr, b=real(3, 4), u=real(3), v=real(4)),
        "scaled": sample(lambda b, u, v: torch.addr(b, u, v, beta=0.6, alpha=0.2), b=real(3, 4), u=real(3), v=real(4)),
        "bias-scalar": sample(torch.addr, b=real(), u=real(3), v=real(4)),
    },
    "TraceBackward0": {
        BASIC: sample(torch.trace, x=real(3, 3)),
        "wide": sample(torch.trace, x=real(2, 4)),
        "tall": sample(torch.trace, x=real(4, 2)),
    },
    "LinalgCrossBackward0": {
        BASIC: sample(torch.linalg.cross, a=real(3), b=real(3)),
        "rows": sample(torch.linalg.cross, a=real(4, 3), b=real(4, 3)),
        "dim": sample(lambda a, b: torch.linalg.cross(a, b, dim=1), a=real(2, 3, 4), b=real(2, 3, 4)),
        "broadcast": sample(torch.linalg.cross, a=real(1, 3), b=real(5, 3)),
        "cross": sample(lambda a, b: torch.cross(a, b, dim=0), a=real(3, 2), b=real(3, 2)),
    },
    # --- inverses and solves ----------------------------------------------------------
    "LinalgInvExBackward0": {
        BASIC: sample(torch.linalg.inv, a=well(3, 3)),
        "inverse": sample(torch.inverse, a=well(3, 3)),
        "inv_ex": sample(lambda a: torch.linalg.inv_ex(a).inverse, a=well(3, 3)),
        "batched": sample(torch.linalg.inv, a=well(2, 3, 3)),
    },
    "LinalgSolveExBackward0": {
        BASIC: sample(torch.linalg.solve, a=well(3, 3), b=real(3, 2)),
        "vector": sample(torch.linalg.solve, a=well(3, 3), b=real(3)),
        "right": sample(lambda a, b: torch.linalg.solve(a, b, left=False), a=well(3, 3), b=real(2, 3)),
        "batched": sample(torch.linalg.solve, a=well(2, 3, 3), b=real(2, 3, 2)),
        "batch-broadcast": sample(torch.linalg.solve, a=well(2, 3, 3), b=real(3, 2)),
        "solve_ex": sample(lambda a, b: torch.linalg.solve_ex(a, b).result, a=well(3, 3), b=real(3, 2)),
        "constant-b": sample(lambda a: torch.linalg.solve(a, RIGHT_HAND_SIDE), a=well(3, 3)),
    },
    "LinalgLuSolveBackward0": {
        BASIC: sample(lambda lu, b: torch.linalg.lu_solve(lu, PIVOTS, b), lu=well(3, 3), b=real(3, 2)),
        "adjoint": sample(lambda lu, b: torch.linalg.lu_solve(lu, PIVOTS, b, adjoint=True), lu=well(3, 3), b=real(3, 2)),
        "right": sample(lambda lu, b: torch.linalg.lu_solve(lu, PIVOTS, b, left=False), lu=well(3, 3), b=real(2, 3)),
        "right-adjoint": sample(lambda lu, b: torch.linalg.lu_solve(lu, PIVOTS, b, left=False, adjoint=True),
                                lu=well(3, 3), b=real(2, 3)),
        "batched": sample(lambda lu, b: torch.linalg.lu_solve(lu, BATCH_PIVOTS, b), lu=well(2, 3, 3), b=real(2, 3, 2)),
        "constant-b": sample(lambda lu: torch.linalg.lu_solve(lu, PIVOTS, RIGHT_HAND_SIDE, adjoint=True), lu=well(3, 3)),
    },
    "LinalgSolveTriangularBackward0": {
        BASIC: sample(lambda a, b: torch.linalg.solve_triangular(a, b, upper=True), a=well(3, 3), b=real(3, 2)),
        "lower": sample(lambda a, b: torch.linalg.solve_triangular(a, b, upper=False), a=well(3, 3), b=real(3, 2)),
        "right": sample(lambda a, b: torch.linalg.solve_triangular(a, b, upper=False, left=False),
                        a=well(3, 3), b=real(2, 3)),
        "unitriangular": sample(lambda a, b: torch.linalg.solve_triangular(a, b, upper=True, unitriangular=True),
                                a=well(3, 3), b=real(3, 2)),
        "batched": sample(lambda a, b: torch.linalg.solve_triangular(a, b, upper=True), a=well(2, 3, 3), b=real(2, 3, 1)),
        "constant-b": sample(lambda a: torch.linalg.solve_triangular(a, RIGHT_HAND_SIDE, upper=False), a=well(3, 3)),
    },
    "TriangularSolveBackward0": {
        BASIC: sample(lambda b, a: torch.triangular_solve(b, a).solution, b=real(3, 2), a=well(3, 3)),
        "lower-transpose": sample(lambda b, a: torch.triangular_solve(b, a, upper=False, transpose=True).solution,
                                  b=real(3, 2), a=well(3, 3)),
        "unitriangular": sample(lambda b, a: torch.triangular_solve(b, a, unitriangular=True).solution,
                                b=real(3, 2), a=well(3, 3)),
        "both-outputs": sample(both_outputs_of_triangular_solve, b=real(3, 2), a=well(3, 3)),
        "constant-b": sample(lambda a: torch.triangular_solve(RIGHT_HAND_SIDE, a).solution, a=well(3, 3)),
    },
    "CholeskySolveBackward0": {
        BASIC: sample(torch.cholesky_solve, b=real(3, 2), factor=lower(3, 3)),
        "upper": sample(lambda b, u: torch.cholesky_solve(b, u, upper=True), b=real(3, 2), u=upper(3, 3)),
        "batched": sample(torch.cholesky_solve, b=real(2, 3, 2), factor=lower(2, 3, 3)),
        "constant-b": sample(lambda factor: torch.cholesky_solve(RIGHT_HAND_SIDE, factor), factor=lower(3, 3)),
    },
    "CholeskyInverseBackward0": {
        BASIC: sample(torch.cholesky_inverse, factor=lower(3, 3)),
        "upper": sample(lambda u: torch.cholesky_inverse(u, upper=True), u=upper(3, 3)),
    },
    "LinalgPinvBackward0": {
        BASIC: sample(torch.linalg.pinv, a=well(3, 3)),
        "tall": sample(torch.linalg.pinv, a=real(4, 2)),
        "wide": sample(torch.linalg.pinv, a=real(2, 4)),
        "pinverse": sample(torch.pinverse, a=real(4, 3)),
        "batched": sample(torch.linalg.pinv, a=real(2, 4, 3)),
    },
    # --- determinants -----------------------------------------------------------------
    "LinalgDetBackward0": {
        BASIC: sample(torch.linalg.det, a=well(3, 3)),
        "det": sample(torch.det, a=well(4, 4)),
        "batched": sample(torch.linalg.det, a=well(2, 3, 3)),
        "one-by-one": sample(torch.linalg.det, a=real(1, 1)),
    },
    "LinalgSlogdetBackward0": {
        BASIC: sample(lambda a: torch.linalg.slogdet(a).logabsdet, a=well(3, 3)),
        "negative": sample(lambda a: torch.linalg.slogdet(a).logabsdet,
                           a=(SquareMatrices(-1.0, 1.0, negative=True), (3, 3))),
        "both-outputs": sample(both_outputs_of_slogdet, a=well(2, 3, 3)),
    },
}
