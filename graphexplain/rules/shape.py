"""Shape and indexing ops: the output is the input's elements, moved.

Each forward is a routing function of `graphexplain.derive.routing` applied
to `self`; sympy derives ∂result[k]/∂self[j] = δ(j, pi(k)) for all of them,
so the gradient routes each upstream element back where it came from.

The in-place forms (``squeeze_``, ``unsqueeze_``, ``t_``, ``transpose_``)
record nodes of their own; ``a @ b`` with a vector ``a`` records
SqueezeBackward4.
"""

from .kinds import Routing

ROWS = (
    Routing("ViewBackward0", "view", "reshape(self, result_shape)"),
    Routing("UnsafeViewBackward0", "view", "reshape(self, result_shape)"),
    Routing("ReshapeAliasBackward0", "reshape", "reshape(self, result_shape)"),
    Routing("ExpandBackward0", "expand (broadcast)", "broadcast_to(self, result_shape)"),
    Routing("SqueezeBackward0", "squeeze", "reshape(self, result_shape)"),
    Routing("SqueezeBackward1", "squeeze a dim", "reshape(self, result_shape)", params=("dim",)),
    Routing("SqueezeBackward2", "squeeze dims", "reshape(self, result_shape)", params=("dim",)),
    Routing("SqueezeBackward3", "squeeze in place", "reshape(self, result_shape)"),
    Routing("SqueezeBackward4", "squeeze a dim in place", "reshape(self, result_shape)", params=("dim",)),
    Routing("SqueezeBackward5", "squeeze dims in place", "reshape(self, result_shape)", params=("dim",)),
    Routing("UnsqueezeBackward0", "unsqueeze", "expand_dims(self, dim)", params=("dim",)),
    Routing("UnsqueezeBackward1", "unsqueeze in place", "expand_dims(self, dim)", params=("dim",)),
    Routing("TBackward0", "transpose", "transpose(self)"),
    Routing("TBackward1", "transpose in place", "transpose(self)"),
    Routing("TransposeBackward0", "transpose dims", "swapaxes(self, dim0, dim1)", params=("dim0", "dim1")),
    Routing("TransposeBackward1", "transpose dims in place", "swapaxes(self, dim0, dim1)", params=("dim0", "dim1")),
    Routing("PermuteBackward0", "permute dims", "permute(self, dims)", params=("dims",)),
    Routing("SelectBackward0", "select", "select(self, dim, index)", params=("dim", "index")),
    Routing("SliceBackward0", "slice", "slice(self, dim, start, end, step)", params=("dim", "start", "end", "step")),
)
