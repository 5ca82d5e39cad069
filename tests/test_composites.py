"""Fused kernels written out (rules/composite.py, capture/composites.py):
torch's oneDNN LSTM layer and CPU flash attention are derived through their
forwards as plain ops, and their backwards are checked like any node's.

The row samples (tests/rule_samples_composite.py) check each case against
torch.autograd.grad; here: whole modules as people use them, a wrong number
at the fused node caught, what cannot be written out said in a sentence,
and the same script traced from the command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import graphexplain
from graphexplain.capture.composites import FORWARDS, NotComposable, attention, lstm_layer
from graphexplain.rules import TABLE
from graphexplain.rules.kinds import Composite

from test_verify import off_from

SCRIPTS = Path(__file__).parent / "scripts"
FUSED = ("MkldnnRnnLayerBackward0", "ScaledDotProductFlashAttentionForCpuBackward0")


def fused_steps(explanation):
    return [step for step in explanation.steps if step.op in FUSED]


def weighted(output):
    generator = torch.Generator().manual_seed(3)
    return (output * torch.randn(output.shape, generator=generator)).sum()


def test_every_composite_row_names_a_written_out_forward():
    rows = [row for row in TABLE.values() if isinstance(row, Composite)]
    assert {row.op for row in rows} == set(FUSED)
    assert all(row.forward in FORWARDS for row in rows)


@pytest.mark.parametrize("options", [dict(), dict(batch_first=True), dict(num_layers=2, bidirectional=True),
                                     dict(bias=False)], ids=["plain", "batch-first", "two-layers-both-ways",
                                                             "no-bias"])
def test_nn_lstm_verifies_through_its_gate_equations(options):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, **options)
    x = torch.randn(2, 5, 3, requires_grad=True)
    out, (h, c) = lstm(x)
    explanation = graphexplain.explain(weighted(out) + h.sum() + c.sum())
    assert fused_steps(explanation), [step.op for step in explanation.steps]
    assert explanation.status == "verified", [(s.op, s.status) for s in explanation.steps if s.status != "verified"]
    assert all(step.derivation.status == "derived" for step in fused_steps(explanation))


@pytest.mark.parametrize("module", ["attention", "encoder-layer"])
def test_attention_modules_verify_through_softmax(module):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, requires_grad=True)
    if module == "attention":
        layer = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        output = layer(x, x, x, need_weights=False)[0]
    else:
        layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        output = layer(x)
    explanation = graphexplain.explain(weighted(output))
    assert fused_steps(explanation), [step.op for step in explanation.steps]
    assert explanation.status == "verified", [(s.op, s.status) for s in explanation.steps if s.status != "verified"]


@pytest.mark.parametrize("op", FUSED)
def test_a_wrong_number_at_the_fused_node_is_caught(op):
    torch.manual_seed(0)
    if op == FUSED[0]:
        out, _ = torch.nn.LSTM(2, 3)(torch.randn(3, 2, 2, requires_grad=True))
    else:
        q = torch.randn(1, 2, 3, 4, requires_grad=True)
        out = F.scaled_dot_product_attention(q, q, q)
    right = graphexplain.explain(weighted(out))
    node = next(step.node.id for step in right.steps if step.op == op)
    wrong = graphexplain.Explanation.of(right.graph, off_from(right.graph, right.observed, node))
    assert right.status == "verified"
    assert wrong.status == "mismatch"
    assert wrong.first_mismatch().op == op


def test_what_cannot_be_written_out_says_why_in_a_sentence():
    q = torch.randn(1, 1, 2, 2)
    with pytest.raises(NotComposable, match="dropout draws a mask the node does not keep"):
        attention(q, q, q, dropout_p=0.5)
    with pytest.raises(NotComposable, match="only the LSTM"):
        lstm_layer(*[torch.zeros(1)] * 7, mode=3)


def test_the_written_out_forwards_are_the_kernels():
    """What the capture checks on every node (the re-run must give the
    script's numbers), here once on its own."""
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3)
    lstm = torch.nn.LSTM(3, 5)
    out, (h, c) = lstm(x)
    mine = lstm_layer(x, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0,
                      torch.zeros(2, 5), torch.zeros(2, 5))
    for theirs, ours in zip((out, h[0], c[0]), mine):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    q, k, v = torch.randn(3, 1, 2, 5, 4).unbind(0)
    torch.testing.assert_close(attention(q, k, v, is_causal=True)[0],
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_an_lstm_model_traces_verified(launch, tmp_path):
    done = launch.graphexplain("trace", SCRIPTS / "lstm_classifier.py", "--out", tmp_path / "out",
                               cwd=tmp_path).result()
    assert done.returncode == 0, done.output
    assert "LSTM layer (fused oneDNN kernel)" in done.output
    assert "Traceback" not in done.output
