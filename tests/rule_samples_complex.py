"""Samples for complex numbers: routing rows on complex tensors (Note
[complex routing] in derive/routing.py), conj, complex(), polar(), the
views between complex numbers and real pairs, and the DFT rows
(rules/fft.py), with torch.fft's norms and its n padding and cropping.

A backward needs a real loss, so each complex result is read through
view_as_real (`parts`): the weighting of tests/test_rules.py then gives the
real and the imaginary part of every element an upstream of its own.
Complex leaves come from `COMPLEX`, a Domain of complex numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from rule_sampling import BASIC, Domain, positive, real, sample


@dataclass(frozen=True)
class ComplexDomain(Domain):
    """Complex numbers with real and imaginary parts each in [low, high]."""

    dtype: torch.dtype = torch.complex128

    def leaf(self, shape: Tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        parts = torch.empty(shape + (2,), dtype=torch.float64).uniform_(self.low, self.high, generator=generator)
        return torch.view_as_complex(parts).to(self.dtype).requires_grad_(True)


COMPLEX = ComplexDomain(-2.0, 2.0)
COMPLEX64 = ComplexDomain(-2.0, 2.0, dtype=torch.complex64)
FLOAT32 = Domain(-2.0, 2.0, dtype=torch.float32)


def complex_(*shape: int):
    return COMPLEX, shape


def parts(z: torch.Tensor) -> torch.Tensor:
    """A complex result as its real pairs, so a real loss reads both parts."""
    return torch.view_as_real(z.resolve_conj()) if z.is_complex() else z


def through(op):
    """op(z), read as real pairs."""
    return lambda *z: parts(op(*z))


SAMPLES = {
    # --- routing on complex tensors -----------------------------------------------
    "SliceBackward0": {"complex": sample(through(lambda z: z[:, 1:3]), z=complex_(3, 4))},
    "SelectBackward0": {"complex": sample(through(lambda z: z[1]), z=complex_(3, 4)),
                        "complex-real-part": sample(lambda z: z.real, z=complex_(3)),
                        "complex-imaginary-part": sample(lambda z: z.imag, z=complex_(3))},
    "TBackward0": {"complex": sample(through(torch.t), z=complex_(2, 3))},
    "TransposeBackward0": {"complex": sample(through(lambda z: z.transpose(0, 1)), z=complex_(2, 3))},
    "TransposeBackward1": {"complex": sample(through(lambda z: (z * 1).transpose_(0, 1)), z=complex_(2, 3))},
    "SqueezeBackward1": {"complex": sample(through(lambda z: z.squeeze(0)), z=complex_(1, 3))},
    "SqueezeBackward4": {"complex": sample(through(lambda z: (z * 1).unsqueeze(1).squeeze_(-2)), z=complex_(2, 3))},
    "AsStridedBackward0": {"complex": sample(through(lambda z: z.as_strided((2, 2), (1, 2))), z=complex_(2, 3))},
    "ViewBackward0": {"complex": sample(through(lambda z: z.view(6)), z=complex_(2, 3))},
    "UnsafeViewBackward0": {"complex": sample(through(lambda z: z.t().reshape(6)), z=complex_(2, 3))},
    "ExpandBackward0": {"complex": sample(through(lambda z: z.expand(3, 4)), z=complex_(3, 1))},
    "CatBackward0": {"complex": sample(through(lambda z, w: torch.cat([z, w], 1)), z=complex_(2, 3), w=complex_(2, 1))},
    "StackBackward0": {"complex": sample(through(lambda z, w: torch.stack([z, w])), z=complex_(2, 3), w=complex_(2, 3))},
    "SplitBackward0": {"complex": sample(through(lambda z: z.split(2, 1)[1]), z=complex_(2, 5))},
    "FlipBackward0": {"complex": sample(through(lambda z: z.flip(0)), z=complex_(3, 2))},
    "ConstantPadNdBackward0": {"complex": sample(through(lambda z: torch.nn.functional.pad(z, (1, 2))),
                                                 z=complex_(2, 3))},
    # --- complex numbers, made and taken apart --------------------------------------
    "ViewAsRealBackward0": {BASIC: sample(torch.view_as_real, z=complex_(3)),
                            "complex64": sample(torch.view_as_real, z=(COMPLEX64, (2, 3)))},
    "ViewAsComplexBackward0": {BASIC: sample(through(torch.view_as_complex), x=real(3, 2)),
                               "stacked": sample(through(lambda x, y: torch.view_as_complex(torch.stack([x, y], -1))),
                                                 x=real(3), y=real(3))},
    "ConjBackward0": {BASIC: sample(through(lambda z: z.conj() * z), z=complex_(3)),
                      "times-other": sample(through(lambda z, w: z.conj() * w), z=complex_(3), w=complex_(3))},
    "ConjPhysicalBackward0": {BASIC: sample(through(torch.conj_physical), z=complex_(3))},
    "NegViewBackward0": {BASIC: sample(lambda z: z.conj().imag, z=complex_(3))},
    "ComplexBackward0": {BASIC: sample(through(torch.complex), x=real(3), y=real(3)),
                         "broadcast": sample(through(torch.complex), x=real(2, 3), y=real(3))},
    # torch keeps only the result; the leaves' values give abs and angle
    "PolarBackward0": {BASIC: sample(through(torch.polar), r=positive(3), theta=real(3))},
    # --- the DFT ------------------------------------------------------------------
    "FftC2CBackward0": {
        BASIC: sample(through(torch.fft.fft), z=complex_(3, 8)),
        "ortho": sample(through(lambda z: torch.fft.fft(z, norm="ortho")), z=complex_(8)),
        "forward-norm": sample(through(lambda z: torch.fft.fft(z, norm="forward")), z=complex_(8)),
        "ifft": sample(through(torch.fft.ifft), z=complex_(2, 7)),
        "ifft-ortho": sample(through(lambda z: torch.fft.ifft(z, norm="ortho")), z=complex_(6)),
        "padded": sample(through(lambda z: torch.fft.fft(z, n=11)), z=complex_(2, 8)),
        "cropped": sample(through(lambda z: torch.fft.fft(z, n=5, dim=0)), z=complex_(8, 3)),
        "fft2": sample(through(torch.fft.fft2), z=complex_(4, 6)),
        "fftn": sample(through(lambda z: torch.fft.fftn(z, norm="forward")), z=complex_(2, 3, 4)),
        "ifftn-s": sample(through(lambda z: torch.fft.ifftn(z, s=(5, 2))), z=complex_(4, 3)),
        "complex64": sample(through(torch.fft.fft), z=(COMPLEX64, (16,))),
        "long": sample(through(torch.fft.fft), z=complex_(256)),
    },
    "FftR2CBackward0": {
        BASIC: sample(through(torch.fft.rfft), x=real(3, 8)),
        "odd": sample(through(lambda x: torch.fft.rfft(x, n=7)), x=real(6)),
        "two-sided": sample(through(torch.fft.fft), x=real(5)),
        "ortho": sample(through(lambda x: torch.fft.rfft(x, norm="ortho")), x=real(8)),
        "rfft2": sample(through(torch.fft.rfft2), x=real(4, 6)),
        "ihfft": sample(through(torch.fft.ihfft), x=real(8)),
        "float32": sample(through(torch.fft.rfft), x=(FLOAT32, (16,))),
    },
    "FftC2RBackward0": {
        BASIC: sample(torch.fft.irfft, z=complex_(3, 5)),
        "odd": sample(lambda z: torch.fft.irfft(z, n=9), z=complex_(5)),
        "forward-norm": sample(lambda z: torch.fft.irfft(z, norm="forward"), z=complex_(5)),
        "ortho": sample(lambda z: torch.fft.irfft(z, norm="ortho"), z=complex_(5)),
        "hfft": sample(torch.fft.hfft, z=complex_(5)),
        "irfft2": sample(torch.fft.irfft2, z=complex_(4, 5)),
        "irfftn-s": sample(lambda z: torch.fft.irfftn(z, s=(3, 6)), z=complex_(4, 4)),
        "hfft2": sample(torch.fft.hfft2, z=complex_(3, 4)),
        "complex64": sample(torch.fft.irfft, z=(COMPLEX64, (9,))),
    },
}
