"""The derivation stage: sympy derives every local gradient from the rule
table's forward formulas, and `derive` runs the chain rule with the graph's
numbers. The only stage that imports sympy."""

from .chain import derive, derive_node
from .jacobian import jacobians
from .replay import complete

__all__ = ["derive", "derive_node", "complete", "jacobians"]
