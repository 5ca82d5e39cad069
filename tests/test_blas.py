"""Note [one BLAS thread] (graphexplain/blas.py): numpy's BLAS runs on one
thread while an explanation is made, and as before once it is done."""

from __future__ import annotations

import pytest
import torch

import graphexplain
from graphexplain import blas

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads():
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


def test_one_thread_inside_and_as_before_after():
    before = blas_threads()
    with blas.one_thread():
        assert all(threads == 1 for threads in blas_threads())
    assert blas_threads() == before


def test_explaining_leaves_the_threads_as_it_found_them(monkeypatch):
    seen = []
    from graphexplain import explanation

    real_verify = explanation.verify

    def verify(*arguments, **options):
        seen.append(blas_threads())
        return real_verify(*arguments, **options)

    monkeypatch.setattr(explanation, "verify", verify)
    before, torch_threads = blas_threads(), torch.get_num_threads()
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert graphexplain.explain((w @ w).sum()).status == "verified"
    assert seen and all(threads == 1 for threads in seen[0])
    assert blas_threads() == before and torch.get_num_threads() == torch_threads
