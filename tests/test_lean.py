"""The command line's lean path (Note [a big array's last use] in
graphexplain/digest.py): where no report reads big arrays whole, each node
is verified as soon as it is derived and its big arrays are kept as digests.
It must decide every check exactly as the whole path does, wrong gradients
included, and report the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graphexplain import cli
from graphexplain.digest import LIMIT, RELEASED_FROM, Digest, digested

from test_faults import SQUARE

REST = """
a = torch.randn(160, 120, requires_grad=True)   # each over digest.RELEASED_FROM elements
b = torch.randn(120, 150, requires_grad=True)
h = (a @ b * 0.05).tanh()  # not saturated: every element passes a gradient on
loss = (Square.apply(h) * 3 + h.exp()).mean()
loss.backward()
print(f"loss {loss.item():.6f}")
"""


def big_script(backward: str) -> str:
    """A script whose Function (test_faults' Square) has the given backward, on big tensors."""
    return "import torch\ntorch.manual_seed(0)\n" + SQUARE.format(backward_body=f"return {backward}") + REST


RIGHT = "grad * 2 * x"
WRONG = {
    "scaled": "grad * 2 * x * 1.01",
    "one element": "grad * 2 * x + (torch.arange(x.numel()).reshape(x.shape) == 7).to(x.dtype) * 1e-3",
}


def _trace(tmp_path, backward, *options):
    script = tmp_path / "big.py"
    script.write_text(big_script(backward), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        code = cli.main(["trace", "--quiet", "--format", "dot", "--json", "result.json", *options, str(script)])
    return code, json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))


def _without_keys(value):
    """The JSON without the sidecar's keys (only --json-full names them)."""
    if isinstance(value, dict):
        return {k: _without_keys(v) for k, v in value.items() if k not in ("key", "arrays")}
    if isinstance(value, list):
        return [_without_keys(v) for v in value]
    return value


@pytest.mark.parametrize("backward", [RIGHT, *WRONG.values()], ids=["right", *WRONG])
def test_lean_and_whole_paths_give_the_same_report(tmp_path, backward):
    lean_code, lean = _trace(tmp_path, backward)
    whole_code, whole = _trace(tmp_path, backward, "--json-full")
    assert lean_code == whole_code
    assert _without_keys(lean) == _without_keys(whole)


@pytest.mark.parametrize("fault", sorted(WRONG))
def test_a_wrong_backward_on_a_big_tensor_is_caught_on_the_lean_path(tmp_path, fault):
    code, result = _trace(tmp_path, WRONG[fault])
    assert code == 1
    call = result["backward_calls"][0]
    assert call["status"] == "mismatch"
    first = next(node for node in call["nodes"] if node["status"] != "verified")
    assert first["op"] == "SquareBackward" and first["status"] == "mismatch"  # where the fault is
    assert all(leaf["status"] != "verified" for leaf in call["leaves"])


def test_the_right_backward_verifies_on_the_lean_path(tmp_path):
    code, result = _trace(tmp_path, RIGHT)
    call = result["backward_calls"][0]
    assert code == 0 and call["status"] == "verified"
    assert all(node["status"] == "verified" for node in call["nodes"])


def test_a_digest_keeps_what_the_reports_show():
    data = np.linspace(-3.0, 5.0, LIMIT + 1).reshape(7, -1)
    digest = Digest.of(data)
    assert digest.shape == data.shape and digest.size == data.size
    assert digest.last == data.reshape(-1)[-1]
    assert digest.summary["max"] == 5.0 and digest.summary["min"] == -3.0


def test_only_arrays_from_the_release_size_are_digested():
    assert digested(np.ones(RELEASED_FROM - 1)).shape == (RELEASED_FROM - 1,)  # kept whole
    assert isinstance(digested(np.ones(RELEASED_FROM)), Digest)
