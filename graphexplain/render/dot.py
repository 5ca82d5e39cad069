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
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import graphviz
import numpy as np

from ..notation import LABEL_WIDTH, shorten, stands_in
from ..results import HOOK_CHANGED, INTENTIONAL, MISMATCH, NO_RULE, NOT_DERIVED, RULE_ERROR, UNCHECKED
from .collapse import Cluster, View, collapse
from .formatting import array, norm, number, plural, shape, shape_after

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
    INTENTIONAL: {"style": "dashed,rounded", "color": "#7c3aed"},  # a surrogate gradient, on purpose
    UNCHECKED: {"style": "dotted,rounded", "color": "gray50"},  # torch's numbers only
    "module": {"style": "rounded,dashed", "color": "gray60", "fontcolor": "gray30", "fontsize": "10"},
    "module-box": {"shape": "box", "style": "filled,rounded", "fillcolor": "#f3f4f6", "color": "gray40"},
}
# How a collapsed module's box names the worst status of its nodes.
BOX_WORDS = {MISMATCH: "✗ mismatch", NO_RULE: "? an op without a rule", RULE_ERROR: "! a rule failed",
             NOT_DERIVED: "? not derived", HOOK_CHANGED: "~ changed by a hook",
             INTENTIONAL: "~ a surrogate gradient, on purpose",
             UNCHECKED: "· torch's numbers only", "not-checked": "· not checked", "verified": "✓ verified"}


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
    if getattr(derived, "geometry", ""):  # a kernel's shape: "conv2d 3→6, 5×5, stride 1, pad 0"
        lines.append(derived.geometry)
    if node.output is not None:
        lines.append(_value(node.output))
    if derived.upstream is not None:
        lines.append(f"grad {array(derived.upstream, small=SMALL)}")
    return _literal("\n".join(lines))


def _edge_label(gradient) -> str:
    if gradient is None:
        return ""
    if np.size(gradient) > SMALL:
        return _literal(f"‖grad‖={number(norm(gradient))}")
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


def to_dot(explanation, view: Optional[View] = None) -> str:
    """The DOT source, the same bytes for the same explanation. A big graph
    is drawn by module call (render/collapse.py; `view` says how far open)."""
    collapsed = collapse(explanation.graph, explanation.verification, view or View())
    if collapsed is not None:
        return _collapsed_dot(explanation, collapsed)
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
        picture.node(name, _constant_label(constant),
                     **STYLES["constant"])
        for user in constant.used_by:
            picture.edge(name, f"n{user}", **STYLES["constant-edge"])
    return picture.source


def _box_label(item) -> str:
    box, each = item.box, " each" if item.count > 1 else ""
    lines = [box.path, (box.kind or "module") + (f" ×{item.count}" if item.count > 1 else ""),
             f"{plural(box.ops, 'op')}, {plural(box.leaves, 'leaf')}{each}", BOX_WORDS.get(item.status, item.status)]
    if box.first_mismatch is not None:
        lines[-1] += f", first at step {box.first_mismatch + 1}"
    return _literal("\n".join(lines))


NAME_ROOM = 40  # characters of a node's name in a big graph's picture; the walkthrough has it whole


def _compact_label(node, derived, count: int) -> str:
    """A node of a big graph: its name (cut short), its op and its shape;
    the numbers are in the walkthrough (--expand, --full)."""
    name = node.name if len(node.name) <= NAME_ROOM else node.name[:NAME_ROOM - 1] + "…"
    lines = [name, f"{node.op}" + (f" · {derived.title}" if derived.title != node.op else "")]
    if node.output is not None:
        lines.append(shape(node.output.shape))
    if count > 1:
        lines.append(f"×{count}, one per repeat")
    return _literal("\n".join(lines))


def _item_attributes(item, roots) -> Dict[str, str]:
    attributes = dict(STYLES["module-box"]) if item.box is not None else {}
    if item.box is None and item.count == 1 and any(n in roots for n in item.nodes):
        attributes.update(STYLES["root"])
    if item.status in STYLES:
        attributes.update(STYLES[item.status])
    if item.box is not None and "filled" not in attributes["style"]:  # a box stays grey under its status's lines
        attributes["style"] += ",filled"
    return attributes


def _collapsed_dot(explanation, collapsed) -> str:
    """The picture of a big graph: a box per collapsed module call, a frame
    per opened one, the nodes outside modules as today."""
    graph = explanation.graph
    steps = explanation.steps
    picture = graphviz.Digraph("graphexplain", graph_attr=STYLES["graph"],
                               node_attr=STYLES["node"], edge_attr=STYLES["edge"])
    roots = {root.node for root in graph.roots}
    counter = iter(range(len(graph.nodes) + 1))

    def add(parent, members):
        for member in members:
            if isinstance(member, Cluster):
                with parent.subgraph(name=f"cluster_{next(counter)}") as cluster:
                    kind = f" ({member.kind})" if member.kind else ""
                    count = f" ×{member.count}" if member.count > 1 else ""
                    cluster.attr(label=_literal(f"{member.path}{kind}{count}"), **STYLES["module"])
                    add(cluster, member.members)
                continue
            if member.box is not None:
                parent.node(member.id, _box_label(member), **_item_attributes(member, roots))
                continue
            node = graph.nodes[member.node]
            attributes = dict(STYLES["leaf"]) if node.is_leaf else {}
            attributes.update(_item_attributes(member, roots))
            parent.node(member.id, _compact_label(node, steps[node.id].derivation, member.count), **attributes)

    add(picture, collapsed.members)
    for producer, consumer in collapsed.edges:
        picture.edge(producer, consumer)
    for index, constant in enumerate(graph.constants):
        name = f"c{index}"
        picture.node(name, _constant_label(constant),
                     **STYLES["constant"])
        for user in dict.fromkeys(collapsed.item_of[user] for user in constant.used_by):
            picture.edge(name, user, **STYLES["constant-edge"])
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


BATCH_PICTURES = 32  # pictures one `dot` process draws at most (Note [one dot for many pictures])
BATCH_SOURCE = 256_000  # characters of DOT source one `dot` process is given at most
ALONE = 32_000  # a picture with a longer source is drawn by a `dot` of its own
# Formats whose bytes from one `dot` for many files are those of one `dot` each;
# not SVG, whose ids then count pages ("page0,1_graph0" for "graph0").
TOGETHER = ("png", "pdf")


def _batches(sources: Sequence[str]) -> List[List[int]]:
    """The positions of `sources` in runs that one `dot` draws together, in order."""
    batches: List[List[int]] = []
    size = 0
    for position, source in enumerate(sources):
        if len(source) > ALONE or not batches or len(batches[-1]) >= BATCH_PICTURES \
                or size + len(source) > BATCH_SOURCE:
            batches.append([])
            size = 0
        batches[-1].append(position)
        size += len(source)
        if len(source) > ALONE:
            batches.append([])
    return [batch for batch in batches if batch]


def _draw_together(sources: Sequence[str], format: str) -> Optional[List[bytes]]:
    """`dot -Tformat -O` on the files of `sources`: each picture, or None if
    anything at all went wrong (then each is drawn alone, by `_draw`, which
    says what)."""
    with tempfile.TemporaryDirectory(prefix="graphexplain-dot-") as folder:
        names = [f"g{position}.gv" for position in range(len(sources))]
        for name, source in zip(names, sources):
            with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
                handle.write(source)
        try:
            process = subprocess.Popen(["dot", f"-T{format}", "-O", *names], cwd=folder, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            return None
        try:
            process.wait(timeout=DOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            _stop(process)
            return None
        if process.returncode != 0:
            return None
        pictures = []
        for name in names:
            try:
                with open(os.path.join(folder, f"{name}.{format}"), "rb") as handle:
                    pictures.append(handle.read())
            except OSError:
                return None
        return pictures if all(pictures) else None


def draw_all(sources: Sequence[str], format: str) -> Iterator[Tuple[int, Union[bytes, RenderError]]]:
    """Each DOT source drawn in `format`, in order: (position, the picture's
    bytes, or the RenderError that says in one line why it was not drawn).
    Many small pictures share a `dot` process; the bytes are the same as
    `_draw` gives for each (Note [one dot for many pictures]).

        >>> [kind for _, kind in draw_all([], "png")]
        []
    """
    for batch in _batches(sources):
        together = _draw_together([sources[p] for p in batch], format) \
            if len(batch) > 1 and format in TOGETHER else None
        for k, position in enumerate(batch):
            if together is not None:
                yield position, together[k]
                continue
            try:
                yield position, _draw(sources[position], format)
            except RenderError as error:
                yield position, error


# Note [one dot for many pictures]
# `--call all` on a training loop draws hundreds of pictures of the same
# small graph (train_loop.py: 2000 × 1000 pixels). Laying one out takes dot
# about 2 ms; what costs is starting dot (about 15 ms, with the fork from a
# process that holds torch) and, for PNG, cairo's rasterising and libpng's
# zlib (about 55 ms, two thirds of it compressing). Re-using one layout
# would save only the 2 ms, and the labels' numbers change width from call
# to call; one `dot -O` process for up to
# BATCH_PICTURES files saves the start, and gives byte for byte the picture
# a `dot` of its own would, for PNG and PDF (TOGETHER; SVG is drawn one by
# one, since a batch numbers its ids by page). Any trouble in a batch (a refusal, a crash, a
# timeout, a missing file) and its pictures are drawn again one by one, so
# each failure is still said in one line by `_draw`, as Note [dot fails in
# many ways] has it; a big source is always drawn alone, so a slow graph
# never shares a timeout.


def render(explanation, path: str, format: str = "png", view: Optional[View] = None) -> str:
    """Write the picture to `path` in `format`; returns `path`.

    Raises RenderError, with a one-line message, when graphviz's `dot`
    program is missing or fails (the DOT source can still be written with
    format="dot").
    """
    if format not in FORMATS:
        raise RenderError(f"Unknown picture format {format!r}: choose from {', '.join(FORMATS)}.")
    source = to_dot(explanation, view)
    data = source.encode("utf-8") if format == "dot" else _draw(source, format)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def _constant_label(constant) -> str:
    """Its name, its shape where the name does not say it, and why no gradient flows to it."""
    sized = shape_after(constant, "\n")  # its own line
    return _literal(f"{shorten(constant.name)}{sized}\nconstant: {constant.reason}")
