"""A matrix product is written with @, as PyTorch writes it, and a walkthrough
with matrix steps says what its ∂L/∂x, G and @ mean (derive/naming.formula_text,
render/terminal.MATRIX_LEGEND). An elementwise product keeps its *."""

from __future__ import annotations

import torch

import graphexplain
from graphexplain.render.terminal import MATRIX_LEGEND


def _explained(build, *inputs):
    with graphexplain.recording():
        loss = build(*inputs)
    return graphexplain.explain(loss)


def test_a_linear_layer_is_written_with_at_and_the_legend_says_so():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    explanation = _explained(lambda x: layer(x).sum(), x)
    formulas = [step.derivation.forward_named or "" for step in explanation.steps]
    assert any(" @ " in formula for formula in formulas), formulas
    locals_ = [local.named for step in explanation.steps for local in step.derivation.local_gradients]
    assert any(text.endswith(".T @ G") or " @ " in text for text in locals_), locals_
    assert " ".join(MATRIX_LEGEND.split()) in " ".join(str(explanation).split())
    assert explanation.status == "verified"


def test_an_elementwise_product_keeps_its_star_and_has_no_legend():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    explanation = _explained(lambda x: (x * x.exp()).sum(), x)
    assert "@" not in str(explanation)
    assert "in a matrix step" not in str(explanation)
