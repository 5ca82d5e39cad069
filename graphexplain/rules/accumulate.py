"""Running sums and products, whole products, and nansum, in index
notation (`IndexFormula`): cumsum's result[k] sums self[i] for i from 0 to k
along the op's `dim`.

prod's gradient comes out of sympy as the product of all the other
elements, Product(self[i], (i, 0, j - 1))*Product(self[i], (i, j + 1, N - 1)),
so it is right where an element is 0, as torch's is.
"""

from .kinds import IndexFormula

ROWS = (
    IndexFormula("CumsumBackward0", "running sum", "Sum(self[i], (i, 0, k))", params=("dim",)),
    IndexFormula("CumprodBackward0", "running product", "Product(self[i], (i, 0, k))", params=("dim",)),
    IndexFormula("ProdBackward0", "product of all elements", "Product(self[i], i)", layout="all"),
    IndexFormula("ProdBackward1", "product along a dim", "Product(self[i], i)", params=("dim", "keepdim")),
    # nansum: a nan counts as 0, so its gradient is 0 there.
    IndexFormula("NansumBackward0", "sum, nan counted as 0",
                 "Sum(Piecewise((0, isnan(self[i])), (self[i], True)), i)", params=("dim", "keepdim")),
)
