"""The chain-rule walkthrough, printed with rich.

In backward order, each node shows its op in plain words, the user's line,
the forward formula, each local gradient (formula, then with the numbers put
in), and upstream × local = downstream, with torch's own number and a mark.
Leaves end with their gradient against torch's `.grad`.

Output is the same text on every run: fixed node numbering, no timestamps;
without a terminal there is no colour (rich decides from the console).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from io import StringIO
from typing import Iterable, Optional

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..results import (
    DERIVED, HOOK_CHANGED, INTENTIONAL, MISMATCH, NO_RULE, NOT_CHECKED, NOT_DERIVED, RULE_ERROR, UNCHECKED, VERIFIED, ChainStep,
)
from ..results import worst
from ..notation import LABEL_WIDTH, label, shorten, stands_in
from .collapse import Cluster, View, collapse
from .formatting import (array, arrival_parts, arrivals, number, place, plural, shape, shape_after, shape_note,
                         sized)

LISTED_OPS = 12  # a re-run forward's ops listed one by one, up to this many; counted above it
MARKS = {VERIFIED: "✓", MISMATCH: "✗", NO_RULE: "?", RULE_ERROR: "!", NOT_DERIVED: "?", HOOK_CHANGED: "~",
         UNCHECKED: "·", NOT_CHECKED: "·", INTENTIONAL: "≠"}
STYLES = {
    VERIFIED: "green", MISMATCH: "bold red", NO_RULE: "yellow", RULE_ERROR: "bold yellow", NOT_DERIVED: "yellow",
    HOOK_CHANGED: "yellow", UNCHECKED: "dim", NOT_CHECKED: "dim", INTENTIONAL: "magenta",
    "label": "bold cyan", "op": "bold", "code": "italic", "formula": "magenta", "heading": "bold",
}
WORDS = {VERIFIED: "verified", MISMATCH: "MISMATCH", NO_RULE: "no symbolic rule", RULE_ERROR: "the rule failed",
         NOT_DERIVED: "not derived", HOOK_CHANGED: "changed by a hook",
         UNCHECKED: "unchecked: torch's numbers", NOT_CHECKED: "not checked",
         INTENTIONAL: "differs from the forward's derivative, on purpose"}

SHORT_WORDS = {**WORDS, UNCHECKED: "torch's numbers", HOOK_CHANGED: "hook", NO_RULE: "no rule"}  # the summary table's


def _mark(status: str) -> Text:
    return Text(f"{MARKS[status]} {WORDS[status]}", style=STYLES[status])


def _where(source) -> str:
    if source is None:
        return ""
    name = os.path.basename(source.file)
    return f"{name}:{source.line}"


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style=STYLES["label"], no_wrap=True, min_width=9)
    grid.add_column(overflow="fold")
    return grid


def _row(grid: Table, label: str, content) -> None:
    """A row whose text is shown as it is: a formula's [k] is not rich markup."""
    grid.add_row(label, Text(content) if isinstance(content, str) else content)


def _chain_text(step: ChainStep) -> str:
    down = array(step.downstream)
    if step.how in ("multiply", "spread"):
        return f"{array(step.upstream)} × {array(step.local)} = {down}"
    if step.how == "route":
        return f"{array(step.upstream)} routed back = {down}"
    if step.how == "matrix":
        return f"{step.formula} = {down}"
    return "not derived"


def _torch_number(explanation, node, step: ChainStep) -> Optional[str]:
    value = explanation.observed.downstream(node, step.input)
    return None if value is None else array(value)


def _node_block(explanation, step, number_of: int, arrivals=None) -> RenderableType:
    node, derived, verified = step.node, step.derivation, step.verification
    arrivals = arrivals or {}
    title = Text()
    title.append(f"{number_of}. ", style=STYLES["heading"])
    title.append(shorten(node.name), style=STYLES["label"])
    title.append("  ")
    title.append(node.op, style=STYLES["op"])
    title.append(f" — {derived.title}")
    where = _where(node.source)
    if where:
        title.append(f"  ({where})", style="dim")
    grid = _grid()
    if node.source is not None and node.source.code:
        _row(grid, "code", Text(node.source.code, style=STYLES["code"]))
    if node.module:
        _row(grid, "module", node.module)
    if node.origin:
        _row(grid, "from", node.origin)
    if node.output is not None:
        _row(grid, "value", sized(node.output.shape, node.output.data))
    shown = derived if derived.status == DERIVED or verified.local is None else verified.local
    if verified.reason and verified.status in (UNCHECKED, HOOK_CHANGED):
        _row(grid, "why", Text(verified.reason, style=STYLES[verified.status]))
    if derived.status in (NO_RULE, RULE_ERROR) or (derived.status == NOT_DERIVED and shown is derived):
        _row(grid, "rule", Text(derived.note or "no symbolic rule", style=STYLES[derived.status]))
    if node.inner is not None:
        _function_rows(grid, node, shown)
    elif shown.status == DERIVED:
        _row(grid, "forward", Text(f"{node.name} = {shown.forward_named}", style=STYLES["formula"]))
        for local in shown.local_gradients:
            _row(grid, "local", _local_text(node, shown, local))
    if derived.upstream is not None:
        uses = arrivals.get(node.id, ())
        summed = f", the sum of what its {len(uses)} uses send back:" if uses else ""
        _row(grid, "upstream", array(derived.upstream) + summed)
        _arrivals_rows(grid, uses)
    torch_upstream = explanation.observed.upstream(node.id)
    if shown is not derived or (derived.upstream is None and torch_upstream is not None):
        _row(grid, "upstream", Text(f"{array(torch_upstream)} (torch's)" if torch_upstream is not None else "?"))
    repeated = len({s.label for s in shown.steps}) < len(shown.steps)
    for chain_step in shown.steps:
        target = f"{chain_step.label} ({chain_step.input})" if repeated else chain_step.label
        if chain_step.downstream is None:
            torch_number = _torch_number(explanation, node, chain_step)
            _row(grid, "chain", f"→ {target}: not derived; torch's number: {torch_number or '?'}")
            continue
        words = " (on torch's upstream)" if shown is not derived else ""
        _row(grid, "chain", f"→ {target}: {_chain_text(chain_step)}{words}")
        if chain_step.broadcast:
            _row(grid, "", Text(chain_step.broadcast, style="dim"))
        torch_number = _torch_number(explanation, node, chain_step)
        if torch_number is None and node.inner is not None and explanation.observed.node(node.id).downstream:
            torch_number = "None (no gradient)"
        if torch_number is not None:
            _row(grid, "backward" if node.inner is not None else "torch", torch_number)
    if node.inner is not None and verified.reason and verified.status in (MISMATCH, INTENTIONAL):
        _row(grid, "verdict", Text(verified.reason, style=STYLES[verified.status]))
    for check in verified.checks:
        if check.status == MISMATCH and verified.status == INTENTIONAL:  # a difference on purpose, not a ✗
            _row(grid, "differs", Text(_mismatch_words(check)[2:], style=STYLES[INTENTIONAL]))
        elif check.status == MISMATCH:
            _row(grid, "check", Text(_mismatch_words(check), style=STYLES[MISMATCH]))
    status = Text("  ").append_text(_mark(verified.status))
    if verified.status == UNCHECKED and verified.checks:
        status.append(" (its own step agrees with torch, on torch's upstream)", style="dim")
    if verified.inherited_from is not None:
        status.append(f" (inherited from step {verified.inherited_from + 1})", style="dim")
    return Group(title, Padding(grid, (0, 0, 0, 3)), Padding(status, (0, 0, 0, 1)))


def _function_rows(grid: Table, node, shown) -> None:
    """A custom Function: its forward's ops as graphexplain ran them again,
    one line each, then the forward and its derivative as formulas where
    the forward is a small pointwise chain."""
    inner = node.inner
    if inner.graph is not None:
        ops = [n for n in inner.graph.nodes if not n.is_leaf]
        _row(grid, "forward", Text(f"{inner.forward_words} run again on float64 copies of its inputs: "
                                   f"{plural(len(ops), 'op')}", style=STYLES["formula"]))
        if len(ops) > LISTED_OPS:  # an LSTM layer's hundred ops: how many of each, not a line each
            counts = Counter(op.op for op in ops)
            kinds = sorted(counts, key=lambda op: (-counts[op], op))
            _row(grid, "", Text(", ".join(f"{counts[op]} × {op}" for op in kinds), style="dim"))
            ops = []
        for op in reversed(ops):  # in the order the forward ran them
            code = (op.source.expr or op.source.code) if op.source is not None else op.name
            where = f"  ({_where(op.source)})" if op.source is not None else ""
            nested = f" — {op.inner.title}" if op.inner is not None else ""
            _row(grid, "", Text(f"{op.op}{nested}: {code}{where}", style="dim"))
    if shown.status != DERIVED:
        return
    if shown.forward_named and shown.forward_named != shown.forward:
        _row(grid, "formula", Text(f"{node.name} = {shown.forward_named}", style=STYLES["formula"]))
    names = {k: inner.graph.leaves[i].name for k, i in enumerate(inner.inputs) if i is not None} \
        if inner.graph is not None else {}
    for local in shown.local_gradients:
        position = next((k for k, o in enumerate(node.operands) if o.name == local.input), None)
        variable = names.get(position, local.label)
        text = Text(f"∂{label(node.name)}/∂{label(variable)} = {local.expr}", style=STYLES["formula"])
        if variable != local.label:
            text.append(f", at {variable} = {local.label}")
        _row(grid, "local", text)


def _mismatch_words(check) -> str:
    where = ""
    if check.worst_index is not None and check.derived_at_worst is not None:
        index = ", ".join(str(i) for i in check.worst_index)
        where = f" at [{index}]: derived {number(check.derived_at_worst)}, torch {number(check.torch_at_worst)};"
    return f"✗ {check.what}{where} off by {number(check.max_abs_error)}, more than {number(check.allowed)}, " \
        f"{check.tolerance}"


def _arrivals_rows(grid: Table, uses) -> None:
    for k, part in enumerate(arrival_parts(uses)):  # one term a row, the sum's + in front
        _row(grid, "", Text(f"{'+ ' if k else '  '}{part}", style="dim"))


def _local_text(node, derived, local) -> Text:
    if local.expr.startswith("∂result["):  # a whole statement in index notation: ∂y[n, o, i]/∂w[o, c, k] = x[...]
        return Text(local.named, style=STYLES["formula"])
    if derived.steps and derived.steps[0].how == "matrix":
        text = Text(f"∂L/∂{label(local.label)} = {local.expr}", style=STYLES["formula"])
        if local.named != local.expr:
            text.append(f" = {local.named}")
        return text
    text = Text(f"∂{label(node.name)}/∂{label(local.label)}{place(derived, local)} = {local.expr}",
                style=STYLES["formula"])
    if local.named != local.expr:
        text.append(f" = {local.named}")
    if local.value is not None:
        shown = array(local.value)
        if shown != local.named:
            text.append(f" = {shown}")
    return text


def _leaf_block(explanation, leaf, derived, verified, torch_side) -> RenderableType:
    title = Text()
    title.append("input " if leaf.produced_by else "leaf ", style=STYLES["heading"])
    title.append(shorten(leaf.name), style=STYLES["label"])
    if leaf.produced_by:
        title.append(f", produced by {leaf.produced_by}")
    title.append(f"  {sized(leaf.value.shape, leaf.value.data)}")
    grid = _grid()
    roots = ", ".join(shorten(root.name) for root in explanation.graph.roots)
    seeded = any(np.size(root.grad_output) > 1 for root in explanation.graph.roots)
    gradient = f"vᵀ·∂{label(roots)}/∂{leaf.name}" if seeded else f"∂{label(roots)}/∂{leaf.name}"
    if derived.grad is None:
        _row(grid, "gradient", Text(f"{gradient}: not derived — {verified.reason or 'see above'}",
                                    style=STYLES[UNCHECKED]))
        if derived.partial is not None:
            through = ", ".join(f"step {c + 1}" for c in derived.missing_from)
            _row(grid, "", f"derived part {array(derived.partial)}; the part through {through} is torch's alone")
            for check in verified.checks:
                if check.status != MISMATCH:
                    _row(grid, "", Text(f"the derived part agrees with torch's whole minus torch's part through "
                                        f"{through}", style="dim"))
    elif derived.symbolic:
        _row(grid, "gradient", Text(f"{gradient} = {derived.symbolic} = {array(derived.grad)}", style=STYLES["formula"]))
    else:
        _row(grid, "gradient", f"{gradient} = {array(derived.grad)}")
    jacobian = explanation.jacobians.get(leaf.node)
    if jacobian is not None:
        root = explanation.graph.roots[0]
        _row(grid, "Jacobian", f"J = ∂{label(root.name)}/∂{leaf.name}, one row per element of "
                                 f"{root.name}: {_matrix(jacobian)}")
        product = np.asarray(root.grad_output).reshape(-1) @ jacobian
        _row(grid, "vᵀ·J", f"{array(root.grad_output)} · J = {array(product.reshape(leaf.value.shape))}"
                             " (what backward(v) computes, without forming J)")
    if torch_side.grad is not None:
        _row(grid, "torch", array(torch_side.grad))
    if leaf.accumulates and leaf.grad_before is not None and derived.grad is not None:
        _row(grid, ".grad", f"accumulates: {array(leaf.grad_before)} (already there) + "
                              f"{array(derived.grad)} (this call) = {array(derived.accumulated)}; "
                              f"torch's .grad is now {array(torch_side.grad_after)}")
    elif leaf.accumulates and leaf.grad_before is not None:
        _row(grid, ".grad", f"accumulates: {array(leaf.grad_before)} (already there) + this call; "
                              f"torch's .grad is now {array(torch_side.grad_after)}")
    elif leaf.accumulates:
        _row(grid, ".grad", f"was None, now {array(torch_side.grad_after)}")
    if verified.reason and verified.status == HOOK_CHANGED:
        _row(grid, "hook", Text(verified.reason, style=STYLES[HOOK_CHANGED]))
    for check in verified.checks:
        if check.status == MISMATCH:
            _row(grid, "check", Text(_mismatch_words(check), style=STYLES[MISMATCH]))
    status = Text("  ").append_text(_mark(verified.status))
    return Group(title, Padding(grid, (0, 0, 0, 3)), Padding(status, (0, 0, 0, 1)))


def _matrix(jacobian) -> str:
    return "[" + ", ".join(array(row, small=jacobian.shape[1]) for row in jacobian) + "]"


def _verdict(explanation) -> Text:
    verification = explanation.verification
    nodes, leaves = len(explanation.graph.nodes), len(explanation.graph.leaves)
    if verification.status == VERIFIED:
        return Text(f"✓ All {plural(nodes, 'node')} and {plural(leaves, 'leaf')} verified against torch.",
                    style=STYLES[VERIFIED])
    if verification.status == MISMATCH:
        where = verification.first_mismatch
        node = explanation.graph.nodes[where] if where is not None else None
        line = f" ({_where(node.source)})" if node is not None and node.source else ""
        named = f"step {where + 1}, {node.name} [{node.op}]{line}" if node is not None else "a leaf"
        return Text(f"✗ Mismatch: the derived gradient first disagrees with torch at {named}.",
                    style=STYLES[MISMATCH])
    return Text(_incomplete_words(explanation), style=STYLES[verification.status])


def _incomplete_words(explanation) -> str:
    """Why a call with no mismatch is not verified, every reason counted."""
    steps = explanation.steps
    verified = sum(1 for s in steps if s.status == VERIFIED and not s.node.is_leaf)
    leaves = sum(1 for v in explanation.verification.leaves if v.status == VERIFIED)
    parts = []
    for status, words in ((NO_RULE, "no symbolic rule"), (RULE_ERROR, "a rule that failed to apply"),
                          (NOT_DERIVED, "complex numbers not derived"), (HOOK_CHANGED, "a gradient changed by a hook"),
                          (INTENTIONAL, "a hand-written gradient that differs on purpose"),
                          ("function", "a custom Function whose forward is not derived")):
        if status == "function":
            ops = sorted({s.node.op for s in steps if s.status == NOT_DERIVED and s.node.inner is not None})
        else:
            ops = sorted({s.node.op for s in steps if s.status == status
                          and not (status == NOT_DERIVED and s.node.inner is not None)})
        if status == HOOK_CHANGED:
            ops = ops or sorted({explanation.graph.nodes[v.node].op for v in explanation.verification.leaves
                                 if v.status == HOOK_CHANGED})
        if ops:
            parts.append(f"{words}: {', '.join(ops)}")
    unchecked = sum(1 for s in steps if s.status == UNCHECKED and not s.node.is_leaf)
    unchecked_leaves = sum(1 for v in explanation.verification.leaves if v.status == UNCHECKED)
    not_checked = sum(1 for s in steps if s.status == NOT_CHECKED)
    if unchecked or unchecked_leaves:
        parts.append(f"{plural(unchecked, 'node')} and {plural(unchecked_leaves, 'leaf')} below it "
                     "carry torch's numbers only")
    if not_checked:
        parts.append(f"{plural(not_checked, 'node')} with no torch number to compare")
    total_nodes = sum(1 for s in steps if not s.node.is_leaf)
    return (f"? Not verified: {'; '.join(parts) or 'see above'}. Verified: {verified} of "
            f"{plural(total_nodes, 'node')} and {leaves} of {plural(len(explanation.verification.leaves), 'leaf')}.")


def _legend(names) -> Optional[str]:
    """What the stand-in names mean, when the walkthrough uses any
    (Note [bounded labels] in notation.py)."""
    used = [name for name in names if stands_in(name)]
    parts = []
    if any(not name.endswith("…") for name in used):
        parts.append("a name like mul#12 is the op of step 12, which no variable of the script names")
    if any(name.endswith("…") for name in used):
        parts.append(f"a name ending in … is cut at {LABEL_WIDTH} characters (its code line is shown whole)")
    return "; ".join(parts) + "." if parts else None


MATRIX_LEGEND = ("in a matrix step, ∂L/∂x is the gradient of what the call differentiates (L) with respect to "
                 "x, G is the node's upstream gradient, ∂L/∂(its result), and @ is a matrix product.")


def _has_matrix_steps(explanation) -> bool:
    """Whether a step writes its local gradient as ∂L/∂x in G (`_local_text`)."""
    return any(step.derivation.steps and step.derivation.steps[0].how == "matrix"
               and not step.node.is_leaf and step.node.inner is None for step in explanation.steps)


def _entering_gradients(graph):
    """Nodes that are a gradient an earlier call made (create_graph=True),
    where it enters this call's graph: a root, or fed to a node of the script's own."""
    return [node for node in graph.nodes if node.origin and not node.is_leaf and (
        any(root.node == node.id for root in graph.roots)
        or any(graph.nodes[consumer].origin is None for consumer, _ in graph.consumers(node.id)))]


def walkthrough(explanation, width: int = 80, view: Optional[View] = None) -> Iterable[RenderableType]:
    """The renderables of one call's walkthrough, for a rich console. A big
    graph gets a table by module and the steps of the `view`'s expanded
    modules only (render/collapse.py)."""
    graph = explanation.graph
    collapsed = collapse(graph, explanation.verification, view or View())
    where = _where(graph.call_source)
    if graph.call.startswith("graphexplain.explain("):
        heading = graph.call
    elif explanation.index == 0:
        heading = f"{graph.call[len('--target '):]}: explained without a backward call (--target)"
    else:
        place = f"  ({where})" if where else ""
        start = f"Backward call {explanation.index}: "
        room = max(LABEL_WIDTH // 2, width - len(start) - len(place) - 6)  # the rule's ends: the place stays seen
        call = graph.call if len(graph.call) <= room else graph.call[:room - 1].rstrip() + "…"
        heading = f"{start}{call}{place}"
    yield Rule(Text(heading, style=STYLES["heading"]), characters="━")
    for root in graph.roots:
        seed = array(root.grad_output)
        dims = shape_note(root.value.shape, root.value.data)
        yield Text(f"root {shorten(root.name)} = {array(root.value.data)}{dims}, gradient seeded with {seed}")
    yield Text(f"{plural(len(graph.nodes), 'node')}, {plural(len(graph.leaves), 'leaf')}, in backward order; "
               "at each node: upstream × local gradient = downstream", style="dim")
    legend = _legend([node.name for node in graph.nodes])
    if legend is not None:
        yield Text(legend, style="dim")
    if _has_matrix_steps(explanation):
        yield Text(MATRIX_LEGEND, style="dim")
    for constant in graph.constants:
        yield Text(f"constant {constant.name}{shape_after(constant)}: {constant.reason}, "
                   "so no gradient flows to it", style="dim")
    for node in _entering_gradients(graph):
        yield Text(f"{node.name} (step {node.id + 1}) is {node.origin}: the nodes below it are that call's "
                   "backward ops")
    for unused in graph.unused:
        yield Text(f"input {unused.name} {shape(unused.shape)}: no output of this call depends on it, so no "
                   f"gradient is computed for it; {unused.returned}")
    yield Text("")
    shown = None
    if collapsed is not None:
        yield from module_summary(explanation, collapsed, (view or View()).full)
        shown = None if (view or View()).full else collapsed.inside_expanded
    several = arrivals(explanation)
    for i, step in enumerate(explanation.steps):
        if step.node.is_leaf or (shown is not None and step.node.id not in shown):
            continue
        yield _node_block(explanation, step, i + 1, several)
    for position, (leaf, derived, verified) in enumerate(zip(graph.leaves, explanation.derivation.leaves,
                                                             explanation.verification.leaves)):
        if shown is not None and leaf.node not in shown:
            continue
        yield _leaf_block(explanation, leaf, derived, verified, explanation.observed.leaf(position))
    yield Text("")
    yield _verdict(explanation)


def _summary_rows(explanation, members, container: str, kind: str, rows: list) -> None:
    """One row per collapsed module, and one per opened module for the
    nodes drawn in it outside its submodules, in the picture's order."""
    loose = [m for m in members if not isinstance(m, Cluster) and m.box is None]
    if loose:
        nodes = tuple(n for m in loose for n in m.nodes)
        ops = sum(1 for m in loose if not explanation.graph.nodes[m.node].is_leaf)
        rows.append((container, kind, ops, max(m.count for m in loose), nodes))
    for member in members:
        if isinstance(member, Cluster):
            nested = any(isinstance(m, Cluster) or m.box is not None for m in member.members)
            _summary_rows(explanation, member.members, f"{member.path}, its own ops" if nested else member.path,
                          member.kind or "", rows)
        elif member.box is not None:
            rows.append((member.box.path, member.box.kind or "", member.box.ops, member.count, member.nodes))


def _first_mismatch_words(explanation, nodes) -> str:
    verification = explanation.verification
    mismatched = sorted(n for n in nodes if verification.nodes[n].status == MISMATCH)
    starts = [n for n in mismatched if verification.nodes[n].inherited_from is None] or mismatched
    if not starts:
        return ""
    node = explanation.graph.nodes[starts[0]]
    where = _where(node.source)
    return f"step {node.id + 1}, {node.op}" + (f" ({where})" if where else "")  # names can be long: the step has it


def module_summary(explanation, collapsed, full: bool = False) -> Iterable[RenderableType]:
    """The table of a big graph's walkthrough: a row per module call (or run
    of identical calls) with its ops, the worst status of its nodes and
    where a mismatch inside it starts."""
    statuses = {v.node: v.status for v in explanation.verification.nodes}
    for leaf in explanation.verification.leaves:
        statuses[leaf.node] = worst([statuses.get(leaf.node, leaf.status), leaf.status])
    rows: list = []
    _summary_rows(explanation, collapsed.members, "(outside every module)", "", rows)
    table = Table(title=f"By module ({plural(len(explanation.graph.nodes), 'node')}; module levels open: "
                        f"{collapsed.depth})", title_justify="left", box=None, padding=(0, 1), show_edge=False)
    mismatches = any(statuses[n] == MISMATCH for row in rows for n in row[4])
    table.add_column("module", overflow="fold", ratio=3)
    table.add_column("type", overflow="fold", ratio=2)
    table.add_column("ops", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    if mismatches:
        table.add_column("first mismatch", overflow="fold", ratio=3)
    for module, kind, ops, count, nodes in rows:
        status = worst(statuses[n] for n in nodes)
        cells = [Text(module), Text(kind), f"{ops}" + (f" ×{count}" if count > 1 else ""),
                 Text(f"{MARKS[status]} {SHORT_WORDS[status]}", style=STYLES[status])]
        if mismatches:
            cells.append(Text(_first_mismatch_words(explanation, nodes), style=STYLES[MISMATCH]))
        table.add_row(*cells)
    yield table
    for name in collapsed.unknown:
        yield Text(f"--expand {name}: no module of this call has that path; its modules include "
                   f"{', '.join(p for p in collapsed.paths if p.count('.') < 2)}.", style=STYLES[NO_RULE])
    total = len(explanation.graph.nodes)
    if full:
        yield Text(f"All {plural(total, 'step')} follow (--full).", style="dim")
    elif collapsed.inside_expanded:
        yield Text(f"The steps of {', '.join(collapsed.expanded)} follow ({len(collapsed.inside_expanded)} of "
                   f"{plural(total, 'node')}); --full shows every step.", style="dim")
    else:
        yield Text(f"The {total} steps are not printed one by one for a graph this big: --expand MODULE "
                   "prints a module's steps, --full prints every step.", style="dim")
    yield Text("")


def report_parts(report, width: int = 80, quiet: bool = False) -> Iterable[RenderableType]:
    """Everything graphexplain prints about a run, before the verdict line."""
    folded = report.folded  # call → the call whose walkthrough stands for it
    if not quiet:
        for explanation in report.all_explanations:
            if explanation.index in folded:  # a line of the loop table (Note [a loop's walkthroughs folded])
                continue
            yield from walkthrough(explanation, width, report.view)
            yield Text("")
            yield from update_section(getattr(report, "updates", {}).get(explanation.index), explanation.index)
    yield from call_errors(report)
    listing = call_listing(report, quiet)
    if listing is not None:
        yield listing


def plain_console(file, width: int = 80) -> Console:
    """A console that writes the same text on every run: fixed width, no colour."""
    return Console(file=file, width=width, color_system=None, force_terminal=False,
                   highlight=False, emoji=False, legacy_windows=False, markup=False)


def _plain_text(parts, width: int) -> str:
    buffer = StringIO()
    plain = plain_console(buffer, width)
    for part in parts:
        plain.print(part)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def report_text(report, width: int = 80) -> str:
    """A whole run's report as plain text at a fixed width (for docs and tests)."""
    return _plain_text([*report_parts(report, width), verdict_line(report)], width)


class Unpadded:
    """A file or pipe that gets the console's lines without the spaces rich
    pads them with to the full width: text sent to a file, a pager or an
    issue should not end every line in blanks. Only whole lines are
    trimmed; a line is held until its end arrives (rich ends every print
    with one)."""

    def __init__(self, file):
        self.file, self._held = file, ""

    def write(self, text: str) -> int:
        lines = (self._held + text).split("\n")
        self._held = lines.pop()
        if lines:
            self.file.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._held:  # a line without its end yet: as it is
            self.file.write(self._held)
            self._held = ""
        self.file.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):  # encoding, fileno, ...: the file's own
        return getattr(self.file, name)


def console(file=None, width: Optional[int] = None, color: Optional[bool] = None) -> Console:
    """The console the CLI prints to: colour only on a terminal, and lines
    not padded with blanks where the output is no terminal (`Unpadded`). A
    string it prints is shown as it is, never read as markup: a path or a
    name with ``[bold]`` or ``[/x]`` in it prints literally (styles come as
    `Text`)."""
    if file is not None and not color and not _is_terminal(file):
        file = Unpadded(file)
    return Console(file=file, width=width, no_color=color is False, highlight=False,
                   force_terminal=True if color else None, emoji=False, markup=False)


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # a closed or odd file: treated as none
        return False


def to_text(explanation, width: int = 80) -> str:
    """The walkthrough as plain text at a fixed width (for tests and docs)."""
    return _plain_text(walkthrough(explanation, width), width)


LISTED_IN_FULL = 12  # more calls not explained than this (a training loop), and the table is summarised
LISTED_FIRST, LISTED_BETWEEN = 3, 4  # then: the first few, a few evenly between, and the last


def listed_positions(count: int) -> list:
    """Which of `count` listed calls get a row: all of a few; of many, the
    first LISTED_FIRST, LISTED_BETWEEN evenly spaced between, and the last.

        >>> listed_positions(300)
        [0, 1, 2, 62, 121, 181, 240, 299]
    """
    if count <= LISTED_IN_FULL:
        return list(range(count))
    first, last = LISTED_FIRST, count - 1
    between = [first + round((last - first) * k / (LISTED_BETWEEN + 1)) for k in range(1, LISTED_BETWEEN + 1)]
    return sorted({*range(first), *between, last})


FOLDED_TITLE = "Calls explained and verified, with the graph of the call named (--full prints their walkthroughs)"


QUIET_TITLE = "Backward calls (--quiet prints no walkthrough; explain another with --call N)"


def call_listing(report, quiet: bool = False) -> Optional[Table]:
    """One line per backward call that was not explained in full (or whose
    walkthrough was folded: Note [a loop's walkthroughs folded] in report.py;
    under --quiet, every call, since no walkthrough is printed); for many
    calls, a few of them with "… N more calls …" rows between."""
    folded = report.folded  # call → the call whose walkthrough stands for it
    listed = [record for record in report.calls
              if (quiet or record.index not in report.explanations or record.index in folded)
              and record.error is None]
    if not listed:
        return None
    shown = listed_positions(len(listed))
    title = "Other backward calls (explain one with --call N)"
    if quiet:
        title = QUIET_TITLE
    elif folded:
        title = FOLDED_TITLE if all(r.index in folded for r in listed) else f"{title}; ✓: {FOLDED_TITLE.lower()}"
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1), show_edge=False)
    table.add_column("call", justify="right")
    table.add_column("root")
    table.add_column("value", justify="right")
    table.add_column("leaf gradient norms", overflow="fold")
    table.add_column("status")
    previous = -1
    for position in shown:
        skipped = position - previous - 1
        if skipped:
            table.add_row("…", "", "", Text(f"… {plural(skipped, 'more call')} …", style="dim"), "")
        previous = position
        record = listed[position]
        norms = ", ".join(f"‖{shorten(name)}‖={number(norm)}" for name, norm in record.summary.leaf_norms)
        value = number(record.summary.root_value) if record.summary.root_value is not None else ""
        why = f"not explained: {record.capture_problem}" if record.capture_problem else "not explained"
        status = Text(why, style="dim")
        if quiet and record.index in report.explanations:
            status = _explained_status(report.explanations[record.index])
        elif record.index in folded:
            status = Text(f"{MARKS[VERIFIED]} graph of call {folded[record.index]}", style=STYLES[VERIFIED])
        table.add_row(str(record.index), Text(shorten(record.summary.root)), value, Text(norms), status)
    return table


def _explained_status(explanation) -> Text:
    status = explanation.status
    text = Text(f"{MARKS.get(status, '·')} {WORDS.get(status, status)}", style=STYLES.get(status, ""))
    first = explanation.first_mismatch()
    if status == MISMATCH and first is not None:
        text.append(f" at step {first.id + 1}, {shorten(first.name)}")
    return text


def call_errors(report) -> Iterable[RenderableType]:
    for record in report.calls:
        if record.error is None:
            continue
        yield Rule(Text(f"Backward call {record.index}: {record.call} raised an error", style=STYLES[MISMATCH]))
        yield Text(f"torch says: {record.error.strip()}")
        if record.explanation:
            yield Text(f"In plain words: {record.explanation}")


def verdict_line(report) -> Text:
    calls = len(report.calls)
    explained = len(report.explanations) + (report.target is not None)
    status = report.status
    summary = f"{plural(calls, 'backward call')}, {explained} explained"
    if status == VERIFIED:
        return Text(f"✓ verified — {summary}; every node and leaf matches torch.", style=STYLES[VERIFIED])
    if status == MISMATCH:
        return Text(f"✗ mismatch — {summary}; see the first ✗ above.", style=STYLES[MISMATCH])
    if status in (NO_RULE, RULE_ERROR, NOT_DERIVED, HOOK_CHANGED, UNCHECKED, INTENTIONAL):
        why = {NO_RULE: "some ops have no symbolic rule", RULE_ERROR: "a rule failed to apply",
               NOT_DERIVED: "some gradients are not derived", HOOK_CHANGED: "a hook changed a gradient",
               UNCHECKED: "some numbers are torch's only",
               INTENTIONAL: "a custom Function's gradient differs from its forward's on purpose"}[status]
        return Text(f"? incomplete — {summary}; {why}, and what lies below it is not verified.",
                    style=STYLES[NO_RULE])
    if status == "no-backward":
        return Text("The script finished without calling .backward(), torch.autograd.backward or "
                    "torch.autograd.grad, so there is no gradient to explain. Call backward on a "
                    "result (for example loss.backward()) and trace again.", style=STYLES[NO_RULE])
    if status == "target-problem":
        return Text("✗ the --target tensor could not be explained (see the message above).", style=STYLES[MISMATCH])
    if status == "script-error":
        if report.run.traceback:
            return Text(f"✗ the script raised an error — {summary} before it; its traceback follows.",
                        style=STYLES[MISMATCH])
        return Text(f"✗ the script exited with code {report.run.exit_code} — {summary} before that.",
                    style=STYLES[MISMATCH])
    if status == "nothing-explained":
        return Text(f"✗ nothing was explained — {summary}; no call asked for could be explained.",
                    style=STYLES[MISMATCH])
    return Text(f"· {summary}; some numbers could not be checked.", style=STYLES[NOT_CHECKED])


# --- the updates after an explained call (docs/optimizers.md) ----------------
UPDATE_HEADINGS = {"step": "{call}: {what}", "manual": "{call}: the script's own update under torch.no_grad()"}


def _put_numbers(formula: str, inputs) -> str:
    """The formula with each name's first element put in: p - lr*grad → 0.5 - 0.01*(-2)."""
    values = dict(inputs)

    def put(match):
        word = match.group(0)
        if word not in values:
            return word
        text = number(values[word])
        return f"({text})" if text.startswith("-") else text

    return re.sub(r"\b[A-Za-z_][A-Za-z_0-9]*\b", put, formula)


def _named(formula: str, name: str) -> str:
    return re.sub(r"\bp\b", name, formula)


def _hyper_words(before) -> str:
    shown = [f"{key}={value}" for key, value in sorted(before.hyper.items())
             if key in ("lr", "momentum", "dampening", "weight_decay", "betas", "eps", "alpha")
             and value not in (0, 0.0, None)]
    return ", ".join(shown)


def _operand_code(call: str) -> str:
    """`w -= learning_rate * w.grad` → "learning_rate * w.grad = "; "" where the line says no more."""
    for operator in ("-=", "+=", "*=", "/="):
        if operator in call:
            return call.split(operator, 1)[1].strip() + " = "
    return ""


def _update_param(param, before, call: str) -> Iterable[RenderableType]:
    name = shorten(param.name)
    size = np.size(param.before) if param.before is not None else 0
    title = f"{name} {shape(np.shape(param.before))}"
    if param.status == NO_RULE:
        yield Text(f"  {title}: {param.note}", style=STYLES[NO_RULE])
        yield Text(f"    before {array(param.before)}")
        yield Text(f"    after  {array(param.after)}  (torch's; not checked)")
        return
    yield Text(f"  {title}: {param.rule}" + (", numbers of element [0]" if size > 1 else ""))
    if before.operand is not None:  # a manual update: t is what the script's line applies
        yield Text(f"    t = {_operand_code(call)}{array(before.operand)}")
    checks = {check.what: check for check in param.checks}
    for assignment in param.assignments:
        target = name if assignment.name == "p" else assignment.name
        arrow = "←" if assignment.checked else "="
        line = Text(f"    {target} {arrow} {_named(assignment.formula, name)} = "
                    f"{_put_numbers(assignment.formula, assignment.inputs)} = "
                    f"{array(assignment.value)}")
        what = param.name if assignment.name == "p" else f"{param.name} {assignment.name}"
        check = checks.get(what) if assignment.checked else None
        if check is not None:
            line.append("  ")
            line.append_text(_mark(check.status))
            if check.status == MISMATCH:
                line.append(f" {_mismatch_words(check).removeprefix('✗ ')}", style=STYLES[MISMATCH])
        yield line


def update_section(results, index: int) -> Iterable[RenderableType]:
    """What the script did to the parameters after explained call `index`:
    each optimizer step's update per parameter, formula then numbers, checked
    against what torch wrote; manual updates; gradients cleared."""
    if not results:
        return
    yield Rule(Text(f"After backward call {index}: the parameters' updates", style=STYLES["heading"]),
               characters="─")
    for result in results:
        update = result.update
        where = f" ({_where(update.source)})" if update.source is not None else ""
        if update.kind == "cleared":
            cleared = ", ".join(shorten(name) for name in update.cleared)
            by = f"by {update.call}" if update.call else f"({update.what})"
            yield Text(f"gradients cleared {by}{where}: {cleared} ({update.how})")
            continue
        words = UPDATE_HEADINGS[update.kind].format(call=update.call, what=update.what)
        hyper = _hyper_words(update.before[0]) if update.before and update.kind == "step" else ""
        heading = Text(f"{words}{', ' + hyper if hyper else ''}{where}  ")
        heading.append_text(_mark(result.status))
        yield heading
        for param, before in zip(result.params, update.before):
            yield from _update_param(param, before, update.call)
    yield Text("")
