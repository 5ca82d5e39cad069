"""Backward kernels as ops: what torch records when a gradient is itself
differentiated (``create_graph=True``: gradient penalties, PINN residuals,
Hessian-vector products).

Most backward formulas are made of ordinary ops, so a second-order graph
meets MulBackward0 or MmBackward0 again. A few activations compute their
gradient in one fused kernel, ``tanh_backward(grad_output, output)``, and
that kernel gets a node of its own. Its row states what the kernel
computes, in the words of derivatives.yaml (`grad_output`: the gradient the
first backward received, `output`: tanh's result, `self`: the activation's
input); sympy derives the node's local gradients from it as from any other
forward formula. Each kink is where the activation's own row puts it
(rules/activations.py), so the slope at 0 is torch's.
"""

from .kinds import Pointwise

ROWS = (
    Pointwise("TanhBackwardBackward0", "tanh's backward kernel", "grad_output*(1 - output**2)",
              ("grad_output", "output")),
    Pointwise("SigmoidBackwardBackward0", "sigmoid's backward kernel", "grad_output*output*(1 - output)",
              ("grad_output", "output")),
    # relu's backward is threshold_backward(grad, result, 0); self is relu's result there.
    Pointwise("ThresholdBackwardBackward0", "threshold's backward kernel",
              "Piecewise((grad_output, self > threshold), (0, True))", ("grad_output", "self"), ("threshold",)),
    Pointwise("LeakyReluBackwardBackward0", "leaky relu's backward kernel",
              "Piecewise((grad_output, self > 0), (negative_slope*grad_output, True))", ("grad_output", "self"),
              ("negative_slope",)),
)
