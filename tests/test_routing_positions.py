"""Routing maps taken from torch's own forward, run on positions
(capture/positions.py): each map, applied to numbers, is torch's forward;
the map is recorded on the node as plain data; a wrong map is caught; a
forward torch refuses leaves the node to torch's numbers, never a crash."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphexplain
from graphexplain.capture import positions
from graphexplain.derive import routing
from graphexplain.explanation import Explanation
from graphexplain.model import PositionMap
from graphexplain.rules import TABLE

rng = torch.Generator().manual_seed(0)


def real(*shape):
    return torch.randn(*shape, dtype=torch.float64, generator=rng, requires_grad=True)


INDEX = torch.tensor([2, 0, 2])
# (the node's op, what makes it) for every function capture runs on positions
CASES = {
    "avg_pool": ("AvgPool2DBackward0", lambda: F.avg_pool2d(real(2, 3, 7, 6), 3, 2, 1, ceil_mode=True,
                                                           count_include_pad=False)),
    "avg_pool-divisor": ("AvgPool2DBackward0", lambda: F.avg_pool2d(real(1, 2, 5, 4), 2, divisor_override=3)),
    "avg_pool3d": ("AvgPool3DBackward0", lambda: F.avg_pool3d(real(1, 2, 4, 5, 3), 2, 1, 1)),
    "adaptive_avg_pool2d": ("AdaptiveAvgPool2DBackward0", lambda: F.adaptive_avg_pool2d(real(2, 2, 7, 5), (3, 2))),
    "adaptive-global": ("AdaptiveAvgPool2DBackward0", lambda: F.adaptive_avg_pool2d(real(1, 2, 9, 7), (2, 1))),
    "adaptive_avg_pool3d": ("AdaptiveAvgPool3DBackward0", lambda: F.adaptive_avg_pool3d(real(1, 1, 5, 4, 3), 2)),
    "bilinear": ("UpsampleBilinear2DBackward0", lambda: F.interpolate(real(2, 2, 3, 4), scale_factor=1.7,
                                                                      mode="bilinear")),
    "linear-shrink": ("UpsampleLinear1DBackward0", lambda: F.interpolate(real(1, 2, 9), size=4, mode="linear",
                                                                         align_corners=True)),
    "trilinear": ("UpsampleTrilinear3DBackward0", lambda: F.interpolate(real(1, 1, 2, 3, 3), size=(3, 5, 2),
                                                                        mode="trilinear")),
    "bicubic": ("UpsampleBicubic2DBackward0", lambda: F.interpolate(real(1, 2, 4, 3), size=(7, 5), mode="bicubic")),
    "antialiased": ("UpsampleBilinear2DAaBackward0", lambda: F.interpolate(real(1, 2, 9, 8), scale_factor=0.3,
                                                                           mode="bilinear", antialias=True)),
    "nearest": ("UpsampleNearest2DBackward0", lambda: F.interpolate(real(2, 1, 3, 4), scale_factor=(1.5, 0.7))),
    "nearest-exact": ("UpsampleNearestExact1DBackward0", lambda: F.interpolate(real(1, 2, 3), size=5,
                                                                                mode="nearest-exact")),
    "max_pool2d": ("MaxPool2DWithIndicesBackward0", lambda: F.max_pool2d(real(2, 3, 6, 5), 3, 2, 1)),
    "max_pool3d": ("MaxPool3DWithIndicesBackward0", lambda: F.max_pool3d(real(1, 2, 4, 4, 3), 2)),
    "adaptive_max_pool2d": ("AdaptiveMaxPool2DBackward0", lambda: F.adaptive_max_pool2d(real(1, 2, 5, 7), (2, 3))),
    "index_select": ("IndexSelectBackward0", lambda: torch.index_select(real(3, 4), 0, INDEX)),
    "gather": ("GatherBackward0", lambda: torch.gather(real(3, 4), 1, torch.tensor([[0, 3], [1, 1], [2, 0]]))),
    "take": ("TakeBackward0", lambda: torch.take(real(3, 4), torch.tensor([[0, 11], [5, 5]]))),
    "getitem": ("IndexBackward0", lambda: real(4, 3, 2)[INDEX, :, torch.tensor([1, 0, 1])]),
    "getitem-mask": ("IndexBackward0", lambda: real(3, 4)[torch.tensor([True, False, True])]),
    "embedding": ("EmbeddingBackward0", lambda: F.embedding(torch.tensor([[0, 2], [1, 2]]), real(3, 4),
                                                            padding_idx=2)),
    "masked_select": ("MaskedSelectBackward0", lambda: torch.masked_select(real(3, 4), torch.rand(3, 4,
                                                                                                 generator=rng) > 0.5)),
    "max-over-dim": ("MaxBackward0", lambda: real(3, 5).max(dim=1).values),
    "sort": ("SortBackward0", lambda: real(3, 5).sort(dim=0).values),
    "flip": ("FlipBackward0", lambda: real(3, 4).flip(0, 1)),
    "roll": ("RollBackward0", lambda: real(3, 4).roll((1, -2), (0, 1))),
    "rot90": ("Rot90Backward0", lambda: real(3, 4).rot90(1, (0, 1))),
    "repeat": ("RepeatBackward0", lambda: real(2, 3).repeat(2, 1, 2)),
    "diagonal": ("DiagonalBackward0", lambda: real(3, 4).diagonal(1)),
    "diag_embed": ("DiagEmbedBackward0", lambda: torch.diag_embed(real(2, 3), -1)),
    "tril": ("TrilBackward0", lambda: real(4, 3).tril(-1)),
    "triu": ("TriuBackward0", lambda: real(3, 4).triu(1)),
    "unfold": ("UnfoldBackward0", lambda: real(3, 7).unfold(1, 3, 2)),
    "constant_pad": ("ConstantPadNdBackward0", lambda: F.pad(real(2, 3), (1, -1, 2, 0))),
    "reflection_pad": ("ReflectionPad2DBackward0", lambda: F.pad(real(1, 2, 3, 4), (2, 1, 1, 2), mode="reflect")),
    "replication_pad": ("ReplicationPad1DBackward0", lambda: F.pad(real(2, 3), (3, 1), mode="replicate")),
    "pixel_shuffle": ("PixelShuffleBackward0", lambda: F.pixel_shuffle(real(1, 8, 2, 3), 2)),
    "pixel_unshuffle": ("PixelUnshuffleBackward0", lambda: F.pixel_unshuffle(real(1, 2, 4, 6), 2)),
    "channel_shuffle": ("ChannelShuffleBackward0", lambda: F.channel_shuffle(real(1, 6, 2, 2), 3)),
    "im2col": ("Im2ColBackward0", lambda: F.unfold(real(1, 2, 4, 5), (2, 3), padding=1, stride=(1, 2))),
}


def explained(make):
    result = make()
    weights = torch.randn(result.shape, dtype=torch.float64, generator=rng)
    return graphexplain.explain((result * weights).sum()), result


def node_of(explanation, op):
    return next(node for node in explanation.graph.nodes if node.op == op)


def test_every_function_run_on_positions_has_a_case():
    covered = {routing.function_name(TABLE[op].forward) for op, _ in CASES.values()}
    assert covered == positions.RECORDED


@pytest.mark.parametrize("case", list(CASES))
def test_the_recorded_map_is_torch_s_forward_and_verifies(case):
    op, make = CASES[case]
    explanation, result = explained(make)
    assert explanation.status == "verified", case
    node = node_of(explanation, op)
    recorded = node.params.get(PositionMap.PARAM)
    assert isinstance(recorded, PositionMap), f"{op}: no map recorded"
    assert np.asarray(recorded.inputs).dtype == np.int64
    # the map, applied to the operand's numbers, is what torch's forward made
    operand = node.operands[0].value.data
    params = dict(node.params, value=0.0) if op == "ConstantPadNdBackward0" else node.params  # (F.pad's default)
    made = routing.replay(TABLE[op].forward, [(node.operands[0].name, operand)], dict(params))
    np.testing.assert_allclose(made[0], result.detach().numpy(), rtol=1e-13, atol=1e-13)


def test_weights_are_probed_in_several_forwards_alike(monkeypatch):
    """Few colours per probing forward (Note [weights from probes]) give the same map."""
    make = CASES["adaptive-global"][1]
    whole = node_of(explained(make)[0], "AdaptiveAvgPool2DBackward0").params[PositionMap.PARAM]
    monkeypatch.setattr(positions, "_PROBE_ELEMENTS", 64)
    split = node_of(explained(make)[0], "AdaptiveAvgPool2DBackward0").params[PositionMap.PARAM]
    for a, b in ((whole.outputs, split.outputs), (whole.inputs, split.inputs), (whole.weights, split.weights)):
        assert np.array_equal(a, b)


def test_a_plane_map_is_kept_for_one_plane():
    """Pools and interpolation record one (batch, channel) plane's edges."""
    explanation, _ = explained(lambda: F.interpolate(real(4, 5, 3, 3), scale_factor=2, mode="bilinear"))
    recorded = node_of(explanation, "UpsampleBilinear2DBackward0").params[PositionMap.PARAM]
    assert (recorded.planes, recorded.input_plane, recorded.output_plane) == (20, 9, 36)
    assert recorded.outputs.max() < 36 and recorded.inputs.max() < 9


@pytest.mark.parametrize("case", ["bilinear", "avg_pool", "index_select", "max_pool2d"])
def test_a_wrong_map_is_caught(case):
    """The check can fail: a map with one weight changed, or one element
    sent back to the wrong place, is a mismatch, not a ✓."""
    op, make = CASES[case]
    explanation, _ = explained(make)
    node = node_of(explanation, op)
    recorded = node.params[PositionMap.PARAM]
    if recorded.weights is not None:
        weights = np.array(recorded.weights, copy=True)
        weights[0] *= 1.5
        wrong = replace(recorded, weights=weights)
    else:
        inputs = np.array(recorded.inputs, copy=True)
        inputs[0] = (inputs[0] + 1) % (recorded.input_plane or node.operands[0].value.numel)
        wrong = replace(recorded, inputs=inputs)
    nodes = list(explanation.graph.nodes)
    nodes[node.id] = replace(node, params=dict(node.params, **{PositionMap.PARAM: wrong}))
    caught = Explanation.of(replace(explanation.graph, nodes=tuple(nodes)), explanation.observed)
    assert caught.status != "verified"


def test_a_forward_torch_refuses_records_no_map_and_says_why():
    rule = TABLE["UpsampleBilinear2DBackward0"]
    params = {"output_size": (5, 5), "align_corners": "not a bool", "scales_h": None, "scales_w": None}
    assert positions.recorded(rule, params, [(1, 1, 2, 2)], [(1, 1, 5, 5)]) == {}
    with pytest.raises(ValueError, match="capture records"):
        routing.routes(rule.forward, [("self", (1, 1, 2, 2))], dict(params, result_shape=(1, 1, 5, 5)))


def test_probing_leaves_the_script_s_random_state_alone():
    x = real(1, 2, 6, 6)
    before = torch.random.get_rng_state()
    graphexplain.explain(F.interpolate(x, scale_factor=1.5, mode="bicubic").sum())
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.mark.parametrize("make", [lambda x: F.adaptive_avg_pool3d(x, (2, 3, 1)),
                                  lambda x: F.interpolate(x, size=(3, 2, 2))],
                         ids=["adaptive_avg_pool3d", "upsample_nearest3d"])
def test_an_empty_batch_routes_nothing(make):
    x = torch.zeros(0, 2, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    explanation = graphexplain.explain(make(x).sum())
    assert explanation.status == "verified"
    assert explanation.leaf("x").derived_grad.shape == (0, 2, 3, 4, 2)


def test_embedding_s_padding_row_is_a_named_convention(monkeypatch):
    """The map is torch's forward (the padding row copied); torch's backward
    sends that row nothing, which derive's CONVENTIONS says. Without it the
    check fails, so the convention is what makes the row verify."""
    make = CASES["embedding"][1]
    assert explained(make)[0].status == "verified"
    monkeypatch.setattr(routing, "CONVENTIONS", {})
    assert explained(make)[0].status != "verified"


def test_a_replayed_pad_holds_its_value():
    """The map says which elements come from no input; the replay puts the
    pad's value there (torch keeps none on the node: the call's is used)."""
    rule = TABLE["ConstantPadNdBackward0"]
    found = positions.position_map(rule.forward, {"pad": (1, 1)}, [(2,)], [(4,)])
    params = {"pad": (1, 1), "value": 3.5, PositionMap.PARAM: found}
    assert routing.replay(rule.forward, [("self", np.array([1.0, 2.0]))], params)[0].tolist() == [3.5, 1.0, 2.0, 3.5]
    with pytest.raises(KeyError):
        routing.replay(rule.forward, [("self", np.array([1.0, 2.0]))], dict(params, value=None))


def test_a_zero_dim_index_stays_zero_dim():
    """nanmedian(x, dim=-1) of a 1-d x saves a 0-d index; numpy's
    ascontiguousarray made it 1-d and torch's gather refused it (op_db's
    nanmedian sample of shape (2,): a rule-error where it verified before)."""
    found = positions.position_map("take_along(self, indices, dim, keepdim)",
                         {"indices": np.array(1), "dim": -1, "keepdim": False}, [(2,)], [()])
    assert found.inputs.tolist() == [1] and found.outputs.tolist() == [0]
    x = torch.tensor([3.0, 1.0], dtype=torch.float64, requires_grad=True)
    with graphexplain.recording():
        value, _ = torch.nanmedian(x, dim=-1)
    assert graphexplain.explain(value).status == "verified"
