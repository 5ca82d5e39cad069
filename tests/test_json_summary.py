"""Big tensors in the JSON (Note [summaries of big tensors] in
graphexplain/render/json.py): over SUMMARY_LIMIT elements a tensor is a
summary, small ones stay number lists, and ``--json-full`` puts the whole
arrays in a ``.npz`` sidecar that the summaries name by key."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graphexplain import cli
from graphexplain.render.json import HEAD, SUMMARY_LIMIT, Arrays, summary

BIG_SCRIPT = """\
import torch
torch.manual_seed(0)
a = torch.randn(40, 30, requires_grad=True)   # 1200 elements: over the limit
b = torch.randn(30, 2, requires_grad=True)    # 60: under it
loss = (a @ b).relu().mean()
loss.backward()
print(f"loss {loss.item():.6f}")
"""


def test_small_tensors_stay_lists():
    out = Arrays(full=True)
    assert out(np.arange(4.0).reshape(2, 2), "x") == [[0.0, 1.0], [2.0, 3.0]]
    assert out(np.ones(SUMMARY_LIMIT), "y") == [1.0] * SUMMARY_LIMIT
    assert out(None, "z") is None and out.arrays == {}


def test_summary_fields():
    data = np.arange(SUMMARY_LIMIT + 1, dtype=np.float64).reshape(7, -1) - 500.0
    found = summary(data, "k")
    assert found["summary"] is True and found["key"] == "k"
    assert found["shape"] == [7, 143] and found["size"] == SUMMARY_LIMIT + 1 and found["dtype"] == "float64"
    assert found["head"] == [-500.0, -499.0, -498.0, -497.0, -496.0, -495.0][:HEAD]
    assert found["min"] == -500.0 and found["max"] == 500.0 and found["max_abs"] == 500.0
    assert found["l2_norm"] == pytest.approx(float(np.linalg.norm(data)))
    assert found["nonfinite"] == 0


def test_summary_counts_and_skips_nonfinite():
    data = np.ones(SUMMARY_LIMIT + 5)
    data[:3] = [np.nan, np.inf, -np.inf]
    found = summary(data)
    assert found["nonfinite"] == 3 and found["max_abs"] == 1.0 and found["min"] == 1.0
    assert found["head"][:3] == ["nan", "inf", "-inf"]
    assert found["l2_norm"] == pytest.approx(np.sqrt(SUMMARY_LIMIT + 2))
    assert "key" not in found


def test_complex_summary_has_no_order():
    found = summary(np.full(SUMMARY_LIMIT + 1, 3 + 4j))
    assert found["max_abs"] == 5.0 and found["min"] is None and found["max"] is None
    assert found["head"][0] == "3+4j"


def test_summaries_are_plain_json():
    json.dumps(summary(np.linspace(-1, 1, 5000)), allow_nan=False)


def _trace(tmp_path, *options):
    script = tmp_path / "big.py"
    script.write_text(BIG_SCRIPT, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        code = cli.main(["trace", "--quiet", "--format", "dot", "--json", "result.json", *options, str(script)])
    return code, json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))


def test_a_run_summarises_only_the_big_tensors(tmp_path):
    code, result = _trace(tmp_path)
    assert code == 0 and "arrays" not in result
    call = result["backward_calls"][0]
    leaves = {leaf["name"]: leaf for leaf in call["leaves"]}
    assert leaves["a"]["value"]["summary"] is True and leaves["a"]["value"]["shape"] == [40, 30]
    assert "key" not in leaves["a"]["value"]  # no sidecar asked for
    assert isinstance(leaves["b"]["value"], list) and len(leaves["b"]["value"]) == 30
    assert leaves["a"]["derived_grad"]["summary"] and leaves["a"]["status"] == "verified"
    check = leaves["a"]["checks"][0]  # a check stays whole: its worst error and what rounding allows there
    assert check["status"] == "verified" and isinstance(check["max_abs_error"], float)
    assert isinstance(check["allowed"], float)
    assert not (tmp_path / "result.npz").exists()


def test_json_full_round_trip(tmp_path):
    code, result = _trace(tmp_path, "--json-full")
    assert code == 0 and result["arrays"] == "result.npz"
    arrays = np.load(tmp_path / "result.npz")
    call = result["backward_calls"][0]
    summaries = []

    def collect(value):
        if isinstance(value, dict):
            if value.get("summary") is True:
                summaries.append(value)
            else:
                for item in value.values():
                    collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(call)
    assert summaries and {s["key"] for s in summaries} == set(arrays.files)
    for found in summaries:
        whole = arrays[found["key"]]
        assert list(whole.shape) == found["shape"] and whole.size > SUMMARY_LIMIT
        assert float(np.linalg.norm(whole)) == pytest.approx(found["l2_norm"], rel=1e-9)
        assert [float(f"{v:.10g}") for v in whole.reshape(-1)[:HEAD]] == found["head"]
    a = next(leaf for leaf in call["leaves"] if leaf["name"] == "a")
    derived, torch_grad = arrays[a["derived_grad"]["key"]], arrays[a["torch_grad"]["key"]]
    assert derived.shape == (40, 30) and np.allclose(derived, torch_grad, rtol=1e-5, atol=1e-7)


def test_json_full_needs_json(tmp_path, capsys):
    script = tmp_path / "big.py"
    script.write_text(BIG_SCRIPT, encoding="utf-8")
    code = cli.main(["trace", "--quiet", "--json-full", "--out", str(tmp_path / "out"), str(script)])
    assert code == 2 and "--json-full" in capsys.readouterr().err


def test_json_full_leaves_a_strangers_npz_alone(tmp_path, capsys):
    script = tmp_path / "big.py"
    script.write_text(BIG_SCRIPT, encoding="utf-8")
    (tmp_path / "result.npz").write_bytes(b"not ours")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        code = cli.main(["trace", "--quiet", "--json", "result.json", "--json-full", str(script)])
    assert code == 2 and "result.npz" in capsys.readouterr().err
    assert (tmp_path / "result.npz").read_bytes() == b"not ours"


def test_the_norm_of_huge_or_tiny_numbers_is_finite_and_quiet():
    """numpy's norm squares first: 1e200 overflowed to inf, with a RuntimeWarning
    on the user's terminal (a float64 budget grown through a 1000-step LSTM)."""
    import warnings
    from graphexplain.render.formatting import array as shown
    from graphexplain.render.json import summary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for scale in (1e200, 1e-200):
            data = np.full(2000, 3.0 * scale)
            assert summary(data)["l2_norm"] == pytest.approx(3.0 * scale * np.sqrt(2000), rel=1e-9)
            assert "inf" not in shown(data)
