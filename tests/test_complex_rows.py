"""Complex routing, the views between complex numbers and real pairs, and
the DFT rows: derived as torch's convention says (Note [complex routing] in
derive/routing.py, Note [the DFT as index notation] in derive/complex.py),
verified in complex64 and float32 too, and every check able to fail: a
deliberately wrong torch number at a complex routing node or a DFT node is
caught where it starts (tests/test_verify.py's `off_from`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import graphexplain
from graphexplain.model import frozen_array
from graphexplain.rules import TABLE
from graphexplain.verify import verify

from test_verify import off_from, with_node

SEED = 3


def weighted(output: torch.Tensor) -> torch.Tensor:
    """A real loss that gives each real and imaginary part its own weight."""
    pairs = torch.view_as_real(output.resolve_conj()) if output.is_complex() else output
    generator = torch.Generator().manual_seed(SEED)
    return (pairs * torch.randn(pairs.shape, generator=generator, dtype=pairs.dtype)).sum()


def complex_leaf(*shape, dtype=torch.complex128):
    generator = torch.Generator().manual_seed(SEED + 1)
    return torch.randn(*shape, dtype=dtype, generator=generator).requires_grad_(True)


def real_leaf(*shape, dtype=torch.float64):
    generator = torch.Generator().manual_seed(SEED + 2)
    return torch.randn(*shape, dtype=dtype, generator=generator).requires_grad_(True)


def explained(build, leaf):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "discards the imaginary part" is a failure
        explanation = graphexplain.explain(weighted(build(leaf)))
    torch_grad, = torch.autograd.grad(weighted(build(leaf)), leaf)
    return explanation, torch_grad


def node_of(explanation, op):
    (found,) = [node.id for node in explanation.graph.nodes if node.op == op][:1]
    return found


ROUTINGS = [
    ("SliceBackward0", lambda z: z[:, 1:3]),
    ("TransposeBackward1", lambda z: (z * 1).transpose_(0, 1)),
    ("SqueezeBackward4", lambda z: (z * 1).unsqueeze(1).squeeze_(-2)),
    ("AsStridedBackward0", lambda z: z.as_strided((2, 2), (1, 2))),
    ("CatBackward0", lambda z: torch.cat([z, z[:1] * 2])),
    ("SplitBackward0", lambda z: z.split(2, 1)[1] * z.split(2, 1)[0][:, :1]),
]
TRANSFORMS = [
    ("FftC2CBackward0", "complex", torch.fft.fft),
    ("FftC2CBackward0", "complex", lambda z: torch.fft.ifft(z, n=11, norm="ortho")),
    ("FftC2CBackward0", "complex", lambda z: torch.fft.fftn(z, norm="forward")),
    ("FftR2CBackward0", "real", torch.fft.rfft),
    ("FftR2CBackward0", "real", lambda x: torch.fft.rfft2(x, norm="ortho")),
    ("FftC2RBackward0", "complex", torch.fft.irfft),
    ("FftC2RBackward0", "complex", lambda z: torch.fft.irfft(z, n=9)),
    ("FftC2RBackward0", "complex", torch.fft.hfft),
    ("FftC2RBackward0", "complex", torch.fft.irfft2),
]
DTYPES = {"complex": (torch.complex128, torch.complex64), "real": (torch.float64, torch.float32)}


def leaf_for(kind, dtype, shape=(3, 8)):
    return complex_leaf(*shape, dtype=dtype) if kind == "complex" else real_leaf(*shape, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64], ids=str)
@pytest.mark.parametrize("op, build", ROUTINGS, ids=[op for op, _ in ROUTINGS])
def test_complex_routing_verifies_and_a_wrong_gradient_is_caught(op, build, dtype):
    z = complex_leaf(3, 4, dtype=dtype)
    explanation, torch_grad = explained(build, z)
    assert explanation.status == "verified", [(s.op, s.status, s.derivation.note) for s in explanation.steps]
    derived = explanation.leaves[0].derived_grad
    assert derived.dtype.kind == "c"
    assert np.allclose(derived, torch_grad.resolve_conj().numpy(), rtol=1e-5, atol=1e-6)
    start = node_of(explanation, op)
    verification = verify(explanation.graph, explanation.derivation,
                          off_from(explanation.graph, explanation.observed, start))
    assert verification.first_mismatch == start
    assert verification.leaves[0].status == "mismatch"


@pytest.mark.parametrize("op, kind, build", TRANSFORMS, ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(TRANSFORMS)])
@pytest.mark.parametrize("precision", [0, 1], ids=["double", "single"])
def test_a_dft_verifies_and_a_wrong_gradient_is_caught(op, kind, build, precision):
    leaf = leaf_for(kind, DTYPES[kind][precision])
    explanation, torch_grad = explained(build, leaf)
    assert explanation.status == "verified", [(s.op, s.status, s.derivation.note) for s in explanation.steps]
    start = node_of(explanation, op)
    assert explanation.steps[start].derivation.status == "derived"
    derived = explanation.leaves[0].derived_grad
    assert np.allclose(derived, torch_grad.resolve_conj().numpy(), rtol=1e-4 if precision else 1e-10, atol=1e-5)
    verification = verify(explanation.graph, explanation.derivation,
                          off_from(explanation.graph, explanation.observed, start))
    assert verification.first_mismatch == start


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64], ids=str)
def test_a_wrong_phase_is_caught_too(dtype):
    """A gradient of the right size but turned by 1e-3 radians is as wrong."""
    z = complex_leaf(2, 16, dtype=dtype)
    explanation, _ = explained(torch.fft.fft, z)
    start = node_of(explanation, "FftC2CBackward0")
    downstream = explanation.observed.node(start).downstream
    turned = tuple(frozen_array(np.asarray(d) * np.exp(1e-3j)) for d in downstream)
    wrong = with_node(explanation.observed, start, downstream=turned)
    verification = verify(explanation.graph, explanation.derivation, wrong)
    assert verification.first_mismatch == start


@pytest.mark.parametrize("n", [1024, 4096])
def test_a_long_single_precision_transform_verifies_and_is_still_checked(n):
    """The budget of a long transform is the FFT's normwise bound (budget.fft),
    not n steps of a dot product: complex64 verifies, 0.1 % off does not."""
    z = complex_leaf(n, dtype=torch.complex64)
    explanation, _ = explained(torch.fft.fft, z)
    assert explanation.status == "verified"
    start = node_of(explanation, "FftC2CBackward0")
    verification = verify(explanation.graph, explanation.derivation,
                          off_from(explanation.graph, explanation.observed, start))
    assert verification.first_mismatch == start


def test_view_as_real_and_view_as_complex_are_inverse_routings():
    x = real_leaf(3, 2)
    turn = torch.tensor([1 + 2j, -1j, 0.5 + 0j])  # a tensor: a complex Python number is labelled by its real part
    explanation, torch_grad = explained(lambda x: torch.view_as_real(torch.view_as_complex(x) * turn), x)
    assert explanation.status == "verified"
    assert explanation.leaves[0].derived_grad.dtype.kind == "f"
    assert np.allclose(explanation.leaves[0].derived_grad, torch_grad.numpy())
    ops = {step.op: step.derivation for step in explanation.steps}
    assert "conj(self[j])" in ops["ViewAsRealBackward0"].local_gradients[0].named


def test_the_real_part_of_a_complex_routing_goes_to_a_real_operand():
    x = real_leaf(3)
    explanation, torch_grad = explained(lambda x: torch.cat([x.to(torch.complex128), complex_leaf(2).detach()]), x)
    assert explanation.status == "verified"
    assert explanation.leaves[0].derived_grad.dtype.kind == "f"
    assert np.allclose(explanation.leaves[0].derived_grad, torch_grad.numpy())


def test_the_dft_rows_state_forwards_that_sympy_differentiates():
    """The local gradient shown is sympy's: the c2r row's doubled terms and
    conjugate half come from the formula, not from a hand-written factor 2."""
    from graphexplain.derive import complex as complex_

    d, d_conjugate = complex_.transform_derivatives(TABLE["FftC2RBackward0"], last=True)
    assert d.has(__import__("sympy").Piecewise) and d_conjugate != 0
    assert complex_.transform_derivatives(TABLE["FftC2CBackward0"])[1] == 0  # holomorphic
