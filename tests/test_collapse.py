"""Big graphs drawn and summarised by module (render/collapse.py): on a
graph built by hand, on a real 6-layer nn.TransformerEncoder, and through
`graphexplain trace` (--depth, --expand, --full). A deliberately wrong
gradient inside a collapsed module must show on its box and in its row."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from graphexplain.model import Graph, Leaf, Node, Operand, Root, Value
from graphexplain.render.collapse import (ALL, BUDGET, TALL, THRESHOLD, Cluster, View, collapse, height,
                                         parse_depth)
from graphexplain.results import MISMATCH, VERIFIED, NodeVerification, Verification

SCRIPTS = Path(__file__).resolve().parent / "scripts"
ENCODER = SCRIPTS / "transformer_encoder.py"


# --- a graph built by hand -----------------------------------------------------------------

def chain_graph(blocks: int) -> Graph:
    """loss = sum(blocks[-1](...blocks[0](stem(x)))): each block adds its input
    to `scale(input) = input * w_k`; the stem is exp. In backward order: the
    sum, then per block (last first) its add, its mul and its weight, then
    the stem's exp and x."""
    value = Value.of([1.0])
    add_id = {k: 1 + (blocks - 1 - k) * 3 for k in range(blocks)}
    stem, x = 1 + 3 * blocks, 2 + 3 * blocks
    nodes = [Node(0, "SumBackward0", "loss", (Operand("self", "h", value, add_id[blocks - 1]),), (value,))]
    for k in reversed(range(blocks)):
        below = add_id[k - 1] if k else stem
        add, mul, weight = add_id[k], add_id[k] + 1, add_id[k] + 2
        nodes.append(Node(add, "AddBackward0", f"h{k}", (Operand("self", "s", value, mul),
                                                          Operand("other", "h", value, below)),
                          (value,), module=f"net.blocks.{k} (Block)"))
        nodes.append(Node(mul, "MulBackward0", f"s{k}", (Operand("self", "h", value, below),
                                                          Operand("other", f"w{k}", value, weight)),
                          (value,), module=f"net.blocks.{k}.scale (Scale)"))
        nodes.append(Node(weight, "AccumulateGrad", f"w{k}", (Operand("self", f"w{k}", value),), (value,)))
    nodes.append(Node(stem, "ExpBackward0", "e", (Operand("self", "x", value, x),), (value,), module="net.stem (Stem)"))
    nodes.append(Node(x, "AccumulateGrad", "x", (Operand("self", "x", value),), (value,)))
    nodes.sort(key=lambda node: node.id)
    leaves = tuple(Leaf(node.id, node.name, value) for node in nodes if node.is_leaf)
    return Graph(tuple(nodes), (Root(0, 0, "loss", value, value.data),), leaves, "loss.backward()")


def verification(graph: Graph, wrong=()) -> Verification:
    """Every node verified but those in `wrong` (mismatch) and the nodes
    below the first of them (mismatch inherited from it)."""
    below = set()
    todo = list(wrong)
    while todo:
        for operand in graph.nodes[todo.pop()].operands:
            if operand.producer is not None and operand.producer not in below:
                below.add(operand.producer)
                todo.append(operand.producer)
    first = min(wrong) if wrong else None
    nodes = tuple(NodeVerification(n.id, MISMATCH if n.id in wrong or n.id in below else VERIFIED,
                                   inherited_from=first if n.id in below and n.id not in wrong else None)
                  for n in graph.nodes)
    return Verification(MISMATCH if wrong else VERIFIED, nodes, (), first)


def statements(source: str):
    """The node statements of a DOT source, each whole (labels span lines)."""
    return re.findall(r'^\t+\w+ \[label="(?:[^"\\]|\\.)*"[^\]]*\]', source, flags=re.M)


def boxes(collapsed):
    return [item for item in collapsed.items() if item.box is not None]


def clusters(members):
    for member in members:
        if isinstance(member, Cluster):
            yield member
            yield from clusters(member.members)


BLOCKS = 60  # 182 nodes: over the threshold


def test_a_small_graph_is_left_as_it_is():
    graph = chain_graph(10)
    assert len(graph.nodes) <= THRESHOLD
    assert collapse(graph, verification(graph)) is None
    assert collapse(graph, verification(graph), View(depth=ALL)) is None
    assert collapse(graph, verification(graph), View(depth=2)) is not None  # asked for


def test_a_tall_graph_of_modules_is_drawn_by_module():
    graph = chain_graph(30)  # 92 nodes, under the threshold, but 63 deep: the sum, 30 × (add, mul), exp, x
    assert len(graph.nodes) <= THRESHOLD and height(graph) == 63 > TALL
    assert height(chain_graph(10)) == 23
    assert collapse(graph, verification(graph)) is not None
    assert collapse(graph, verification(graph), View(depth=ALL)) is None


def test_a_tall_graph_without_modules_stays_node_by_node():
    # no module to box: only runs of ops would fold, hiding a hand-written loop's every op
    graph = chain_graph(30)
    graph = dataclasses.replace(graph, nodes=tuple(dataclasses.replace(n, module=None) for n in graph.nodes))
    assert height(graph) > TALL
    assert collapse(graph, verification(graph)) is None


def test_a_big_graph_is_drawn_by_module_and_the_run_of_blocks_once():
    graph = chain_graph(BLOCKS)
    top = collapse(graph, verification(graph), View(depth=1))  # net opened: its two children are boxes
    assert sorted(item.box.path for item in boxes(top)) == ["net.blocks", "net.stem"]
    collapsed = collapse(graph, verification(graph), View(depth=2))  # and these opened too
    (run,) = boxes(collapsed)
    assert run.box.path == f"net.blocks.0–{BLOCKS - 1}"
    assert run.count == BLOCKS and run.box.kind == "Block" and run.box.ops == 2 and run.box.leaves == 1
    assert len(run.nodes) == 3 * BLOCKS and run.status == VERIFIED
    stem = next(node.id for node in graph.nodes if node.op == "ExpBackward0")
    assert collapsed.edges == ((run.id, "n0"), (f"n{stem}", run.id), (f"n{stem + 1}", f"n{stem}"))
    assert len(set(collapsed.item_of.values())) == 4  # the sum, the run, the stem's exp and x
    assert set(collapsed.item_of) == {node.id for node in graph.nodes}  # every node is shown somewhere


def test_depth_zero_is_one_box_and_all_depths_stay_in_order():
    graph = chain_graph(BLOCKS)
    sizes = [len(set(collapse(graph, verification(graph), View(depth=d)).item_of.values())) for d in range(5)]
    assert sizes[0] == 2  # the sum, and net
    assert sizes == sorted(sizes)
    automatic = collapse(graph, verification(graph))
    assert automatic.depth == 4 and len(set(automatic.item_of.values())) <= BUDGET


def test_an_opened_run_is_drawn_once_with_its_count():
    graph = chain_graph(BLOCKS)
    collapsed = collapse(graph, verification(graph), View(depth=3))
    (run,) = [c for c in clusters(collapsed.members) if c.kind == "Block"]
    assert run.count == BLOCKS and run.path == f"net.blocks.0–{BLOCKS - 1}"
    (scale,) = [item for item in boxes(collapsed) if item.box.kind == "Scale"]
    assert scale.count == BLOCKS and scale.box.path == f"net.blocks.0–{BLOCKS - 1}.scale"
    # the links from one block to the next are the count, not arrows from the box to itself
    assert all(producer != consumer for producer, consumer in collapsed.edges)


def test_expand_opens_one_block_and_splits_the_run_around_it():
    graph = chain_graph(BLOCKS)
    collapsed = collapse(graph, verification(graph), View(depth=1, expand=("blocks.3",)))
    assert collapsed.expanded == ("net.blocks.3",)
    runs = sorted((item.box.path, item.count) for item in boxes(collapsed) if item.box.kind == "Block")
    assert runs == [("net.blocks.0–2", 3), (f"net.blocks.4–{BLOCKS - 1}", BLOCKS - 4)]
    (opened,) = [c for c in clusters(collapsed.members) if c.path == "net.blocks.3"]
    assert opened.count == 1
    inside = {graph.nodes[n].name for n in collapsed.inside_expanded}
    assert inside == {"h3", "s3", "w3"}


def test_an_unknown_expand_is_reported_not_fatal():
    graph = chain_graph(BLOCKS)
    collapsed = collapse(graph, verification(graph), View(expand=("nosuch",)))
    assert collapsed.unknown == ("nosuch",) and not collapsed.inside_expanded


def test_a_wrong_gradient_inside_a_run_marks_its_box():
    graph = chain_graph(BLOCKS)
    wrong = next(node.id for node in graph.nodes if node.name == "s7")
    collapsed = collapse(graph, verification(graph, [wrong]), View(depth=1))
    (run,) = [item for item in boxes(collapsed) if item.box.path == "net.blocks"]
    assert run.status == MISMATCH and run.box.first_mismatch == wrong
    (stem,) = [item for item in boxes(collapsed) if item.box.path == "net.stem"]
    assert stem.status == MISMATCH and stem.box.first_mismatch > wrong  # inherited, not where it starts
    opened = collapse(graph, verification(graph, [wrong]), View(depth=4))
    (scale,) = [item for item in opened.items() if wrong in item.nodes]
    assert scale.status == MISMATCH and scale.count == BLOCKS  # combined over the run's calls


def test_parse_depth():
    assert parse_depth("all") == ALL and parse_depth("3") == 3
    for bad in ("-1", "x"):
        with pytest.raises(ValueError):
            parse_depth(bad)


def test_collapse_imports_no_renderer_or_torch():
    code = ("import sys, graphexplain.render.collapse; "
            "print(sorted(m for m in ('torch', 'sympy', 'graphviz', 'rich') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


# --- a real 6-layer transformer encoder ----------------------------------------------------

def traced(script: Path, *args):
    from graphexplain.capture.intercept import Selection
    from graphexplain.capture.runner import run_script
    from graphexplain.report import Report

    with contextlib.redirect_stdout(io.StringIO()):
        run = run_script(str(script), list(args), Selection.parse("first"))
    return Report.of(run).all_explanations[0]


@pytest.fixture(scope="module")
def encoder():
    return traced(ENCODER)


def test_the_encoder_is_big_and_its_six_layers_are_one_box(encoder):
    assert len(encoder.graph.nodes) > THRESHOLD
    collapsed = collapse(encoder.graph, encoder.verification, View(depth=3))
    (layers,) = [item for item in boxes(collapsed) if item.box.kind == "TransformerEncoderLayer"]
    assert layers.count == 6 and layers.box.path == "model.encoder.layers.0–5"
    assert layers.box.ops * 6 + sum(1 for n in layers.nodes if encoder.graph.nodes[n].is_leaf) == len(layers.nodes)


def test_a_resnet18_is_drawn_by_module_by_default():
    resnet = traced(SCRIPTS / "resnet18.py")
    assert len(resnet.graph.nodes) <= THRESHOLD and height(resnet.graph) > TALL  # 133 nodes, 65 deep
    collapsed = collapse(resnet.graph, resnet.verification)
    assert collapsed is not None and len(set(collapsed.item_of.values())) <= BUDGET


def test_the_encoder_picture_fits(encoder):
    from graphexplain.render.dot import to_dot

    source = to_dot(encoder)
    assert "TransformerEncoderLayer" in source and "×6" in source
    assert len(source) < 20_000
    assert len(statements(source)) <= BUDGET
    everything = to_dot(encoder, View(depth=ALL))
    assert len(statements(everything)) == len(encoder.graph.nodes)


def test_the_encoder_expanded_layer_is_drawn_apart(encoder):
    collapsed = collapse(encoder.graph, encoder.verification, View(depth=3, expand=("encoder.layers.0",)))
    runs = sorted((item.box.path, item.count) for item in boxes(collapsed)
                  if item.box.kind == "TransformerEncoderLayer")
    assert runs == [("model.encoder.layers.1–5", 5)]
    assert any(c.path == "model.encoder.layers.0" for c in clusters(collapsed.members))


def test_the_encoder_walkthrough_is_a_table_by_module(encoder):
    from graphexplain.render.terminal import _plain_text, walkthrough

    text = _plain_text(walkthrough(encoder, 100), 100)
    assert "By module" in text and re.search(r"model\.encoder\.layers\.0–5 +TransformerEncoderLayer +44 ×6", text)
    assert "\n   local " not in text and "chain" not in text  # no step printed
    deeper = _plain_text(walkthrough(encoder, 100, View(depth=4)), 100)
    assert re.search(r"model\.encoder\.layers\.0–5\.self_attn +MultiheadAttention +31 ×6", deeper)
    expanded = _plain_text(walkthrough(encoder, 100, View(expand=("encoder.layers.5.linear2",))), 100)
    linear2 = [n for n in encoder.graph.nodes if (n.module or "").startswith("model.encoder.layers.5.linear2")]
    for node in linear2:
        assert re.search(rf"^{node.id + 1}\.", expanded, flags=re.M)
    assert expanded.count("\n   chain ") < 20
    full = _plain_text(walkthrough(encoder, 100, View(full=True)), 100)
    assert "By module" in full
    numbered = {int(number) for number in re.findall(r"^(\d+)\.", full, flags=re.M)}
    assert numbered >= {n.id + 1 for n in encoder.graph.nodes if not n.is_leaf}


@pytest.fixture
def wrong_relu(monkeypatch):
    """The relu row off by 0.1 %: every derived gradient through a relu is wrong."""
    from graphexplain import rules

    row = rules.TABLE["ReluBackward0"]
    monkeypatch.setitem(rules.TABLE, "ReluBackward0",
                        dataclasses.replace(row, forward="Piecewise((self*1.001, self > 0), (0, True))"))


def test_a_wrong_gradient_in_the_encoder_shows_on_its_box_and_row(wrong_relu):
    from graphexplain.render.dot import to_dot
    from graphexplain.render.terminal import _plain_text, walkthrough

    explanation = traced(ENCODER)
    assert explanation.status == MISMATCH
    first = explanation.first_mismatch()
    assert first.op == "ReluBackward0" and first.module.startswith("model.encoder.layers.")
    source = to_dot(explanation, View(depth=3))
    box = next(statement for statement in statements(source) if "TransformerEncoderLayer ×6" in statement)
    assert "#dc2626" in box and f"first at step {first.id + 1}" in box
    text = _plain_text(walkthrough(explanation, 120, View(depth=3)), 120)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("model.encoder.layers.0–5"))
    assert "✗" in row and f"step {first.id + 1}, ReluBackward0" in row


# --- through the command line --------------------------------------------------------------

def test_trace_draws_the_encoder_by_module(launch, tmp_path):
    default = launch.graphexplain("trace", "--format", "dot", "--width", "120", "--out", "default",
                                  str(ENCODER), cwd=tmp_path)
    everything = launch.graphexplain("trace", "--format", "dot", "--quiet", "--depth", "all", "--out", "all",
                                     str(ENCODER), cwd=tmp_path)
    expanded = launch.graphexplain("trace", "--format", "dot", "--width", "120", "--depth", "3", "--expand",
                                   "encoder.layers.0", "--expand", "head", "--expand", "nosuch", "--out", "expanded",
                                   str(ENCODER), cwd=tmp_path)
    run = default.result()
    assert "By module" in run.stdout and "--expand MODULE" in run.stdout
    assert "×6" in (tmp_path / "default" / "call-1.dot").read_text(encoding="utf-8")
    run = everything.result()
    assert "By module" not in run.stdout
    assert "×6" not in (tmp_path / "all" / "call-1.dot").read_text(encoding="utf-8")
    run = expanded.result()
    source = (tmp_path / "expanded" / "call-1.dot").read_text(encoding="utf-8")
    assert "model.encoder.layers.1–5" in source and "model.encoder.layers.0 (TransformerEncoderLayer)" in source
    assert "The steps of model.encoder.layers.0, model.head follow" in run.stdout
    assert "--expand nosuch: no module of this call has that path" in run.stdout
    assert run.returncode == 0  # verified, as without the options


def test_trace_collapses_a_small_graph_only_when_asked(launch, tmp_path):
    cell = SCRIPTS / "unrolled_cell.py"
    plain = launch.graphexplain("trace", "--format", "dot", "--out", "plain", str(cell), cwd=tmp_path)
    deep = launch.graphexplain("trace", "--format", "dot", "--depth", "0", "--out", "deep", str(cell), cwd=tmp_path)
    assert plain.result().returncode == 0 and "By module" not in plain.result().stdout
    assert "RNNCell ×12" not in (tmp_path / "plain" / "call-1.dot").read_text(encoding="utf-8")
    run = deep.result()
    assert run.returncode == 0 and "By module" in run.stdout
    # the loop's twelve calls of one cell are told apart, and drawn once
    assert "RNNCell ×12" in (tmp_path / "deep" / "call-1.dot").read_text(encoding="utf-8")


def test_trace_full_prints_every_step(graphexplain_main):
    run = graphexplain_main("trace", "--format", "dot", "--width", "120", "--full", "--depth", "0",
                            str(SCRIPTS / "unrolled_cell.py"))
    assert run.returncode == 0 and "By module" in run.output and "All 78 steps follow" in run.output
    assert "\n72. " in run.output


def test_trace_names_a_mismatch_inside_a_collapsed_module(graphexplain_main, monkeypatch):
    from graphexplain import rules

    row = rules.TABLE["TanhBackward0"]  # off by 0.1 %: every call of the cell is wrong
    monkeypatch.setitem(rules.TABLE, "TanhBackward0", dataclasses.replace(row, forward="tanh(self)*1.001"))
    run = graphexplain_main("trace", "--format", "dot", "--width", "120", "--depth", "0", "--json", "out.json",
                            str(SCRIPTS / "unrolled_cell.py"))
    assert run.returncode == 1
    row = next(line for line in run.output.splitlines() if line.lstrip().startswith("cell "))
    assert "RNNCell" in row and "✗" in row and "step 3, TanhBackward0" in row
    box = next(s for s in statements(Path("graphexplain-out/call-1.dot").read_text(encoding="utf-8"))
               if "RNNCell ×12" in s)
    assert "#dc2626" in box and "first at step 3" in box
    assert json.loads(Path("out.json").read_text(encoding="utf-8"))["status"] == MISMATCH


@pytest.mark.parametrize("option,value", [("--depth", "deep"), ("--depth", "-2")])
def test_a_bad_depth_is_a_usage_error(graphexplain_main, option, value):
    run = graphexplain_main("trace", option, value, str(ENCODER))
    assert run.returncode == 2 and "module levels" in run.output and "Traceback" not in run.output
