"""A gradient that arrives by several paths is shown as the sum it is
(Note [a gradient that arrives by several paths] in render/formatting.py):
the node's upstream lists what each use sends back, and a local gradient
whose operand fills two places (y * y) says which place it is for. Also:
a summarised value says its shape once."""

from __future__ import annotations

import numpy as np
import torch

import graphexplain
from graphexplain.render.formatting import ARRIVALS_LISTED, arrivals, sized
from graphexplain.render.markdown import call_markdown


def _explained(build):
    x = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    with graphexplain.recording():
        loss = build(x)
    return graphexplain.explain(loss)


def _node(explanation, name):
    return next(step for step in explanation.steps if step.node.name == name)


def test_y_times_y_shows_both_places_and_their_sum():
    def build(x):
        y = x + 2
        return (y * y).sum()

    explanation = _explained(build)
    walkthrough = str(explanation)
    assert "∂(y * y)/∂y (self) = other = y" in walkthrough
    assert "∂(y * y)/∂y (other) = self = y" in walkthrough
    assert "upstream  [5, 6, 8], the sum of what its 2 uses send back:" in walkthrough
    assert "  [2.5, 3, 4] from step 2, y * y (self)" in walkthrough
    assert "+ [2.5, 3, 4] from step 2, y * y (other)" in walkthrough
    page = explanation.to_html()
    assert "the sum of what its 2 uses send back:" in page and "(as self)" in page and "(as other)" in page


def test_the_uses_listed_add_up_to_the_upstream():
    def build(x):
        a = x * 3
        return (a.sin() + a.cos() * a).sum()

    explanation = _explained(build)
    several = arrivals(explanation)
    a = _node(explanation, "a")
    uses = several[a.node.id]
    assert len(uses) == 3  # sin, and both operands of cos(a) * a
    total = sum(np.asarray(chain.downstream) for *_, chain in uses)
    np.testing.assert_allclose(total, a.derivation.upstream, rtol=1e-12)
    assert set(several) == {a.node.id}  # no other node has several uses here


def test_a_single_use_shows_no_sum():
    explanation = _explained(lambda x: (x * 2).sin().sum())
    assert arrivals(explanation) == {}
    assert "uses send back" not in str(explanation)


def test_many_uses_are_listed_up_to_a_bound():
    def build(x):
        a = x * 2
        return sum(a * k for k in range(1, ARRIVALS_LISTED + 3)).sum()

    walkthrough = str(_explained(build))
    assert f"the sum of what its {ARRIVALS_LISTED + 2} uses send back:" in walkthrough
    assert "+ what 2 more uses send" in walkthrough


def test_a_hook_that_may_change_an_arrival_hides_the_sum():
    def build(x):
        a = x * 2
        a.register_hook(lambda grad: grad * 10)
        return (a.sin() + a.cos()).sum()

    explanation = _explained(build)
    assert arrivals(explanation) == {}


def test_the_markdown_report_shows_the_sum_in_its_upstream_cell():
    def build(x):
        y = x + 2
        return (y * y).sum()

    page = "\n".join(call_markdown(_explained(build)))
    assert "the sum of what its 2 uses send back:" in page and "(as self)" in page


def test_a_summarised_value_says_its_shape_once():
    assert sized((2, 5), np.ones((2, 5))).count("(2, 5)") == 1
    assert sized((3,), np.ones(3)) == "(3,) [1, 1, 1]"
    assert sized((), np.float64(2.0)) == "scalar 2"
    explanation = _explained(lambda x: (x.repeat(4) * 2).sum())
    assert "(12,) (12,)" not in str(explanation) and "(12,) [" in str(explanation)
