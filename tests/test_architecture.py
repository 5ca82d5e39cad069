"""The pipeline's boundaries (docs: /work/shared/STYLE.md, "The shape of the
program"): the graph model imports none of torch, sympy, graphviz or rich;
only the derivation stage imports sympy; only the renderers import graphviz
or rich. Each import runs in a fresh interpreter, which then reports what
`sys.modules` holds.

Each check runs twice: importing the module the usual way, through the
`graphexplain` package, and importing the module alone, with the package's
``__init__`` bypassed, which is what each stage's own imports decide.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

import graphexplain

PACKAGE = Path(graphexplain.__file__).resolve().parent
HEAVY = ("torch", "sympy", "graphviz", "rich")

# modules → what importing them must not import
BOUNDARIES = {
    "graphexplain.model, graphexplain.results": ("torch", "sympy", "graphviz", "rich"),
    "graphexplain.observed, graphexplain.precision": HEAVY,
    "graphexplain.derive": ("torch", "graphviz", "rich"),
    "graphexplain.render.terminal": ("torch", "sympy"),
    "graphexplain.render.dot": ("torch", "sympy", "rich"),
    "graphexplain.render.json": HEAVY,
    "graphexplain.render.markdown": ("torch", "sympy"),
    "graphexplain.render.html": ("torch", "sympy"),
    "graphexplain.rules": HEAVY,
    "graphexplain.verify": ("sympy", "graphviz", "rich"),
    "graphexplain.updates, graphexplain.rules.optimizers": HEAVY,
    "graphexplain.verify_updates": ("torch", "sympy", "graphviz", "rich"),
}
# The brief's three checks, through the package (its __init__ loads names lazily).
THROUGH_PACKAGE = ["graphexplain.model, graphexplain.results", "graphexplain.derive",
                   "graphexplain.render.terminal"]

# Makes `graphexplain` an empty package object, so `import graphexplain.x`
# runs x's own imports and nothing from graphexplain/__init__.py.
BYPASS_INIT = f"""
import types
package = types.ModuleType("graphexplain")
package.__path__ = [{str(PACKAGE)!r}]
sys.modules["graphexplain"] = package
"""


def import_check(modules: str, bypass_init: bool) -> str:
    return "\n".join([
        "import json, sys",
        BYPASS_INIT if bypass_init else "",
        f"import {modules}",
        f"print(json.dumps(sorted(name for name in {list(HEAVY)!r} if name in sys.modules)))",
    ])


@pytest.fixture(scope="module")
def imported(launch, tmp_path_factory):
    """(modules, bypass_init) → the heavy libraries that import loaded."""
    folder = tmp_path_factory.mktemp("imports")
    wanted = [(modules, True) for modules in BOUNDARIES] + [(modules, False) for modules in THROUGH_PACKAGE]
    started = {(modules, bypass): launch.python("-c", import_check(modules, bypass), cwd=folder)
               for modules, bypass in wanted}

    def loaded(modules: str, bypass_init: bool):
        run = started[modules, bypass_init].result()
        assert run.returncode == 0, run.stderr
        return set(json.loads(run.stdout))

    return loaded


@pytest.mark.parametrize("modules", list(BOUNDARIES))
def test_module_alone_keeps_to_its_stage(imported, modules):
    forbidden = set(BOUNDARIES[modules]) & imported(modules, bypass_init=True)
    assert not forbidden, f"import {modules} loads {sorted(forbidden)}"


@pytest.mark.parametrize("modules", THROUGH_PACKAGE)
def test_import_through_the_package_keeps_to_its_stage(imported, modules):
    forbidden = set(BOUNDARIES[modules]) & imported(modules, bypass_init=False)
    assert not forbidden, f"import {modules} loads {sorted(forbidden)}"


def test_model_is_plain_data():
    """A Graph can be built by hand, without torch, and every later stage reads it."""
    from graphexplain.model import Graph, Leaf, Node, Operand, Root, Value

    x = Value.of([1.0, 2.0])
    graph = Graph(
        nodes=(Node(0, "AccumulateGrad", "x", (Operand("self", "x", x),), (x,)),),
        roots=(Root(0, 0, "x", x, x.data),),
        leaves=(Leaf(0, "x", x),),
    )
    assert graph.leaf_for(0).name == "x" and graph.consumers(0) == ()
    with pytest.raises(ValueError):
        x.data[0] = 5.0  # frozen


# --- the derived side never sees torch's backward numbers --------------------------------


def _imports(path: Path):
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            yield from ([f"{'.' * node.level}{module}"] + [f"{'.' * node.level}{module}.{a.name}" for a in node.names])


@pytest.mark.parametrize("path", sorted((PACKAGE / "derive").glob("*.py")), ids=lambda p: p.name)
def test_derivation_cannot_reach_torch_numbers(path):
    """Note [independence of the derived side] in graphexplain/observed.py:
    no module of the derivation imports the module holding torch's numbers,
    nor the capture or verification stages."""
    forbidden = ("observed", "capture", "verify", "torch")
    for name in _imports(path):
        parts = name.lstrip(".").split(".")
        assert not set(parts) & set(forbidden), f"{path.name} imports {name}"


def test_the_graph_holds_no_torch_numbers():
    """What derive reads (Node, Leaf, Graph, Operand, Root) has no field for a
    gradient torch computed; those live on observed.Observed alone."""
    import dataclasses

    from graphexplain import model, observed

    for kind in (model.Node, model.Leaf, model.Graph, model.Operand, model.Root):
        fields = {field.name for field in dataclasses.fields(kind)}
        assert not {f for f in fields if f.startswith("torch") or f in ("grad_after", "grad")}, kind.__name__
    assert {f.name for f in dataclasses.fields(observed.NodeGradients)} == {"upstream", "downstream"}


# --- the public API --------------------------------------------------------------


PUBLIC = list(graphexplain.__all__)


@pytest.mark.parametrize("name", [n for n in PUBLIC if inspect.isfunction(getattr(graphexplain, n))])
def test_public_function_has_a_docstring(name):
    doc = inspect.getdoc(getattr(graphexplain, name))
    assert doc and len(doc.split()) >= 5, f"graphexplain.{name} has no docstring worth the name"


def test_public_api_names_exist():
    assert len(PUBLIC) == len(set(PUBLIC))
    for name in PUBLIC:
        assert hasattr(graphexplain, name), name
    assert {"explain", "recording", "trace"} <= set(PUBLIC)
