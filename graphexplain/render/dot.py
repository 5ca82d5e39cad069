"""The graph as a graphviz picture: PNG, SVG, PDF, or the DOT source.

Arrows run forward, from the leaves to the root, as the user wrote the
computation; each arrow is labelled with the gradient that flows back
along it. Looks are data (`STYLES`), chosen by a node's role and status.
Every label is text as it is (`_literal`): a backslash in the user's code
(``"\\N{BULLET}"``) is not a graphviz escape, ``<b>`` is not HTML.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Dict

import graphviz
import numpy as np

from ..notation import LABEL_WIDTH, shorten, stands_in
from ..results import HOOK_CHANGED, MISMATCH, NO_RULE, NOT_DERIVED, RULE_ERROR, UNCHECKED
from .formatting import array, number, shape

FORMATS = ("png", "svg", "pdf", "dot")

STYLES: Dict[str, Dict[str, str]] = {
    "graph": {"rankdir": "TB", "fontname": "Helvetica", "fontsize": "11", "nodesep": "0.35"},
    "node": {"shape": "box", "style": "rounded", "fontname": "Helvetica", "fontsize": "10"},
    "edge": {"fontname": "Helvetica", "fontsize": "9", "color": "gray35", "fontcolor": "gray25"},
    "leaf": {"style": "filled,rounded", "fillcolor": "#dbeafe", "color": "#1d4ed8"},
    "root": {"style": "filled,rounded,bold", "fillcolor": "#fef3c7", "color": "#b45309", "penwidth": "2"},
    "constant": {"shape": "note", "style": "dashed", "color": "gray50", "fontcolor": "gray40"},
    "constant-edge": {"style": "dashed", "color": "gray60", "arrowhead": "empty"},
    MISMATCH: {"color": "#dc2626", "fontcolor": "#dc2626", "penwidth": "2.5"},
    NO_RULE: {"style": "dashed,rounded", "color": "#d97706"},
    RULE_ERROR: {"style": "dashed,rounded,bold", "color": "#d97706"},
    NOT_DERIVED: {"style": "dashed,rounded", "color": "#d97706"},
    HOOK_CHANGED: {"style": "dashed,rounded", "color": "#7c3aed"},
    UNCHECKED: {"style": "dotted,rounded", "color": "gray50"},  # torch's numbers only
    "module": {"style": "rounded,dashed", "color": "gray60", "fontcolor": "gray30", "fontsize": "10"},
}


class RenderError(Exception):
    """A picture could not be made; the message says how to fix it."""


SMALL = 4  # elements shown in full on a node; larger tensors are summarised


LINE_WIDTH = 2 * LABEL_WIDTH  # a line of a label: a name, or a few words and numbers


def _literal(text: str) -> str:
    """`text` as a DOT label that graphviz shows letter for letter; names
    are cut to LABEL_WIDTH where the label is made, and any line to
    LINE_WIDTH here (Note [bounded labels] in notation.py)."""
    return graphviz.escape("\n".join(shorten(line, LINE_WIDTH) for line in text.split("\n")))


def _legend(node):
    """Under a name that stands in for a longer one (`mul#12`, a cut
    expression): the code it comes from, cut too, and where."""
    if not stands_in(node.name) or node.source is None:
        return None
    where = f"{os.path.basename(node.source.file)}:{node.source.line}"
    expr = node.source.expr or node.source.code.strip()
    if node.name.endswith("…") or not expr:  # the name is already the start of the expression
        return f"at {where}"
    return f"in {shorten(expr, max(20, LABEL_WIDTH - len(where) - 6))} ({where})"


LEGEND = {"numbered": "op#N: the op of step N, which no variable names",
          "cut": f"…: a name or line cut at {LABEL_WIDTH} characters"}


def _legend_lines(names) -> list:
    """The picture's legend: what the stand-in names it uses mean."""
    used = {"cut" if name.endswith("…") else "numbered" for name in names if stands_in(name)}
    return [LEGEND[kind] for kind in LEGEND if kind in used]


def _value(value) -> str:
    text = array(value.data, small=SMALL)
    return text if value.numel > SMALL and value.known else f"{shape(value.shape)} {text}"


def _label(node, derived, leaf=None) -> str:
    lines = [shorten(node.name), f"{node.op}" + (f" · {derived.title}" if derived.title != node.op else "")]
    if leaf is not None and leaf.produced_by:  # a non-leaf input: its node is not torch's op
        lines[1] = f"input · produced by {leaf.produced_by.split(',')[0]}"  # the op, without where
    legend = _legend(node)
    if legend is not None:
        lines.insert(1, legend)
    if node.output is not None:
        lines.append(_value(node.output))
    if derived.upstream is not None:
        lines.append(f"grad {array(derived.upstream, small=SMALL)}")
    return _literal("\n".join(lines))


def _edge_label(gradient) -> str:
    if gradient is None:
        return ""
    if np.size(gradient) > SMALL:
        return _literal(f"‖grad‖={number(np.linalg.norm(gradient))}")
    return _literal(array(gradient, small=SMALL))


def _add_clusters(picture, clusters: Dict[str, list]) -> None:
    """One box per module, nested as the modules are (model ⊃ model.linear)."""
    names = sorted(clusters, key=lambda label: _qualified(label))
    children: Dict[str, list] = {name: [] for name in names}
    roots = []
    for name in names:
        parents = [p for p in names if p != name and _qualified(name).startswith(_qualified(p) + ".")]
        if parents:
            children[max(parents, key=lambda p: len(_qualified(p)))].append(name)
        else:
            roots.append(name)
    counter = iter(range(len(names)))

    def add(parent, name):
        with parent.subgraph(name=f"cluster_{next(counter)}") as cluster:
            cluster.attr(label=_literal(shorten(name)), **STYLES["module"])
            for node_name, text, attributes in clusters[name]:
                cluster.node(node_name, text, **attributes)
            for child in children[name]:
                add(cluster, child)

    for name in roots:
        add(picture, name)


def _qualified(module_label: str) -> str:
    return module_label.split(" (")[0]


def to_dot(explanation) -> str:
    """The DOT source, the same bytes for the same explanation."""
    graph = explanation.graph
    picture = graphviz.Digraph("graphexplain", graph_attr=STYLES["graph"],
                               node_attr=STYLES["node"], edge_attr=STYLES["edge"])
    roots = {root.node for root in graph.roots}
    clusters: Dict[str, list] = {}
    for step in explanation.steps:
        node = step.node
        attributes = {}
        if node.is_leaf:
            attributes.update(STYLES["leaf"])
        if node.id in roots:
            attributes.update(STYLES["root"])
        if step.status in STYLES:
            attributes.update(STYLES[step.status])
        entry = (f"n{node.id}", _label(node, step.derivation, graph.leaf_for(node.id)), attributes)
        if node.module and not node.is_leaf:
            clusters.setdefault(node.module, []).append(entry)
        else:
            picture.node(entry[0], entry[1], **entry[2])
    _add_clusters(picture, clusters)
    legend = _legend_lines([step.node.name for step in explanation.steps])
    if legend:  # at the foot of the picture; clusters keep their own labels
        picture.attr(label=_literal("\n".join(legend)), labelloc="b", labeljust="l")
    for step in explanation.steps:
        by_name = {chain.input: chain for chain in step.derivation.steps}
        for operand in step.node.operands:
            if operand.producer is None:
                continue
            chain = by_name.get(operand.name)
            label = _edge_label(chain.downstream if chain is not None else None)
            picture.edge(f"n{operand.producer}", f"n{step.node.id}", label=label)
    for index, constant in enumerate(graph.constants):
        name = f"c{index}"
        picture.node(name, _literal(f"{shorten(constant.name)}\n{shape(constant.shape)}\nconstant: {constant.reason}"),
                     **STYLES["constant"])
        for user in constant.used_by:
            picture.edge(name, f"n{user}", **STYLES["constant-edge"])
    return picture.source


DOT_TIMEOUT = 60  # seconds graphviz's `dot` may take for one picture before it is stopped


def _draw(source: str, format: str) -> bytes:
    """`dot -Tformat` run on `source`: its output, or a RenderError that says
    in one line what went wrong (Note [dot fails in many ways])."""
    try:
        process = subprocess.Popen(["dot", f"-T{format}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise RenderError(
            "graphviz's `dot` program is not installed, so no picture was drawn (the .dot file "
            "was still written). Install it with `apt-get install graphviz` (Debian/Ubuntu), "
            "`brew install graphviz` (macOS) or `conda install graphviz`, then run again."
        ) from None
    except OSError as error:
        raise RenderError(f"graphviz's `dot` program could not be started: {error.strerror or error}.") from None
    try:
        data, errors = process.communicate(source.encode("utf-8"), timeout=DOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise RenderError(f"graphviz's `dot` took longer than {DOT_TIMEOUT} s and was stopped.") from None
    except OSError as error:  # a pipe closed under us: dot died while reading
        _stop(process)
        raise RenderError(f"graphviz's `dot` stopped reading the graph: {error.strerror or error}.") from None
    if process.returncode < 0:
        name = _signal_name(-process.returncode)
        raise RenderError(f"graphviz's `dot` crashed ({name}).")
    if process.returncode == 0 and not data:
        raise RenderError("graphviz's `dot` ended without drawing anything (did it read the graph?).")
    if process.returncode != 0:
        said = _first_line(errors)
        said = f": {said}" + ("" if said[-1] in ".?!" else ".") if said else "."
        raise RenderError(f"graphviz's `dot` refused the graph (exit code {process.returncode}){said}")
    return data


# Note [dot fails in many ways]
# graphviz's `dot` can be missing, refuse its input (a label over 16384
# characters: "longer than 16384?"), exit non-zero, crash on a signal, close
# its input early (a BrokenPipeError while we write), or hang on a huge
# graph. Each is one RenderError, said in one line by the CLI next to the
# .dot file it still wrote; none is a traceback, and none changes the exit
# code, which is the verification's. dot runs in its own session so that a
# timeout stops it and anything it started.


def _stop(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass  # already gone
    try:
        process.communicate(timeout=5)
    except Exception:
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _first_line(errors: bytes) -> str:
    lines = [line.strip() for line in errors.decode("utf-8", "replace").splitlines() if line.strip()]
    return shorten(lines[0], 160) if lines else ""


def render(explanation, path: str, format: str = "png") -> str:
    """Write the picture to `path` in `format`; returns `path`.

    Raises RenderError, with a one-line message, when graphviz's `dot`
    program is missing or fails (the DOT source can still be written with
    format="dot").
    """
    if format not in FORMATS:
        raise RenderError(f"Unknown picture format {format!r}: choose from {', '.join(FORMATS)}.")
    source = to_dot(explanation)
    data = source.encode("utf-8") if format == "dot" else _draw(source, format)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path
