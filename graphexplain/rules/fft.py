"""Complex numbers: conj, complex(real, imag), polar(abs, angle), and the
discrete Fourier transforms.

The pointwise rows are differentiated as every complex row is, by sympy's
two Wirtinger derivatives of the forward (Note [complex gradients] in
derive/complex.py): conj(self) is not holomorphic, and complex() and polar()
make a complex result of real operands. view_as_real and view_as_complex,
routings between complex elements and their real pairs, are in
rules/shape.py.

A `Transform` row states a 1-d DFT in index notation, result[k] for the
element k along one transformed dim, summing over the operand's elements
self[n] along it; `N` is the signal's length (the operand's, or for c2r the
result's), `L` the operand's length along the dim. A multi-dim transform is
separable: the formula holds along each saved dim in turn (`last`, where
given, along the last of them, after the others). sympy derives
∂result[k]/∂self[j] and ∂result[k]/∂conj(self[j]) from the formula;
numpy evaluates them over the grid of (k, j), one matrix per dim
(derive/complex.py, Note [the DFT as index notation]).

`normalization` is torch's saved norm mode: 0 none, 1 by √N, 2 by N,
whichever direction the transform runs in (torch.fft's norm="backward"
scales the inverse by 1/N, "forward" the forward one, "ortho" both by 1/√N).
"""

from dataclasses import dataclass
from typing import ClassVar, Tuple

from .kinds import Pointwise, Rule


@dataclass(frozen=True)
class Transform(Rule):
    """result[k] = forward, along each saved `dim` in turn, in index
    notation; `where` names pieces of the formula, `last` is the formula
    along the last dim where it differs, applied after the others; `signal`
    says whose length along the dim N is ("self" or "result")."""

    where: Tuple[Tuple[str, str], ...] = ()
    last: str = ""
    signal: str = "self"
    family: ClassVar[str] = "transform"


SCALE = ("scale", "Piecewise((1, Eq(normalization, 0)), (1/sqrt(N), Eq(normalization, 1)), (1/N, True))")
DFT = "scale*Sum(self[n]*exp(sign*2*pi*I*k*n/N), (n, 0, L - 1))"
# c2r reads a Hermitian half-spectrum: the missing half holds the conjugates,
# self[N - n] = conj(self[n]), so the terms n and N - n add up to twice the
# real part of one of them; n = 0 and n = N/2 (N even) have no partner. The
# imaginary parts of those two are dropped, as torch's (pocketfft's) c2r does.
HALF_SPECTRUM = "scale*Sum(twice*re(self[n]*exp(2*pi*I*k*n/N)), (n, 0, L - 1))"
TWICE = ("twice", "Piecewise((1, Eq(n, 0) | Eq(2*n, N)), (2, True))")

ROWS = (
    Pointwise("ConjBackward0", "complex conjugate", "conjugate(self)"),
    Pointwise("ConjPhysicalBackward0", "complex conjugate (a copy)", "conjugate(self)"),
    # the imaginary part of a conjugate view reads its own negated view
    Pointwise("NegViewBackward0", "negate (a view)", "-self"),
    Pointwise("ComplexBackward0", "complex number from real and imaginary parts", "real + I*imag", ("real", "imag")),
    Pointwise("PolarBackward0", "complex number from magnitude and angle", "abs*exp(I*angle)", ("abs", "angle")),
    Transform("FftC2CBackward0", "discrete Fourier transform", DFT, params=("dim", "normalization", "forward"),
              where=(("sign", "2*(1 - forward) - 1"), SCALE)),
    # onesided: the result keeps k = 0 … N//2; the formula holds for each k kept
    Transform("FftR2CBackward0", "discrete Fourier transform of a real signal", DFT,
              params=("dim", "normalization", "onesided"), where=(("sign", "-1"), SCALE)),
    Transform("FftC2RBackward0", "inverse discrete Fourier transform to a real signal", DFT,
              params=("dim", "normalization"), where=(("sign", "1"), SCALE, TWICE), last=HALF_SPECTRUM,
              signal="result"),
)
