"""A fast slice of the op-coverage yardstick (benchmarks/coverage.py), in CI.

The whole yardstick takes minutes; here a fixed handful of op_db ops and
module_db modules is walked the same way, and each must come out as the
committed benchmarks/coverage.json says it did: the numbers in docs/coverage.md
stay honest, and no op crashes graphexplain.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OPS = ["add", "mul", "div", "exp", "log", "sigmoid", "tanh", "mean", "sum", "matmul", "mm", "addmm",
       "t", "transpose", "reshape", "view", "nn.functional.mse_loss", "nn.functional.binary_cross_entropy"]
MODULES = ["Linear", "Sigmoid", "Tanh", "ReLU"]


@pytest.fixture(scope="module")
def yardstick():
    pytest.importorskip("expecttest")  # torch.testing._internal needs it
    spec = importlib.util.spec_from_file_location("yardstick", REPO / "benchmarks" / "coverage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed():
    return json.loads((REPO / "benchmarks" / "coverage.json").read_text(encoding="utf-8"))


def test_a_slice_of_op_db_matches_the_committed_measurement(yardstick, committed):
    tally = yardstick.Tally()
    yardstick.walk_ops(tally, set(OPS), None)
    assert not tally.crashes, tally.crashes
    measured = {group: status for group, status in tally.groups.items()}
    assert measured, "the slice met no op"
    for group, status in measured.items():
        assert committed["groups"].get(group) == status, f"{group}: now {status}, committed {committed['groups'].get(group)}"


def test_a_slice_of_module_db_matches_the_committed_measurement(yardstick, committed, monkeypatch):
    from torch.testing._internal import common_modules

    chosen = [info for info in common_modules.module_db if info.module_cls.__name__ in MODULES]
    monkeypatch.setattr(common_modules, "module_db", chosen)
    tally = yardstick.Tally()
    yardstick.walk_modules(tally, None)
    assert not tally.crashes, tally.crashes
    for group, status in tally.groups.items():
        assert committed["groups"].get(group) == status, f"{group}: now {status}, committed {committed['groups'].get(group)}"
