"""Ops whose numbers hold a choice torch made: a random draw (bernoulli,
normal), a saved mask (dropout's backward kernel) or a saved exponent
(frexp). The choice is a constant of the forward formula: it is what torch
drew or saved, and nothing of it is differentiated.

- bernoulli's sample is 1 where the uniform noise u torch drew lies below
  p, else 0: a step function of p, whose derivative sympy finds is 0, as
  torch's gradient is (torch keeps neither the noise nor a number p: the
  derivative needs neither);
- torch gives a normal sample no gradient in its mean or std (its
  derivatives.yaml writes zeros, rather than differentiating mean + std·ε
  for the noise ε it drew): a convention, stated as the forward ``result``,
  the sample as drawn, which the mean and std do not move;
- native_dropout_backward is grad_output·mask·scale, the mask and scale
  saved (the kernel a second derivative of dropout meets);
- frexp's mantissa is self·2^(−exponent), the exponent a saved integer
  tensor, constant between the powers of two where it jumps (torch passes
  the gradient 2^(−exponent) there too).
"""

from .kinds import Pointwise

# Note [a sample torch gives no gradient]: see the module docstring.
DRAWN = "result"

ROWS = (
    Pointwise("BernoulliBackward0", "bernoulli sample (1 where the noise u < p)",
              "Piecewise((1, noise < self), (0, True))", params=("noise",)),
    # x.bernoulli_(p): with a tensor p (Backward1), with a number (Backward2);
    # the self it overwrites gets no gradient, nor does p
    Pointwise("BernoulliBackward1", "bernoulli sample in place", "Piecewise((1, noise < p), (0, True))",
              ("self", "p"), ("noise",)),
    Pointwise("BernoulliBackward2", "bernoulli sample in place", "Piecewise((1, noise < p), (0, True))",
              params=("noise", "p")),
    Pointwise("NormalBackward0", "normal sample in place (torch gives it no gradient)", DRAWN),
    Pointwise("NormalBackward1", "normal sample (torch gives it no gradient)", DRAWN, ("mean",)),
    Pointwise("NormalBackward2", "normal sample (torch gives it no gradient)", DRAWN, ("std",)),
    Pointwise("NormalBackward3", "normal sample (torch gives it no gradient)", DRAWN, ("mean", "std")),
    Pointwise("NativeDropoutBackwardBackward0", "dropout's backward: the kept elements, scaled",
              "grad_output*mask*scale", ("grad_output", "mask"), ("scale",)),
    Pointwise("FrexpBackward0", "mantissa of frexp", "self*2**(-exponent)", params=("exponent",)),
)
