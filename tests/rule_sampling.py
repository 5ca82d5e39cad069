"""Building blocks of the rule samples (tests/test_rules.py and the
tests/rule_samples_*.py family modules): input domains and `sample`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch

DTYPE = torch.float64
BASIC = ""  # the name of a row's first, plain case


# --- input domains: each makes a fresh leaf of a shape ----------------------------


@dataclass(frozen=True)
class Domain:
    """Where a leaf's values are drawn from."""

    low: float
    high: float
    signed: bool = False  # ±[low, high]: keeps away from 0 without losing sign
    dtype: torch.dtype = DTYPE

    def leaf(self, shape: Tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        values = torch.empty(shape, dtype=torch.float64).uniform_(self.low, self.high, generator=generator)
        if self.signed:
            signs = torch.randint(0, 2, shape, generator=generator) * 2 - 1
            values = values * signs
        return values.to(self.dtype).requires_grad_(True)


REAL = Domain(-2.0, 2.0)
POSITIVE = Domain(0.5, 2.0)  # log, sqrt, rsqrt, a tensor base of pow
NONZERO = Domain(0.5, 2.0, signed=True)  # divisors, reciprocal, relu/abs off their kink
PROBABILITY = Domain(0.1, 0.9)  # the input of binary_cross_entropy
FLOAT32 = Domain(-2.0, 2.0, dtype=torch.float32)


def constant(*shape: int, low: float = -2.0, high: float = 2.0, seed: int = 7) -> torch.Tensor:
    """A float64 tensor that does not require grad (a target, a weight)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.empty(shape, dtype=DTYPE).uniform_(low, high, generator=generator)


TARGET = constant(2, 3, low=0.0, high=1.0)  # binary_cross_entropy targets are in [0, 1]
WEIGHT = constant(2, 3, low=0.5, high=2.0, seed=8)
MATRIX = constant(3, 2, seed=9)


# --- the table's twin --------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """``build(*leaves)``, the leaves in the order named, makes torch record
    the row's node."""

    build: Callable[..., torch.Tensor]
    leaves: Tuple[Tuple[str, Domain, Tuple[int, ...]], ...]

    def make_leaves(self, generator: torch.Generator) -> Dict[str, torch.Tensor]:
        return {name: domain.leaf(shape, generator) for name, domain, shape in self.leaves}


def sample(build: Callable[..., torch.Tensor], **leaves: Tuple[Domain, Tuple[int, ...]]) -> Sample:
    """``sample(lambda x, y: x * y, x=(REAL, (3,)), y=(REAL, (3,)))``"""
    return Sample(build, tuple((name, domain, shape) for name, (domain, shape) in leaves.items()))


def real(*shape: int):
    return REAL, shape


def positive(*shape: int):
    return POSITIVE, shape


def nonzero(*shape: int):
    return NONZERO, shape


def probability(*shape: int):
    return PROBABILITY, shape


