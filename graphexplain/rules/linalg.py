"""Linear algebra, in matrix form: sympy's matrix calculus derives
∂L/∂X = ∂ tr(Gᵀ·result) / ∂X, where G is the upstream gradient (G·result
when the result is a number, such as a determinant).

``a @ b`` records the product its operands' dims call for: MmBackward0 for
two matrices, MvBackward0 for a matrix and a vector, DotBackward0 for two
vectors, BmmBackward0 for stacks of matrices.

The words of these rows, beyond the operands and saved arguments:

    A.I, A.T        the inverse and the transpose of A
    det(A)          the determinant; Trace(A) the trace
    triangle(A, upper, unitriangular)
                    the triangle of A that a triangular solve reads: A∘mask,
                    plus the identity when its diagonal is taken as ones
    lu(LU)          P·L·U, the matrix an LU factorisation stands for
    eye(A)          the identity cut to A's shape (a non-square trace)
    cross(a, b)     the cross product of two 3-vectors, element by element

Decompositions (QR, SVD, eigh, Cholesky, LU, lstsq, householder_product)
have no row: their results are not a closed-form formula of their input,
so there is nothing for sympy to differentiate. They are shown with
torch's numbers. So is the matrix exponential, whose power series sympy's
matrix calculus cannot differentiate, and nn.Bilinear's _trilinear
(TrilinearBackward0), a sum over dims of a product of unsqueezed operands:
index notation, not a matrix formula.
"""

from .kinds import IndexFormula, Matrix, Routing

BIAS = ("alpha", "beta")  # addmm's family: beta*self + alpha*(product)

ROWS = (
    # --- products -------------------------------------------------------------
    Matrix("MmBackward0", "matrix product", "self*mat2", ("self", "mat2")),
    Matrix(
        "AddmmBackward0", "matrix product plus bias", "beta*self + alpha*mat1*mat2",
        ("self", "mat1", "mat2"), BIAS, broadcast=("self",),
    ),
    Matrix("MvBackward0", "matrix-vector product", "self*vec", ("self", "vec"), vectors=("vec",)),
    Matrix("DotBackward0", "dot product", "self.T*tensor", ("self", "tensor"), vectors=("self", "tensor")),
    Matrix("VdotBackward0", "dot product", "self.T*other", ("self", "other"), vectors=("self", "other")),
    Matrix("BmmBackward0", "batched matrix product", "self*mat2", ("self", "mat2")),
    Matrix(
        "BaddbmmBackward0", "batched matrix product plus bias", "beta*self + alpha*batch1*batch2",
        ("self", "batch1", "batch2"), BIAS, broadcast=("self",),
    ),
    # Σ_b batch1[b]·batch2[b] is one product: [batch1[0] … batch1[B-1]] times
    # [batch2[0]; …; batch2[B-1]].
    Matrix(
        "AddbmmBackward0", "sum of matrix products plus bias", "beta*self + alpha*batch1*batch2",
        ("self", "batch1", "batch2"), BIAS, broadcast=("self",), across=("batch1",), down=("batch2",),
    ),
    Matrix(
        "AddmvBackward0", "matrix-vector product plus bias", "beta*self + alpha*mat*vec",
        ("self", "mat", "vec"), BIAS, broadcast=("self",), vectors=("vec",),
    ),
    Matrix(
        "AddrBackward0", "outer product plus bias", "beta*self + alpha*vec1*vec2.T",
        ("self", "vec1", "vec2"), BIAS, broadcast=("self",), vectors=("vec1", "vec2"),
    ),
    Matrix("TraceBackward0", "trace", "Trace(self) if self.is_square else Trace(eye(self).T*self)"),
    Matrix(
        "LinalgCrossBackward0", "cross product", "cross(self, other)", ("self", "other"), ("dim",),
        vectors=("self", "other"), along="dim",
    ),
    # --- inverses and solves ------------------------------------------------------
    Matrix("LinalgInvExBackward0", "matrix inverse", "A.I", ("A",)),
    Matrix("LinalgSolveExBackward0", "solve A·X = B", "A.I*B if left else B*A.I", ("A", "B"), ("left",)),
    Matrix(
        "LinalgLuSolveBackward0", "solve A·X = B from A's LU factorisation",
        "(lu(LU).T if adjoint else lu(LU)).I*B if left else B*(lu(LU).T if adjoint else lu(LU)).I",
        ("LU", "B"), ("pivots", "left", "adjoint"),
    ),
    Matrix(
        "LinalgSolveTriangularBackward0", "solve a triangular system",
        "triangle(self, upper, unitriangular).I*B if left else B*triangle(self, upper, unitriangular).I",
        ("self", "B"), ("upper", "left", "unitriangular"),
    ),
    # torch.triangular_solve(B, A) also hands back a copy of A.
    Matrix(
        "TriangularSolveBackward0", "solve a triangular system",
        "(triangle(A, upper, unitriangular).T if transpose else triangle(A, upper, unitriangular)).I*self, A",
        ("self", "A"), ("upper", "transpose", "unitriangular"), outputs=("solution", "cloned_coefficient"),
    ),
    # A Cholesky factor L stands for L·Lᵀ (Uᵀ·U when upper); torch's gradient
    # reads all of L, not only its triangle, and so does this formula.
    Matrix(
        "CholeskySolveBackward0", "solve A·X = B from A's Cholesky factor",
        "(input2.T*input2).I*self if upper else (input2*input2.T).I*self", ("self", "input2"), ("upper",),
    ),
    Matrix(
        "CholeskyInverseBackward0", "inverse from a Cholesky factor",
        "(self.T*self).I if upper else (self*self.T).I", ("self",), ("upper",),
    ),
    # The pseudo-inverse's closed form holds where the matrix has full rank;
    # torch may also drop small singular values (rtol), and then it does not.
    Matrix(
        "LinalgPinvBackward0", "pseudo-inverse",
        "self.I if self.is_square else ((self.T*self).I*self.T if self.rows > self.cols else self.T*(self*self.T).I)",
        ("self",), full_rank=("result",),
    ),
    # --- determinants ---------------------------------------------------------------
    # d det(A)/dA is the cofactor matrix, singular A included. torch agrees,
    # except where det(A) comes out exactly 0: there it hands back zeros.
    Matrix("LinalgDetBackward0", "determinant", "det(A)", ("A",)),
    Matrix(
        "LinalgSlogdetBackward0", "sign and log of the determinant's size", "sign(det(A)), log(Abs(det(A)))",
        ("A",), outputs=("sign", "logabsdet"),
    ),
    # L (unit lower triangle) and U (upper triangle) of a packed LU: the
    # elements are moved, the unit diagonal and the zeros come from no input.
    # P is not differentiable, so torch's node has L and U as its outputs.
    Routing("LuUnpackBackward0", "unpack L and U from a packed LU", "lu_unpack(LU_data)", ("LU_data",)),
    # nn.Bilinear's out[n, o] = Σ_ij x1[n, i]·W[o, i, j]·x2[n, j], as torch
    # computes it (aten::_trilinear): one product summed over the saved
    # sumdim, each operand placed among the dims by its expand list.
    IndexFormula("TrilinearBackward0", "bilinear form (sum of products of three)", "Sum(i1[i]*i2[i]*i3[i], i)",
                 ("i1", "i2", "i3"), ("expand1", "expand2", "expand3", "sumdim"), layout="trilinear"),
)
