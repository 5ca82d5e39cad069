"""Matrix products, in matrix form: sympy's matrix calculus derives
∂L/∂X = ∂ tr(Gᵀ·result) / ∂X, where G is the upstream gradient.

``a @ b`` records the product its operands' dims call for: MmBackward0 for
two matrices, MvBackward0 for a matrix and a vector, DotBackward0 for two
vectors, BmmBackward0 for stacks of matrices.
"""

from .kinds import Matrix

ROWS = (
    Matrix("MmBackward0", "matrix product", "self*mat2", ("self", "mat2")),
    Matrix(
        "AddmmBackward0", "matrix product plus bias", "beta*self + alpha*mat1*mat2",
        ("self", "mat1", "mat2"), ("alpha", "beta"), broadcast=("self",),
    ),
    Matrix("MvBackward0", "matrix-vector product", "self*vec", ("self", "vec"), vectors=("vec",)),
    Matrix("DotBackward0", "dot product", "self.T*tensor", ("self", "tensor"), vectors=("self", "tensor")),
    Matrix("BmmBackward0", "batched matrix product", "self*mat2", ("self", "mat2")),
)
