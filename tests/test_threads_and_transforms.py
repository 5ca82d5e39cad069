"""Backward calls the interceptor must count, or leave alone, on scripts
that are not the notes' plain loops: threads, meta tensors, torch.func's
transforms, and graphexplain.explain() called inside a traced script."""

from __future__ import annotations

import json
import textwrap

import pytest

SCRIPTS = {
    "threads": """
        import threading
        import torch

        def work(k):
            w = torch.tensor([1.0, 2.0], requires_grad=True)
            (w * k).sum().backward()
            results[k] = w.grad.tolist()

        results = {}
        threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(sorted(results.items()))
    """,
    "meta": """
        import torch
        x = torch.empty(3, 4, device="meta", requires_grad=True)
        (x * 2).sum().backward()
        print(x.grad.shape, x.grad.device)
    """,
    "vmap_grad": """
        import torch
        from torch.func import grad, vmap

        def f(x):
            return (x.sin() * x).sum()

        x = torch.arange(6.0).reshape(3, 2)
        print(vmap(grad(f))(x).tolist())
        w = torch.tensor([0.5, 1.5], requires_grad=True)
        (w ** 2).sum().backward()
        print(w.grad.tolist())
    """,
    "explain_inside": """
        import torch
        import graphexplain

        w = torch.tensor([1.0, 2.0], requires_grad=True)
        print(graphexplain.explain((w * w).sum()).status)
        (w * 3).sum().backward()
        print(w.grad.tolist())
    """,
}


@pytest.fixture
def traced(graphexplain_main, tmp_path, launch):
    def run(name, *options):
        script = tmp_path / f"{name}.py"
        script.write_text(textwrap.dedent(SCRIPTS[name]))
        plain = launch.python(str(script), cwd=tmp_path).result()
        assert plain.returncode == 0, plain.stderr
        result = graphexplain_main("trace", "--format", "dot", "--json", tmp_path / f"{name}.json", *options, script)
        data = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        return plain, result, data
    return run


def test_every_backward_call_from_sixteen_threads_is_counted(traced):
    plain, run, data = traced("threads", "--call", "all")
    assert plain.stdout in run.stdout
    assert len(data["backward_calls"]) == 16
    assert [call["index"] for call in data["backward_calls"]] == list(range(1, 17))
    assert {call["status"] for call in data["backward_calls"]} == {"verified"}
    assert run.returncode == 0, run.output


def test_meta_tensors_run_as_in_plain_python(traced):
    plain, run, data = traced("meta")
    assert plain.stdout in run.stdout
    assert "Traceback" not in run.output
    assert len(data["backward_calls"]) == 1


def test_functorch_transforms_run_unchanged_and_are_not_counted(traced):
    plain, run, data = traced("vmap_grad")
    assert plain.stdout in run.stdout
    assert "Traceback" not in run.output
    assert [call["call"] for call in data["backward_calls"]] == ["(w ** 2).sum().backward()"]
    assert run.returncode == 0, run.output


def test_explain_inside_a_traced_script_is_no_backward_call(traced):
    plain, run, data = traced("explain_inside")
    assert plain.stdout in run.stdout
    assert len(data["backward_calls"]) == 1
    assert data["backward_calls"][0]["call"] == "(w * 3).sum().backward()"
    assert run.returncode == 0, run.output
