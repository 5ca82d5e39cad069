"""The walkthrough as Markdown, for a blog post: `graphexplain trace --markdown FILE`.

Per explained call: a heading, the picture (a path relative to the Markdown
file's folder), then one table per node: its code, forward formula, local
gradients, upstream × local = downstream with the numbers, torch's number
and the mark. Formulas are `$…$` LaTeX printed by sympy (derive/printing.py);
numbers and code are inline code; every other piece of the user's text is
escaped, so a name with `*`, `|`, `` ` `` or `[bold]` in it prints as written.
Many calls (a training loop) end with the table of the calls not explained.
The same run gives the same bytes.

    >>> text("a*b_c [bold] <i> x|y")
    'a\\\\*b\\\\_c \\\\[bold\\\\] &lt;i&gt; x\\\\|y'
    >>> code("z = y | 2")
    '`z = y \\\\| 2`'
"""

from __future__ import annotations

import os
import re
from typing import Iterable, List, Mapping, Optional

import numpy as np

from ..notation import is_number, label, shorten
from ..results import DERIVED, HOOK_CHANGED, INTENTIONAL, MISMATCH, NO_RULE, NOT_DERIVED, RULE_ERROR, UNCHECKED
from .collapse import View, collapse
from .formatting import (array, arrivals, arrivals_text, local_statement as _local_formula, number, place, plural,
                         shape, shape_after, shape_note, summarised)
from .terminal import (
    MARKS, MATRIX_LEGEND, UPDATE_HEADINGS, WORDS, _entering_gradients, _has_matrix_steps, _hyper_words, _legend,
    _mismatch_words, _named, _operand_code, _plain_text, _put_numbers, _verdict, _where, listed_positions,
    module_summary, verdict_line,
)

# The first line of every file --markdown writes: a rerun may replace a file that starts with it.
MARKER = "<!-- Written by graphexplain trace --markdown; reruns may overwrite this file. -->"

_ESCAPED = set("\\`*_[]{}|$~#!")  # backslash-escaped; < > & become entities


def text(words: str) -> str:
    """The user's text as Markdown shows it literally, in a paragraph or a table cell."""
    out = []
    for character in str(words).replace("\r", " ").replace("\n", " "):
        if character in _ESCAPED:
            out.append("\\" + character)
        else:
            out.append({"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(character, character))
    return "".join(out)


def code(words: str, table: bool = True) -> str:
    """Inline code, fenced with more backticks than it holds; `|` escaped
    for a table cell (GitHub's tables split on it even inside code)."""
    words = str(words).replace("\r", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", words)), default=0)
    fence = "`" * (longest + 1)
    if words.startswith("`") or words.endswith("`") or (words.startswith(" ") and words.endswith(" ") and words.strip()):
        words = f" {words} "
    if table:
        words = words.replace("|", "\\|")
    return f"{fence}{words}{fence}" if words else "` `"


def math(formula: str, names: Iterable[str] = ()) -> str:
    """A formula string of the records as `$…$` LaTeX, printed by sympy."""
    from ..derive.printing import to_latex  # the derivation stage is the one that imports sympy

    latex = to_latex(formula, [name for name in names if not is_number(name)])  # a literal 2 stays a number
    return f"${latex}$" if latex else ""


def numbers(data) -> str:
    return code(array(data))


def _value(dims, data) -> str:
    """A value with its shape; a summary already begins with it."""
    return numbers(data) if summarised(data) else f"{text(shape(dims))} {numbers(data)}"


def _mark(status: str) -> str:
    return f"{MARKS[status]} {WORDS[status]}"


class _Table:
    """A node's or a leaf's two-column table: what, and its content (already Markdown)."""

    def __init__(self):
        self.rows: List[tuple] = []

    def add(self, what: str, content: str) -> None:
        self.rows.append((what, content))

    def lines(self) -> List[str]:
        out = ["| | |", "|:--|:--|"]
        out += [f"| {what} | {content} |" for what, content in self.rows]
        return out


def _node_names(node) -> List[str]:
    names = [node.name, shorten(node.name)]
    names += [operand.label for operand in node.operands] + [shorten(operand.label) for operand in node.operands]
    return names


def _chain(step, names) -> str:
    down = numbers(step.downstream)
    if step.how in ("multiply", "spread"):
        return f"{numbers(step.upstream)} × {numbers(step.local)} = {down}"
    if step.how == "route":
        return f"{numbers(step.upstream)} routed back = {down}"
    if step.how == "matrix":
        return f"{math(step.formula, names)} = {down}" if step.formula else down
    return "not derived"


def _node(explanation, step, position: int, level: int, several=None) -> List[str]:
    node, derived, verified = step.node, step.derivation, step.verification
    names = _node_names(node)
    where = _where(node.source)
    heading = f"{'#' * level} {position}. {code(shorten(node.name), table=False)} — {code(node.op, table=False)}, " \
              f"{text(derived.title)}"
    table = _Table()
    if node.source is not None and node.source.code:
        table.add("code", code(node.source.code) + (f" ({text(where)})" if where else ""))
    if node.module:
        table.add("module", code(node.module))
    if node.origin:
        table.add("from", text(node.origin))
    if node.output is not None:
        table.add("value", _value(node.output.shape, node.output.data))
    shown = derived if derived.status == DERIVED or verified.local is None else verified.local
    if verified.reason and verified.status in (UNCHECKED, HOOK_CHANGED):
        table.add("why", text(verified.reason))
    if derived.status in (NO_RULE, RULE_ERROR) or (derived.status == NOT_DERIVED and shown is derived):
        table.add("rule", text(derived.note or "no symbolic rule"))
    if node.inner is not None:
        table.add("forward", text(f"{node.inner.forward_words} run again on float64 copies of its inputs"))
        if shown.status == DERIVED:
            if shown.forward_named and shown.forward_named != shown.forward:
                table.add("formula", math(f"{shorten(node.name)} = {shown.forward_named}", names))
            for local in shown.local_gradients:
                table.add("local", math(f"∂{label(shorten(node.name))}/∂{label(shorten(local.label))} = "
                                        f"{local.expr}", names))
    elif shown.status == DERIVED:
        table.add("forward", math(f"{shorten(node.name)} = {shown.forward_named}", names))
        for local in shown.local_gradients:
            content = math(_local_formula(node, shown, local), names)
            if local.value is not None and array(local.value) != local.named:
                content += f" = {numbers(local.value)}"
            table.add("local", content + text(place(shown, local, "as ")))  # after the formula: LaTeX has no words
    if derived.upstream is not None:
        uses = (several or {}).get(node.id)
        summed = f", the sum of what its {len(uses)} uses send back: {text(arrivals_text(uses))}" if uses else ""
        table.add("upstream", numbers(derived.upstream) + summed)
    torch_upstream = explanation.observed.upstream(node.id)
    if shown is not derived or (derived.upstream is None and torch_upstream is not None):
        table.add("upstream", f"{numbers(torch_upstream)} (torch's)" if torch_upstream is not None else "?")
    repeated = len({s.label for s in shown.steps}) < len(shown.steps)
    for chain_step in shown.steps:
        target = code(f"{chain_step.label} ({chain_step.input})" if repeated else chain_step.label)
        torch_value = explanation.observed.downstream(node, chain_step.input)
        if chain_step.downstream is None:
            table.add(f"chain → {target}", f"not derived; torch's number: {numbers(torch_value)}")
            continue
        words = " (on torch's upstream)" if shown is not derived else ""
        content = _chain(chain_step, names) + words
        if chain_step.broadcast:
            content += f"<br>{text(chain_step.broadcast)}"
        table.add(f"chain → {target}", content)
        if torch_value is not None:
            table.add("backward" if node.inner is not None else "torch", numbers(torch_value))
    if node.inner is not None and verified.reason and verified.status in (MISMATCH, INTENTIONAL):
        table.add("verdict", text(verified.reason))
    for check in verified.checks:
        if check.status == MISMATCH and verified.status == INTENTIONAL:
            table.add("differs", text(_mismatch_words(check)[2:]))
        elif check.status == MISMATCH:
            table.add("check", f"**{text(_mismatch_words(check))}**")
    status = _mark(verified.status)
    if verified.status == UNCHECKED and verified.checks:
        status += " (its own step agrees with torch, on torch's upstream)"
    if verified.inherited_from is not None:
        status += f" (inherited from step {verified.inherited_from + 1})"
    table.add("status", f"**{text(status)}**")
    return [heading, "", *table.lines(), ""]


def _leaf(explanation, leaf, derived, verified, torch_side, level: int) -> List[str]:
    kind = "input" if leaf.produced_by else "leaf"
    heading = f"{'#' * level} {kind} {code(shorten(leaf.name), table=False)}"
    if leaf.produced_by:
        heading += f", produced by {text(leaf.produced_by)}"
    table = _Table()
    table.add("value", _value(leaf.value.shape, leaf.value.data))
    roots = ", ".join(shorten(root.name) for root in explanation.graph.roots)
    seeded = any(np.size(root.grad_output) > 1 for root in explanation.graph.roots)
    names = [n.name for n in explanation.graph.nodes] + [r.name for r in explanation.graph.roots]
    gradient = f"∂{label(roots)}/∂{label(shorten(leaf.name))}"
    prefix = "$v^{T}$ · " if seeded else ""
    if derived.grad is None:
        table.add("gradient", text(f"not derived — {verified.reason or 'see above'}"))
        if derived.partial is not None:
            through = ", ".join(f"step {c + 1}" for c in derived.missing_from)
            table.add("", f"derived part {numbers(derived.partial)}; the part through {text(through)} is "
                          "torch's alone")
    elif derived.symbolic:
        table.add("gradient", f"{prefix}{math(f'{gradient} = {derived.symbolic}', names)} = {numbers(derived.grad)}")
    else:
        table.add("gradient", f"{prefix}{math(gradient, names)} = {numbers(derived.grad)}")
    jacobian = explanation.jacobians.get(leaf.node)
    if jacobian is not None:
        root = explanation.graph.roots[0]
        rows = "[" + ", ".join(array(row, small=jacobian.shape[1]) for row in jacobian) + "]"
        table.add("Jacobian", f"{math(f'J = ∂{label(root.name)}/∂{label(leaf.name)}', names)}, one row per "
                              f"element of {code(root.name)}: {code(rows)}")
        product = np.asarray(root.grad_output).reshape(-1) @ jacobian
        table.add("$v^{T} J$", f"{numbers(root.grad_output)} · J = {numbers(product.reshape(leaf.value.shape))} "
                               "(what backward(v) computes, without forming J)")
    if torch_side.grad is not None:
        table.add("torch", numbers(torch_side.grad))
    if leaf.accumulates and leaf.grad_before is not None and derived.grad is not None:
        table.add(".grad", f"accumulates: {numbers(leaf.grad_before)} (already there) + {numbers(derived.grad)} "
                           f"(this call) = {numbers(derived.accumulated)}; torch's .grad is now "
                           f"{numbers(torch_side.grad_after)}")
    elif leaf.accumulates and leaf.grad_before is not None:
        table.add(".grad", f"accumulates: {numbers(leaf.grad_before)} (already there) + this call; torch's "
                           f".grad is now {numbers(torch_side.grad_after)}")
    elif leaf.accumulates:
        table.add(".grad", f"was None, now {numbers(torch_side.grad_after)}")
    if verified.reason and verified.status == HOOK_CHANGED:
        table.add("hook", text(verified.reason))
    for check in verified.checks:
        if check.status == MISMATCH:
            table.add("check", f"**{text(_mismatch_words(check))}**")
    table.add("status", f"**{text(_mark(verified.status))}**")
    return [heading, "", *table.lines(), ""]


def call_markdown(explanation, picture: Optional[str] = None, view: Optional[View] = None,
                  level: int = 2, missing_picture: str = "") -> List[str]:
    """One explained call's section, as lines: its heading at `level`, the
    picture at the relative path `picture`, the nodes and leaves."""
    graph = explanation.graph
    view = view or View()
    collapsed = collapse(graph, explanation.verification, view)
    where = _where(graph.call_source)
    if explanation.index == 0:
        heading = f"{code(graph.call[len('--target '):], table=False)}: explained without a backward call (--target)"
    else:
        heading = f"Backward call {explanation.index}: {code(graph.call, table=False)}" + \
            (f" ({text(where)})" if where else "")
    lines = [f"{'#' * level} {heading}", ""]
    if picture:
        alt = "the graph of " + (f"backward call {explanation.index}" if explanation.index else "the --target tensor")
        lines += [f"![{alt}]({picture.replace(os.sep, '/').replace(' ', '%20').replace('(', '%28').replace(')', '%29')})", ""]
    elif missing_picture:
        lines += [f"*{text(missing_picture)}*", ""]
    about = [f"Root {code(shorten(root.name), table=False)} = {code(array(root.value.data), table=False)}"
             f"{text(shape_note(root.value.shape, root.value.data))}, "
             f"gradient seeded with {code(array(root.grad_output), table=False)}." for root in graph.roots]
    about.append(f"{plural(len(graph.nodes), 'node')}, {plural(len(graph.leaves), 'leaf')}, in backward order; "
                 "at each node: upstream × local gradient = downstream.")
    legend = _legend([node.name for node in graph.nodes])
    if legend:
        about.append(text(legend))
    if _has_matrix_steps(explanation):
        about.append(text(MATRIX_LEGEND[0].upper() + MATRIX_LEGEND[1:]))
    lines += [" ".join(about), ""]
    notes = [f"constant {code(constant.name, table=False)}{text(shape_after(constant))}: {text(constant.reason)}, "
             "so no gradient flows to it" for constant in graph.constants]
    notes += [f"{code(node.name, table=False)} (step {node.id + 1}) is {text(node.origin)}: the nodes below it are "
              "that call's backward ops" for node in _entering_gradients(graph)]
    notes += [f"input {code(unused.name, table=False)} {text(shape(unused.shape))}: no output of this call depends "
              f"on it, so no gradient is computed for it; {text(unused.returned)}" for unused in graph.unused]
    if notes:
        lines += [f"- {note}" for note in notes] + [""]
    shown = None
    if collapsed is not None:
        summary = _plain_text(list(module_summary(explanation, collapsed, view.full)), 100)
        lines += ["```text", *summary.rstrip("\n").splitlines(), "```", ""]
        shown = None if view.full else collapsed.inside_expanded
    several = arrivals(explanation)
    for position, step in enumerate(explanation.steps, 1):
        if step.node.is_leaf or (shown is not None and step.node.id not in shown):
            continue
        lines += _node(explanation, step, position, level + 1, several)
    for index, (leaf, derived, verified) in enumerate(zip(graph.leaves, explanation.derivation.leaves,
                                                          explanation.verification.leaves)):
        if shown is not None and leaf.node not in shown:
            continue
        lines += _leaf(explanation, leaf, derived, verified, explanation.observed.leaf(index), level + 1)
    lines += [f"**{text(_verdict(explanation).plain)}**", ""]
    return lines


def _update_param(param, before, call: str, level: int) -> List[str]:
    """One parameter's update as a table: each assignment's formula (sympy's
    LaTeX), its numbers, its value, and the mark where torch wrote the value."""
    name = shorten(param.name)
    size = np.size(param.before) if param.before is not None else 0
    heading = f"{'#' * level} {code(name, table=False)} {text(shape(np.shape(param.before)))}"
    table = _Table()
    if param.status == NO_RULE:
        table.add("rule", text(param.note))
        table.add("before", numbers(param.before))
        table.add("after", f"{numbers(param.after)} (torch's; not checked)")
        table.add("status", f"**{text(_mark(NO_RULE))}**")
        return [heading, "", *table.lines(), ""]
    table.add("rule", text(param.rule + (", numbers of element [0]" if size > 1 else "")))
    if before.operand is not None:  # a manual update: t is what the script's line applies
        table.add("t", code(f"{_operand_code(call)}{array(before.operand)}"))
    checks = {check.what: check for check in param.checks}
    for assignment in param.assignments:
        target = name if assignment.name == "p" else assignment.name
        arrow = "←" if assignment.checked else "="
        content = (f"{math(_named(assignment.formula, name), [name])} = "
                   f"{code(_put_numbers(assignment.formula, assignment.inputs))} = {numbers(assignment.value)}")
        what = param.name if assignment.name == "p" else f"{param.name} {assignment.name}"
        check = checks.get(what) if assignment.checked else None
        if check is not None and check.status == MISMATCH:
            content += f" **{text(_mark(MISMATCH))} {text(_mismatch_words(check).removeprefix('✗ '))}**"
        elif check is not None:
            content += f" {text(_mark(check.status))}"
        table.add(f"{code(target)} {arrow}", content)
    table.add("status", f"**{text(_mark(param.status))}**")
    return [heading, "", *table.lines(), ""]


def updates_markdown(results, index: int, level: int = 2) -> List[str]:
    """What the script did to the parameters after explained call `index`, as
    the terminal shows it (render/terminal.py's update_section): each
    optimizer step or manual update per parameter, checked against what torch
    wrote, and the gradients cleared. No lines where the script did nothing."""
    if not results:
        return []
    lines = [f"{'#' * level} After backward call {index}: the parameters' updates", ""]
    for result in results:
        update = result.update
        where = f" ({text(_where(update.source))})" if update.source is not None else ""
        if update.kind == "cleared":
            cleared = ", ".join(code(shorten(name), table=False) for name in update.cleared)
            by = f"by {code(update.call, table=False)}" if update.call else f"({text(update.what)})"
            lines += [f"Gradients cleared {by}{where}: {cleared} ({text(update.how)}).", ""]
            continue
        words = UPDATE_HEADINGS[update.kind].format(call="{call}", what=text(update.what))
        words = words.replace("{call}", code(update.call, table=False), 1)
        hyper = _hyper_words(update.before[0]) if update.before and update.kind == "step" else ""
        lines += [f"{words}{', ' + code(hyper, table=False) if hyper else ''}{where}: "
                  f"**{text(_mark(result.status))}**", ""]
        for param, before in zip(result.params, update.before):
            lines += _update_param(param, before, update.call, level + 1)
    return lines


def _listing(report, level: int) -> List[str]:
    """The calls not explained in full, one row each; of many, a few with
    "… N more calls …" rows between (as the terminal lists them)."""
    listed = [record for record in report.calls if record.index not in report.explanations and record.error is None]
    if not listed:
        return []
    lines = [f"{'#' * level} Other backward calls", "", "Explain one with `--call N`.", "",
             "| call | root | value | leaf gradient norms | status |", "|--:|:--|--:|:--|:--|"]
    previous = -1
    for position in listed_positions(len(listed)):
        skipped = position - previous - 1
        if skipped:
            lines.append(f"| … | | | *… {plural(skipped, 'more call')} …* | |")
        previous = position
        record = listed[position]
        norms = ", ".join(f"‖{code(shorten(name))}‖ = {code(number(norm))}" for name, norm in record.summary.leaf_norms)
        value = code(number(record.summary.root_value)) if record.summary.root_value is not None else ""
        why = f"not explained: {record.capture_problem}" if record.capture_problem else "not explained"
        lines.append(f"| {record.index} | {code(shorten(record.summary.root))} | {value} | {norms} | {text(why)} |")
    return lines + [""]


def _errors(report, level: int) -> List[str]:
    lines = []
    for record in report.calls:
        if record.error is None:
            continue
        lines += [f"{'#' * level} Backward call {record.index}: {code(record.call, table=False)} raised an error", "",
                  f"torch says: {code(record.error.strip(), table=False)}", ""]
        if record.explanation:
            lines += [f"In plain words: {text(record.explanation)}", ""]
    return lines


def to_markdown(report, pictures: Optional[Mapping[int, str]] = None, missing: Optional[Mapping[int, str]] = None,
                title: Optional[str] = None) -> str:
    """A whole run as a Markdown page. `pictures` maps a call's index (0
    for --target) to its picture's path, relative to the page's folder;
    `missing` to why a call has none. `title` is the page heading's script."""
    pictures, missing = pictures or {}, missing or {}
    lines = [MARKER, "", f"# graphexplain: {code(title or report.run.script, table=False)}", "",
             f"**{text(verdict_line(report).plain)}**", ""]
    for explanation in report.all_explanations:
        lines += call_markdown(explanation, pictures.get(explanation.index), report.view, 2,
                               missing.get(explanation.index, ""))
        lines += updates_markdown(getattr(report, "updates", {}).get(explanation.index), explanation.index, 2)
    lines += _errors(report, 2)
    lines += _listing(report, 2)
    return "\n".join(lines).rstrip("\n") + "\n"
