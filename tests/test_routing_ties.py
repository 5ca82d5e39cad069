"""max(), amax and aminmax route to the elements tied with the result, all
elements at once (derive/routing.py's _ties_routes): ties share evenly, as
torch's evenly_distribute_backward does, and a wrong share is caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphexplain
from graphexplain.derive import routing

TIED = [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]
CASES = {
    "max()": (lambda x: x.max(), [[0, 0.5, 0.5], [0, 0, 0]]),
    "amax(dim=1)": (lambda x: x.amax(1) @ torch.tensor([1.0, 2.0], dtype=torch.float64),
                    [[0, 0.5, 0.5], [2 / 3, 2 / 3, 2 / 3]]),
    "aminmax": (lambda x: sum(part.sum() for part in torch.aminmax(x, dim=0)),
                [[1, 1, 1], [1, 1, 1]]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tied_elements_share_the_gradient(case):
    make, expected = CASES[case]
    x = torch.tensor(TIED, dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain(make(x))
    assert explanation.status == "verified"
    np.testing.assert_allclose(explanation.leaf("x").derived_grad, expected, rtol=1e-15)


def test_a_wrong_share_of_a_tie_is_caught(monkeypatch):
    unshared = routing._tie_edges

    def everyone_gets_all(*args):
        outputs, inputs, weights = unshared(*args)
        return outputs, inputs, np.ones_like(weights)

    monkeypatch.setattr(routing, "_tie_edges", everyone_gets_all)
    x = torch.tensor(TIED, dtype=torch.float64, requires_grad=True)
    assert graphexplain.explain(x.max()).status != "verified"
