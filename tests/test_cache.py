"""The derivation cache on disk (Note [the derivation cache on disk] in
graphexplain/derive/disk_cache.py): a warm run gives byte for byte what a
cold one and one without the cache give; damaged, foreign or other
versions' entries are ignored and written again; an unwritable folder or
GRAPHEXPLAIN_CACHE=off means no cache, never an error."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from graphexplain.derive import cache, disk_cache, formula
from graphexplain.rules import TABLE

from conftest import REPO, RUN_TIMEOUT, subprocess_env

SCRIPT = REPO / "examples" / "autograd_mean.py"
ENCODER = REPO / "tests" / "scripts" / "transformer_encoder.py"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A cache of this test's own, and the module's switches as a new process has them."""
    where = tmp_path / "cache"
    monkeypatch.setenv(disk_cache.ENV, str(where))
    monkeypatch.setattr(disk_cache, "_switched_off", False)
    monkeypatch.setattr(disk_cache, "_unwritable", False)
    return where


def entries(where: Path):
    return sorted(where.rglob("*.json"))


def test_an_entry_is_kept_and_read_back(folder):
    assert disk_cache.remember("kind", "key", lambda: "made") == "made"
    assert disk_cache.remember("kind", "key", lambda: pytest.fail("derived again")) == "made"
    assert disk_cache.load("kind", "another key") is None
    assert disk_cache.load("another kind", "key") is None
    (entry,) = entries(folder)
    stored = json.loads(entry.read_text(encoding="utf-8"))
    assert stored["value"] == "made" and "sympy" in stored["versions"] and "graphexplain" in stored["versions"]


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # cut short
    lambda text: "\x00\xff not json",
    lambda text: json.dumps(["a", "list"]),
    lambda text: json.dumps({**json.loads(text), "key": "someone else's"}),  # a collision of hashes
    lambda text: json.dumps({**json.loads(text), "versions": "graphexplain 0.0.0; sympy 0.1"}),
    lambda text: json.dumps({**json.loads(text), "value": 42}),
], ids=["truncated", "garbage", "not-an-entry", "foreign-key", "other-versions", "not-text"])
def test_a_damaged_or_foreign_entry_is_ignored_and_written_again(folder, damage):
    disk_cache.remember("kind", "key", lambda: "made")
    (entry,) = entries(folder)
    entry.write_bytes(damage(entry.read_text(encoding="utf-8")).encode("utf-8", "surrogateescape"))
    assert disk_cache.load("kind", "key") is None
    assert disk_cache.remember("kind", "key", lambda: "made again") == "made again"
    assert disk_cache.load("kind", "key") == "made again"


def test_other_versions_never_share_an_entry(folder, monkeypatch):
    disk_cache.remember("kind", "key", lambda: "old sympy's")
    monkeypatch.setattr(disk_cache, "_versions", "graphexplain 0.1.0; sympy 99.0")
    assert disk_cache.load("kind", "key") is None
    assert disk_cache.remember("kind", "key", lambda: "new sympy's") == "new sympy's"
    assert len(entries(folder)) == 2


def test_an_unwritable_folder_means_no_cache(tmp_path, monkeypatch):
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(disk_cache.ENV, str(blocked / "cache"))
    monkeypatch.setattr(disk_cache, "_unwritable", False)
    monkeypatch.setattr(disk_cache, "_switched_off", False)
    assert disk_cache.remember("kind", "key", lambda: "made") == "made"
    assert disk_cache.remember("kind", "key", lambda: "made again") == "made again"
    assert blocked.read_text() == "not a folder"


@pytest.mark.parametrize("how", ["environment", "switch"])
def test_off_means_nothing_read_or_written(folder, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv(disk_cache.ENV, "off")
    else:
        disk_cache.switch_off()
    assert disk_cache.folder() is None
    assert disk_cache.remember("kind", "key", lambda: "made") == "made"
    assert disk_cache.remember("kind", "key", lambda: "made again") == "made again"
    assert not folder.exists()


@pytest.mark.parametrize("op, input_name, mode", [
    ("MulBackward0", "self", ""), ("MeanBackward0", "self", "mean"), ("SigmoidBackward0", "self", ""),
    ("FloorBackward0", "self", ""), ("ErfBackward0", "self", ""),
])
def test_a_local_gradient_reads_back_as_the_same_expression(folder, op, input_name, mode):
    rule = TABLE[op]
    fresh = formula._local_gradient(rule, input_name, mode)
    key = cache.row_key(rule, input_name, mode)
    assert cache.derived("local-gradient", key, lambda: fresh) == fresh
    again = cache.derived("local-gradient", key, lambda: pytest.fail("derived again"))
    assert again == fresh and str(again) == str(fresh) and type(again) is type(fresh)


def test_a_changed_row_is_derived_again(folder):
    rule = TABLE["MulBackward0"]
    changed = replace(rule, forward="self*other*other")
    assert cache.row_key(rule, "self", "") != cache.row_key(changed, "self", "")
    cache.derived("local-gradient", cache.row_key(rule, "self", ""), lambda: formula._local_gradient(rule, "self", ""))
    derived = cache.derived("local-gradient", cache.row_key(changed, "self", ""),
                            lambda: formula._local_gradient(changed, "self", ""))
    assert str(derived) == "other**2"


# --- whole runs ---------------------------------------------------------------


def trace(tmp_path: Path, cache_setting: str, *options: str, script=(SCRIPT,)):
    """`graphexplain trace` on the notes' first script (or `script`, with its
    arguments): stdout, the DOT and the JSON."""
    out = tmp_path / "out"
    env = dict(subprocess_env(), GRAPHEXPLAIN_CACHE=cache_setting)
    done = subprocess.run([sys.executable, "-m", "graphexplain", "trace", "--out", str(out), "--format", "dot",
                           "--json", str(out / "result.json"), *options, *map(str, script)],
                          cwd=str(tmp_path), env=env, capture_output=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout, (out / "call-1.dot").read_bytes(), (out / "result.json").read_bytes()


def test_warm_cold_and_uncached_runs_are_byte_identical(tmp_path):
    where = tmp_path / "cache"
    cold = trace(tmp_path, str(where))
    written = entries(where)
    assert written, "the cold run kept nothing"
    warm = trace(tmp_path, str(where))
    assert warm == cold
    assert entries(where) == written  # the warm run found everything it needed
    assert trace(tmp_path, "off") == cold
    assert trace(tmp_path, str(tmp_path / "unused"), "--no-cache") == cold
    assert not (tmp_path / "unused").exists()
    for entry in written:  # every entry damaged: ignored, derived again, the same output
        entry.write_text("{", encoding="utf-8")
    assert trace(tmp_path, str(where)) == cold
    assert all(json.loads(entry.read_text(encoding="utf-8"))["value"] for entry in written)


def test_matrix_and_index_formulas_are_kept_and_read_back_the_same(tmp_path):
    """A transformer's matrix products and softmax, layer norm and loss are
    derived by sympy once, kept, and a warm run prints what a cold one did."""
    where = tmp_path / "cache"
    cold = trace(tmp_path, str(where), script=(ENCODER, "--layers", "1"))
    kinds = {json.loads(entry.read_text(encoding="utf-8"))["kind"] for entry in entries(where)}
    assert {"matrix-vector-jacobian-product", "index-vector-jacobian-product"} <= kinds
    written = entries(where)
    assert trace(tmp_path, str(where), script=(ENCODER, "--layers", "1")) == cold
    assert entries(where) == written
    assert trace(tmp_path, "off", script=(ENCODER, "--layers", "1")) == cold


@pytest.mark.parametrize("op, input_name, shapes", [
    ("MmBackward0", "self", ((3, 4), (4, 5))), ("MmBackward0", "mat2", ((3, 4), (4, 5))),
    ("AddmmBackward0", "mat1", ((3, 5), (3, 4), (4, 5))), ("MvBackward0", "vec", ((3, 4), (4, 1))),
])
def test_a_matrix_product_reads_back_as_the_same_expression(folder, op, input_name, shapes):
    rule = TABLE[op]
    fresh, _ = formula.vector_jacobian_product.__wrapped__(rule, input_name, shapes)  # derived, and kept
    again = cache.derived("matrix-vector-jacobian-product", cache.row_key(rule, input_name, shapes, ()),
                          lambda: pytest.fail("derived again"))
    assert again == fresh and str(again) == str(fresh)


def test_a_warm_run_does_not_simplify(tmp_path):
    """The slow part of sympy (simplify, which imports sympy.physics) is not run when warm."""
    where = tmp_path / "cache"
    trace(tmp_path, str(where))
    probe = (f"import sys; from graphexplain.cli import main; "
             f"main(['trace', '--quiet', '--format', 'dot', '--out', 'again', {str(SCRIPT)!r}]); "
             f"print('physics' if 'sympy.physics' in sys.modules else 'no physics', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=str(tmp_path), capture_output=True,
                          env=dict(subprocess_env(), GRAPHEXPLAIN_CACHE=str(where)), timeout=RUN_TIMEOUT)
    assert done.stderr.decode().strip().endswith("no physics"), done.stderr.decode()


def test_the_disk_cache_needs_no_sympy(tmp_path):
    """derive/disk_cache.py alone (the packages above it stubbed) imports no sympy."""
    path = REPO / "graphexplain" / "derive" / "disk_cache.py"
    probe = "\n".join([
        "import importlib.util, sys, types",
        "package = types.ModuleType('graphexplain'); package.__path__ = []; package.__version__ = 'test'",
        "derive = types.ModuleType('graphexplain.derive'); derive.__path__ = []",
        "sys.modules.update({'graphexplain': package, 'graphexplain.derive': derive})",
        f"spec = importlib.util.spec_from_file_location('graphexplain.derive.disk_cache', {str(path)!r})",
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)",
        "assert module.remember('kind', 'key', lambda: 'made') == 'made'",
        "assert module.load('kind', 'key') == 'made'",
        "print('sympy' in sys.modules)",
    ])
    done = subprocess.run([sys.executable, "-c", probe], cwd=str(tmp_path), capture_output=True, timeout=RUN_TIMEOUT,
                          env=dict(subprocess_env(), GRAPHEXPLAIN_CACHE=str(tmp_path / "cache")))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "False"


def test_a_small_script_imports_no_scipy(tmp_path):
    """Note [scipy only when a formula needs it] in derive/functions.py: nor
    the numpy submodules lambdify's star import would load."""
    probe = (f"import sys; from graphexplain.cli import main; "
             f"main(['trace', '--quiet', '--format', 'dot', '--out', 'out', {str(SCRIPT)!r}]); "
             f"print(sorted(m for m in ('scipy', 'numpy.polynomial', 'numpy.f2py') if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=str(tmp_path), capture_output=True,
                          env=dict(subprocess_env(), GRAPHEXPLAIN_CACHE="off"), timeout=RUN_TIMEOUT)
    assert done.stderr.decode().strip().endswith("[]"), done.stderr.decode()


def test_a_special_function_still_computes_with_scipy():
    import numpy as np
    import sympy as sp

    from graphexplain.derive import functions

    x = sp.Symbol("x", real=True)
    erfc = functions.lambdify([x], sp.erfc(x))  # math's erfc would take no array
    assert np.allclose(erfc(np.array([0.0, 1.0])), [1.0, 0.15729920705028513])
    assert functions.lambdify([x], sp.exp(x))(np.array([0.0])).tolist() == [1.0]


def test_the_collector_is_left_as_it_was(graphexplain_main):
    import gc

    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert graphexplain_main("trace", "--quiet", "--format", "dot", "--out", "out", SCRIPT).returncode == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
