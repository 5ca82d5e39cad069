"""Matrix products, in matrix form: sympy's matrix calculus derives
∂L/∂X = ∂ tr(Gᵀ·result) / ∂X, where G is the upstream gradient."""

from .kinds import Matrix

ROWS = (
    Matrix("MmBackward0", "matrix product", "self*mat2", ("self", "mat2")),
    Matrix(
        "AddmmBackward0", "matrix product plus bias", "beta*self + alpha*mat1*mat2",
        ("self", "mat1", "mat2"), ("alpha", "beta"),
    ),
    Matrix("MvBackward0", "matrix-vector product", "self*vec", ("self", "vec"), vectors=("vec",)),
    Matrix("DotBackward0", "dot product", "self.T*tensor", ("self", "tensor"), vectors=("self", "tensor")),
)
