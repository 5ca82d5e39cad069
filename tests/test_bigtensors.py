"""Big tensors held once and checked block by block (issue #10): the lean
paths give the same numbers and the same checks as the whole computations,
and a wrong number is still caught."""

import numpy as np
import pytest

from graphexplain import verify
from graphexplain.capture.snapshot import _same_numbers
from graphexplain.derive.chain import _lean


def _whole(monkeypatch, *args, **kwargs):
    monkeypatch.setattr(verify, "BLOCK", 1 << 40)  # never in blocks
    return verify.compare(*args, **kwargs)


@pytest.mark.parametrize("budget", [None, "array", "broadcast"])
def test_a_passing_check_in_blocks_is_the_whole_check(monkeypatch, budget):
    rng = np.random.default_rng(0)
    derived = rng.standard_normal((700, 900))
    torch_number = derived * (1 + 1e-8 * rng.standard_normal(derived.shape))
    budgets = {None: None, "array": 1e-7 * np.abs(derived) + 1e-9,
               "broadcast": np.broadcast_to(np.array(1e-6), derived.shape)}
    blocked = verify.compare("x", derived, torch_number, "float32", budgets[budget])
    whole = _whole(monkeypatch, "x", derived, torch_number, "float32", budgets[budget])
    assert blocked == whole and blocked.status == verify.VERIFIED


@pytest.mark.parametrize("wrong", [(0, 0), (350, 451), (699, 899)])
def test_one_wrong_element_of_a_big_gradient_is_caught(monkeypatch, wrong):
    derived = np.ones((700, 900))
    torch_number = derived.copy()
    torch_number[wrong] = 1.001  # far beyond float32 rounding
    check = verify.compare("x", derived, torch_number, "float32", np.full(derived.shape, 1e-7))
    assert check.status == verify.MISMATCH and check.worst_index == wrong
    assert check == _whole(monkeypatch, "x", derived, torch_number, "float32", np.full(derived.shape, 1e-7))


def test_a_nan_in_a_big_gradient_is_left_to_the_whole_check():
    derived = np.ones((700, 900))
    torch_number = derived.copy()
    torch_number[5, 5] = np.nan
    assert verify.compare("x", derived, torch_number, "float32").status == verify.MISMATCH


def test_lean_holds_a_broadcast_number_once_and_gives_the_same_numbers():
    spread = np.broadcast_to(np.array([[0.25]]), (2000, 3000))
    product = _lean(np.multiply, spread, 1 / 7)
    assert product.strides == (0, 0) and np.array_equal(product, np.broadcast_to(0.25 * (1 / 7), spread.shape))
    local = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(_lean(np.multiply, np.broadcast_to(2.0, (2, 3)), local), 2.0 * local)


def test_a_grad_after_is_shared_only_when_its_numbers_are_the_same_to_the_bit():
    arrived = np.array([1.0, 0.0, 2.0])
    assert _same_numbers(arrived.copy(), arrived) is arrived
    assert _same_numbers(np.array([1.0, -0.0, 2.0]), arrived) is not arrived
    with_nan = np.array([1.0, np.nan])
    assert _same_numbers(with_nan.copy(), with_nan) is not with_nan
    assert _same_numbers(np.array([1.0, 0.0, 3.0]), arrived) is not arrived
