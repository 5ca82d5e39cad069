"""The walkthrough as one self-contained HTML page: `graphexplain trace --html FILE`.

Per explained call, a fragment (`fragment`): the graph as inline SVG drawn
by graphviz, beside one panel per step (its code line, forward formula,
local gradients, upstream × local = downstream, torch's number and the
verdict). Clicking a node of the picture opens its step; the first
mismatch is open from the start and linked from the top. Formulas are
presentation MathML printed by sympy (derive/printing.py); tensors of more
than a few elements are folded (`<details>`). The page (`page`) adds a
table of every backward call with its status.

Nothing is fetched: the CSS, the SVG and a little JS are inline, so the page
works offline, and the same run gives the same bytes. Every string of the
user's (names, code, paths, torch's messages) goes through `text`:

    >>> text('a<b & "c" \\'d\\' [bold]')
    'a&lt;b &amp; &quot;c&quot; &#x27;d&#x27; [bold]'

A fragment is usable alone (a notebook's `_repr_html_`): its CSS is scoped
to its wrapper class `gx`, and its script binds each fragment once, however
many share a page (Note [several fragments on one page]).
"""

from __future__ import annotations

import html
import os
import re
from typing import Iterable, List, Optional, Tuple

import numpy as np

from ..notation import is_number, label, shorten
from ..results import DERIVED, HOOK_CHANGED, INTENTIONAL, MISMATCH, NO_RULE, NOT_DERIVED, RULE_ERROR, UNCHECKED
from .collapse import View, collapse
from .formatting import (array, arrivals, arrivals_text, local_statement as _local_formula, number, place, plural,
                         shape, shape_after, shape_note, summarised)
from .terminal import (
    MARKS, UPDATE_HEADINGS, WORDS, _hyper_words, _mismatch_words, _named, _operand_code, _put_numbers, _verdict,
    _where, listed_positions, verdict_line,
)

# In the <head> of every page --html writes: a rerun may replace a file that holds it.
MARKER = '<meta name="generator" content="graphexplain trace --html">'
FULL_LIMIT = 1000  # elements a folded tensor lists in full; more, and only its summary (the JSON has the rest)

# Looks are data: a status's colour, used by the step panels and the SVG's highlight.
COLOURS = {
    "verified": "#15803d", MISMATCH: "#dc2626", NO_RULE: "#b45309", RULE_ERROR: "#b45309",
    NOT_DERIVED: "#b45309", HOOK_CHANGED: "#7c3aed", INTENTIONAL: "#7c3aed", UNCHECKED: "#6b7280",
    "not-checked": "#6b7280",
}

CSS = """\
.gx{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#111827;margin:0 0 2em}
.gx h2{font-size:1.2em;margin:.6em 0 .3em}
.gx code,.gx pre{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.92em}
.gx pre{white-space:pre-wrap;margin:.2em 0;max-height:24em;overflow:auto;background:#f9fafb;padding:.3em}
.gx .gx-note{color:#4b5563;margin:.2em 0}
.gx .gx-verdict{font-weight:600;margin:.4em 0}
.gx .gx-layout{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.gx .gx-picture{flex:1 1 22em;min-width:16em;max-width:100%;overflow:auto;border:1px solid #e5e7eb;padding:.3em}
.gx .gx-picture svg{max-width:100%;height:auto}
.gx .gx-picture g.node{cursor:pointer}
.gx .gx-picture g.node.gx-selected polygon,.gx .gx-picture g.node.gx-selected path{stroke:#2563eb;stroke-width:3}
.gx .gx-missing{color:#b45309}
.gx .gx-steps{flex:1 1 30em;min-width:18em}
.gx .gx-step{border:1px solid #e5e7eb;border-left:4px solid #9ca3af;margin:.3em 0;padding:.1em .5em}
.gx .gx-step>summary{cursor:pointer;padding:.2em 0}
.gx .gx-step.gx-selected{outline:2px solid #2563eb}
.gx .gx-step table{border-collapse:collapse;margin:.2em 0 .4em}
.gx .gx-step th{text-align:left;vertical-align:top;color:#0e7490;font-weight:600;padding:.1em .8em .1em 0;white-space:nowrap}
.gx .gx-step td{padding:.1em 0;overflow-wrap:anywhere}
.gx .gx-tensor{display:inline-block;vertical-align:top}
.gx .gx-tensor>summary{cursor:pointer}
.gx .gx-first{font-weight:600}
.gx math{font-size:1.05em}
.gx .gx-updates{margin:.8em 0 0}
.gx .gx-updates h3{font-size:1.05em;margin:.5em 0 .2em}
.gx .gx-update{border:1px solid #e5e7eb;border-left:4px solid #9ca3af;margin:.3em 0;padding:.1em .5em}
.gx .gx-update table{border-collapse:collapse;margin:.2em 0 .4em}
.gx .gx-update th{text-align:left;vertical-align:top;color:#0e7490;font-weight:600;padding:.1em .8em .1em 0;white-space:nowrap}
.gx .gx-update td{padding:.1em 0;overflow-wrap:anywhere}
"""
CSS += "".join(f".gx .gx-s-{status}{{border-left-color:{colour}}}.gx .gx-s-{status} .gx-mark,"
               f".gx .gx-verdict.gx-s-{status}{{color:{colour}}}\n" for status, colour in COLOURS.items())
CSS += "".join(f".gx .gx-u-{status} .gx-mark{{color:{colour}}}\n" for status, colour in COLOURS.items())
CSS += f".gx .gx-picture g.node.gx-first polygon,.gx .gx-picture g.node.gx-first path{{stroke-width:4}}\n"

PAGE_CSS = """\
body.gx-page{margin:1.5em auto;max-width:110em;padding:0 1em;font:14px/1.45 system-ui,Helvetica,Arial,sans-serif}
.gx-page h1{font-size:1.4em}
.gx-page table.gx-calls{border-collapse:collapse;margin:.5em 0 1.5em}
.gx-page table.gx-calls th,.gx-page table.gx-calls td{border:1px solid #e5e7eb;padding:.2em .6em;text-align:left}
.gx-page .gx-first-link{font-weight:600;color:#dc2626}
.gx-page pre{white-space:pre-wrap;background:#f9fafb;padding:.5em}
"""

# Note [several fragments on one page]
# A notebook shows one fragment per output cell, each with this script; a
# page holds one per call. The script binds every `.gx` wrapper not yet
# bound (data-gx-ready), and looks things up inside that wrapper only, so
# two fragments with the same node numbers never reach into each other.
# A link to a step (#gx-c1-step-3, the page's "first mismatch") opens it
# on load and on hashchange, found by getElementById, never a selector
# built from the URL.
SCRIPT = """\
(function () {
  function show(root, node) {
    var step = root.querySelector('.gx-step[data-gx-node="' + node + '"]');
    if (!step) { return false; }
    root.querySelectorAll('.gx-selected').forEach(function (e) { e.classList.remove('gx-selected'); });
    step.open = true;
    step.classList.add('gx-selected');
    var drawn = root.querySelector('g.node[data-gx-node="' + node + '"]');
    if (drawn) { drawn.classList.add('gx-selected'); }
    if (step.scrollIntoView) { step.scrollIntoView({block: 'nearest'}); }
    return true;
  }
  function bind(root) {
    if (root.getAttribute('data-gx-ready')) { return; }
    root.setAttribute('data-gx-ready', '1');
    root.addEventListener('click', function (event) {
      var target = event.target.closest ? event.target.closest('[data-gx-node]') : null;
      if (!target || target.classList.contains('gx-step')) { return; }
      if (show(root, target.getAttribute('data-gx-node'))) { event.preventDefault(); }
    });
  }
  function fromHash() {
    var step = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    if (step && step.classList.contains('gx-step')) { show(step.closest('.gx'), step.getAttribute('data-gx-node')); }
  }
  document.querySelectorAll('.gx').forEach(bind);
  if (!window.graphexplainHashBound) {
    window.graphexplainHashBound = true;
    window.addEventListener('hashchange', fromHash);
    document.addEventListener('click', function (event) {  // a link to a step opens it now, not on hashchange
      var link = event.target.closest ? event.target.closest('a[href^="#"]') : null;
      var step = link ? document.getElementById(link.getAttribute('href').slice(1)) : null;
      if (step && step.classList.contains('gx-step')) { show(step.closest('.gx'), step.getAttribute('data-gx-node')); }
    });
    fromHash();
  }
})();
"""


def text(words) -> str:
    """The user's text as HTML shows it literally, quotes too (it may sit in an attribute)."""
    return html.escape(str(words), quote=True)


def _status_class(status: str) -> str:
    return "gx-s-" + re.sub(r"[^a-z0-9-]", "-", status.lower())


def _mark(status: str) -> str:
    return f'<span class="gx-mark">{text(MARKS.get(status, "·"))} {text(WORDS.get(status, status))}</span>'


def math(formula: str, names: Iterable[str] = ()) -> str:
    """A formula string of the records as MathML, printed by sympy; never raises."""
    from ..derive.printing import to_mathml  # the derivation stage is the one that imports sympy

    return to_mathml(formula, [name for name in names if not is_number(name)])  # a literal 2 stays a number


def _full(data: np.ndarray) -> str:
    if data.ndim == 0:
        return number(data)
    if data.ndim == 1:
        return "[" + ", ".join(number(v) for v in data) + "]"
    return "[" + ",\n ".join(_full(part).replace("\n", "\n ") for part in data) + "]"


def numbers(data) -> str:
    """A tensor: a few elements inline; more, folded under its summary."""
    if data is None:
        return "<code>?</code>"
    short = array(data)
    data = np.asarray(data)
    if data.size <= 6:
        return f"<code>{text(short)}</code>"
    inside = text(_full(data)) if data.size <= FULL_LIMIT else \
        text(f"{data.size} elements: listed up to {FULL_LIMIT}; --json-full writes them all")
    return f'<details class="gx-tensor"><summary><code>{text(short)}</code></summary><pre>{inside}</pre></details>'


def _value(dims, data) -> str:
    """A value with its shape; a folded tensor's summary already starts with it."""
    return numbers(data) if summarised(data) else f"{text(shape(dims))} {numbers(data)}"


def _rows(rows: List[Tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{text(what)}</th><td>{content}</td></tr>" for what, content in rows) + \
        "</table>"


def _node_names(node) -> List[str]:
    names = [node.name, shorten(node.name)]
    return names + [o.label for o in node.operands] + [shorten(o.label) for o in node.operands]


def _chain(step) -> str:
    down = numbers(step.downstream)
    if step.how in ("multiply", "spread"):
        return f"{numbers(step.upstream)} × {numbers(step.local)} = {down}"
    if step.how == "route":
        return f"{numbers(step.upstream)} routed back = {down}"
    if step.how == "matrix":
        return f"{math(step.formula, [])} = {down}" if step.formula else down
    return "not derived"


def _code_row(source) -> Optional[Tuple[str, str]]:
    if source is None or not source.code:
        return None
    where = _where(source)
    return "code", f"<code>{text(source.code.strip())}</code>" + (f" ({text(where)})" if where else "")


def _node_panel(explanation, step, position: int, prefix: str, first: Optional[int], several=None) -> str:
    node, derived, verified = step.node, step.derivation, step.verification
    names = _node_names(node)
    rows: List[Tuple[str, str]] = []
    code = _code_row(node.source)
    if code:
        rows.append(code)
    if node.module:
        rows.append(("module", f"<code>{text(node.module)}</code>"))
    if node.origin:
        rows.append(("from", text(node.origin)))
    if node.output is not None:
        rows.append(("value", _value(node.output.shape, node.output.data)))
    shown = derived if derived.status == DERIVED or verified.local is None else verified.local
    if verified.reason and verified.status in (UNCHECKED, HOOK_CHANGED):
        rows.append(("why", text(verified.reason)))
    if derived.status in (NO_RULE, RULE_ERROR) or (derived.status == NOT_DERIVED and shown is derived):
        rows.append(("rule", text(derived.note or "no symbolic rule")))
    if node.inner is not None:
        rows.append(("function", text(f"{node.inner.owner}: {node.inner.title}")))
    if shown.status == DERIVED and shown.forward_named:
        rows.append(("forward", math(f"{shorten(node.name)} = {shown.forward_named}", names)))
    if shown.status == DERIVED:
        for local in shown.local_gradients:
            rows.append(("local", math(_local_formula(node, shown, local), names) + text(place(shown, local, "as "))))
    if derived.upstream is not None:
        uses = (several or {}).get(node.id)
        summed = f", the sum of what its {len(uses)} uses send back: {text(arrivals_text(uses))}" if uses else ""
        rows.append(("upstream", numbers(derived.upstream) + summed))
    torch_upstream = explanation.observed.upstream(node.id)
    if shown is not derived or (derived.upstream is None and torch_upstream is not None):
        rows.append(("upstream", numbers(torch_upstream) + " (torch's)" if torch_upstream is not None else "?"))
    for chain_step in shown.steps:
        target = f"→ <code>{text(shorten(chain_step.label))}</code>: "
        torch_number = explanation.observed.downstream(node, chain_step.input)
        if chain_step.downstream is None:
            rows.append(("chain", target + "not derived"))
        else:
            words = " (on torch's upstream)" if shown is not derived else ""
            rows.append(("chain", target + _chain(chain_step) + words))
            if chain_step.broadcast:
                rows.append(("", text(chain_step.broadcast)))
        if torch_number is not None:
            rows.append(("backward" if node.inner is not None else "torch", numbers(torch_number)))
    if node.inner is not None and verified.reason and verified.status in (MISMATCH, INTENTIONAL):
        rows.append(("reason", text(verified.reason)))
    for check in verified.checks:
        if check.status == MISMATCH:
            rows.append(("check", text(_mismatch_words(check))))
    verdict = _mark(verified.status)
    if verified.inherited_from is not None:
        verdict += text(f" (inherited from step {verified.inherited_from + 1})")
    rows.append(("verdict", verdict))
    where = _where(node.source)
    heading = (f"{text(MARKS.get(verified.status, '·'))} {position}. <code>{text(shorten(node.name))}</code> "
               f"<code>{text(node.op)}</code> — {text(derived.title)}" + (f" ({text(where)})" if where else ""))
    return _panel(prefix, node.id, verified.status, heading, _rows(rows), node.id == first)


def _panel(prefix: str, node_id: int, status: str, heading: str, body: str, first: bool) -> str:
    classes = f"gx-step {_status_class(status)}" + (" gx-first" if first else "")
    return (f'<details class="{classes}" id="{prefix}-step-{node_id}" data-gx-node="{node_id}"'
            f'{" open" if first else ""}><summary>{heading}</summary>{body}</details>\n')


def _leaf_panel(explanation, position: int, prefix: str) -> str:
    graph = explanation.graph
    leaf = graph.leaves[position]
    derived, verified = explanation.derivation.leaves[position], explanation.verification.leaves[position]
    torch_side = explanation.observed.leaf(position)
    roots = ", ".join(shorten(root.name) for root in graph.roots)
    rows: List[Tuple[str, str]] = [("value", _value(leaf.value.shape, leaf.value.data))]
    if leaf.produced_by:
        rows.append(("produced by", text(leaf.produced_by)))
    gradient = f"∂{label(roots)}/∂{label(shorten(leaf.name))}"
    if derived.grad is None:
        rows.append(("gradient", text(f"not derived — {verified.reason or 'see above'}")))
        if derived.partial is not None:
            rows.append(("derived part", numbers(derived.partial)))
    elif derived.symbolic:
        rows.append(("gradient", math(f"{gradient} = {derived.symbolic}", [roots, leaf.name, shorten(leaf.name)])
                     + " = " + numbers(derived.grad)))
    else:
        rows.append(("gradient", numbers(derived.grad)))
    if torch_side.grad is not None:
        rows.append(("torch", numbers(torch_side.grad)))
    if leaf.accumulates and torch_side.grad_after is not None:
        rows.append((".grad after", numbers(torch_side.grad_after)))
    if verified.reason and verified.status == HOOK_CHANGED:
        rows.append(("hook", text(verified.reason)))
    for check in verified.checks:
        if check.status == MISMATCH:
            rows.append(("check", text(_mismatch_words(check))))
    rows.append(("verdict", _mark(verified.status)))
    kind = "input" if leaf.produced_by else "leaf"
    heading = f"{text(MARKS.get(verified.status, '·'))} {kind} <code>{text(shorten(leaf.name))}</code>"
    return _panel(prefix, leaf.node, verified.status, heading, _rows(rows), False)


_SVG_NODE = re.compile(r'<g id="([^"]*)" class="node">\s*<title>([nb])(\d+)</title>')


def _svg(explanation, view: Optional[View], prefix: str, statuses: dict, first: Optional[int]) -> str:
    """graphviz's SVG of the picture, inline: its ids prefixed (one page holds
    several), each node tagged with our node id and status; or a line
    saying why there is no picture."""
    from .dot import RenderError, _draw, to_dot

    try:
        drawn = _draw(to_dot(explanation, view), "svg").decode("utf-8")
    except RenderError as problem:
        return f'<p class="gx-missing">The picture is missing: {text(problem)} The steps are all below.</p>'
    drawn = drawn[drawn.index("<svg"):]
    drawn = re.sub(r"<!--.*?-->\n?", "", drawn, flags=re.S)  # graphviz's version: not ours to repeat
    drawn = re.sub(r'\bid="', f'id="{prefix}-', drawn)
    drawn = re.sub(r'(href="#|url\(#)', lambda m: m.group(1) + prefix + "-", drawn)

    def tag(match) -> str:
        kind, number_ = match.group(2), int(match.group(3))
        if kind == "b":
            return f'<g id="{match.group(1)}" class="node gx-box">' + match.group(0).split(">", 1)[1]
        status = statuses.get(number_, "")
        classes = f"node {_status_class(status)}" + (" gx-first" if number_ == first else "")
        return (f'<g id="{match.group(1)}" class="{classes}" data-gx-node="{number_}">'
                + match.group(0).split(">", 1)[1])

    return _SVG_NODE.sub(tag, drawn)


def _heading(explanation) -> str:
    graph = explanation.graph
    where = _where(graph.call_source)
    if graph.call.startswith("graphexplain."):
        return graph.call
    if explanation.index == 0:
        return f"{graph.call[len('--target '):]}: explained without a backward call (--target)"
    return f"Backward call {explanation.index}: {graph.call}" + (f"  ({where})" if where else "")


def prefix_of(explanation) -> str:
    """The ids of a call's fragment begin with this: gx-c1 for call 1, gx-t for --target."""
    return f"gx-c{explanation.index}" if explanation.index else "gx-t"


def _update_param(param, before, call: str) -> str:
    """One parameter's update: each assignment's formula (sympy's MathML), its
    numbers, its value, and the mark where torch wrote the value."""
    name = shorten(param.name)
    size = np.size(param.before) if param.before is not None else 0
    heading = f"<code>{text(name)}</code> {text(shape(np.shape(param.before)))}"
    rows: List[Tuple[str, str]] = []
    if param.status == NO_RULE:
        rows += [("rule", text(param.note)), ("before", numbers(param.before)),
                 ("after", numbers(param.after) + " (torch's; not checked)")]
    else:
        rows.append(("rule", text(param.rule + (", numbers of element [0]" if size > 1 else ""))))
        if before.operand is not None:  # a manual update: t is what the script's line applies
            rows.append(("t =", f"<code>{text(_operand_code(call))}</code>{numbers(before.operand)}"))
        checks = {check.what: check for check in param.checks}
        for assignment in param.assignments:
            target = name if assignment.name == "p" else assignment.name
            what = param.name if assignment.name == "p" else f"{param.name} {assignment.name}"
            check = checks.get(what) if assignment.checked else None
            content = (f"{math(_named(assignment.formula, name), [name])} = "
                       f"<code>{text(_put_numbers(assignment.formula, assignment.inputs))}</code> = "
                       f"{numbers(assignment.value)}")
            if check is not None:
                content += f' <span class="gx-u-{_status_class(check.status)[5:]}">{_mark(check.status)}</span>'
                if check.status == MISMATCH:
                    content += " " + text(_mismatch_words(check).removeprefix("✗ "))
            rows.append((f"{target} {'←' if assignment.checked else '='}", content))
    rows.append(("verdict", _mark(param.status)))
    return (f'<div class="gx-update {_status_class(param.status)}"><p>{text(MARKS.get(param.status, "·"))} '
            f"{heading}</p>{_rows(rows)}</div>\n")


def updates_fragment(results, index: int) -> str:
    """What the script did to the parameters after explained call `index`, as
    the terminal shows it (render/terminal.py's update_section): each
    optimizer step or manual update per parameter, checked against what torch
    wrote, and the gradients cleared. Empty where the script did nothing."""
    if not results:
        return ""
    parts = [f'<section class="gx-updates"><h3>After backward call {index}: the parameters\' updates</h3>\n']
    for result in results:
        update = result.update
        where = f" ({text(_where(update.source))})" if update.source is not None else ""
        if update.kind == "cleared":
            cleared = ", ".join(f"<code>{text(shorten(name))}</code>" for name in update.cleared)
            by = f"by <code>{text(update.call)}</code>" if update.call else f"({text(update.what)})"
            parts.append(f'<p class="gx-note">gradients cleared {by}{where}: {cleared} ({text(update.how)})</p>\n')
            continue
        words = text(UPDATE_HEADINGS[update.kind].format(call="\0", what=update.what))
        words = words.replace("\0", f"<code>{text(update.call)}</code>", 1)
        hyper = _hyper_words(update.before[0]) if update.before and update.kind == "step" else ""
        parts.append(f'<p class="gx-verdict {_status_class(result.status)}">{words}'
                     f"{', <code>' + text(hyper) + '</code>' if hyper else ''}{where} {_mark(result.status)}</p>\n")
        for param, before in zip(result.params, update.before):
            parts.append(_update_param(param, before, update.call))
    parts.append("</section>\n")
    return "".join(parts)


def fragment(explanation, view: Optional[View] = None, standalone: bool = True, updates=None) -> str:
    """One call as an HTML fragment: picture, steps, verdict. `standalone`
    adds its CSS and script, for a notebook (a page has them once);
    `updates`, the report's update results after this call, adds the
    parameters' updates below the steps.

        >>> fragment(explanation)  # doctest: +SKIP
        '<div class="gx" id="gx-c1" ...'
    """
    graph = explanation.graph
    prefix = prefix_of(explanation)
    first = explanation.verification.first_mismatch
    statuses = {v.node: v.status for v in explanation.verification.nodes}
    for leaf in explanation.verification.leaves:
        statuses[leaf.node] = leaf.status
    parts = [f'<div class="gx" id="{prefix}" data-gx-call="{explanation.index}">\n']
    if standalone:
        parts.append(f"<style>\n{CSS}</style>\n")
    parts.append(f"<h2>{text(_heading(explanation))}</h2>\n")
    for root in graph.roots:
        parts.append(f'<p class="gx-note">root <code>{text(shorten(root.name))}</code> = {numbers(root.value.data)}'
                     f"{text(shape_note(root.value.shape, root.value.data))}, "
                     f"gradient seeded with {numbers(root.grad_output)}</p>\n")
    parts.append(f'<p class="gx-note">{text(plural(len(graph.nodes), "node"))}, '
                 f'{text(plural(len(graph.leaves), "leaf"))}, in backward order; at each node: upstream × local '
                 "gradient = downstream. Click a node of the picture to open its step.</p>\n")
    for constant in graph.constants:
        parts.append(f'<p class="gx-note">constant <code>{text(constant.name)}</code>{text(shape_after(constant))}: '
                     f"{text(constant.reason)}, so no gradient flows to it</p>\n")
    parts.append(f'<p class="gx-verdict {_status_class(explanation.status)}">{text(_verdict(explanation).plain)}</p>\n')
    if first is not None:
        node = graph.nodes[first]
        parts.append(f'<p class="gx-first"><a href="#{prefix}-step-{first}" data-gx-node="{first}">First mismatch: '
                     f"step {first + 1}, <code>{text(shorten(node.name))}</code> [{text(node.op)}]</a></p>\n")
    parts.append('<div class="gx-layout">\n<div class="gx-picture">\n')
    parts.append(_svg(explanation, view, prefix, statuses, first))
    parts.append('\n</div>\n<div class="gx-steps">\n')
    collapsed = collapse(graph, explanation.verification, view or View())
    shown = None if collapsed is None or (view or View()).full else set(collapsed.inside_expanded)
    if shown is not None:
        parts.append(f'<p class="gx-note">A big graph: the picture draws modules as boxes; the steps of '
                     f"{text(', '.join(collapsed.expanded) or 'no module')} follow (--expand MODULE opens one, "
                     "--full lists every step).</p>\n")
    several = arrivals(explanation)
    for position, step in enumerate(explanation.steps):
        if step.node.is_leaf or (shown is not None and step.node.id not in shown and step.node.id != first):
            continue
        parts.append(_node_panel(explanation, step, position + 1, prefix, first, several))
    for position, leaf in enumerate(graph.leaves):
        if shown is not None and leaf.node not in shown:
            continue
        parts.append(_leaf_panel(explanation, position, prefix))
    parts.append("</div>\n</div>\n")
    parts.append(updates_fragment(updates, explanation.index))
    if standalone:
        parts.append(f"<script>\n{SCRIPT}</script>\n")
    parts.append("</div>\n")
    return "".join(parts)


def _calls_table(report) -> str:
    rows = ["<table class=\"gx-calls\"><tr><th>call</th><th>kind</th><th>code</th><th>root</th><th>value</th>"
            "<th>status</th></tr>"]
    previous = -1
    kept = {k for k, record in enumerate(report.calls) if record.index in report.explanations or record.error}
    for position in sorted(set(listed_positions(len(report.calls))) | kept):  # of a training loop's calls, a few
        skipped = position - previous - 1
        if skipped:
            rows.append(f'<tr><td>…</td><td colspan="5">… {text(plural(skipped, "more call"))} …</td></tr>')
        previous = position
        record = report.calls[position]
        status = report.call_status(record)
        explained = report.explanations.get(record.index)
        link = f' (<a href="#{prefix_of(explained)}">explained below</a>)' if explained is not None else ""
        value = number(record.summary.root_value) if record.summary.root_value is not None else ""
        rows.append(f"<tr><td>{record.index}</td><td>{text(record.kind)}</td><td><code>{text(record.call)}</code>"
                    f"</td><td><code>{text(shorten(record.summary.root))}</code></td><td>{text(value)}</td>"
                    f'<td class="{_status_class(status)}">{text(MARKS.get(status, "·"))} {text(status)}{link}</td>'
                    "</tr>")
    rows.append("</table>\n")
    return "".join(rows)


def _first_link(report) -> str:
    for explanation in report.all_explanations:
        if explanation.status != MISMATCH:
            continue
        first, prefix = explanation.verification.first_mismatch, prefix_of(explanation)
        if first is None:
            return f'<p class="gx-first-link"><a href="#{prefix}">✗ First mismatch: a leaf of call ' \
                   f"{explanation.index}</a></p>\n"
        node = explanation.graph.nodes[first]
        return (f'<p class="gx-first-link"><a href="#{prefix}-step-{first}">✗ First mismatch: call '
                f"{explanation.index}, step {first + 1}, <code>{text(shorten(node.name))}</code> "
                f"[{text(node.op)}]</a></p>\n")
    return ""


def page(report) -> str:
    """The whole run as one self-contained HTML page (the same bytes for the same run)."""
    script = os.path.basename(report.run.script)
    parts = ["<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", MARKER, "\n",
             '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
             f"<title>graphexplain: {text(script)}</title>\n<style>\n{PAGE_CSS}{CSS}</style>\n</head>\n",
             '<body class="gx-page">\n<header>\n',
             f"<h1>graphexplain trace <code>{text(report.run.script)}</code></h1>\n",
             f'<p class="gx-verdict">{text(verdict_line(report).plain)}</p>\n', _first_link(report)]
    if report.calls:
        parts += [f"<h2>{text(plural(len(report.calls), 'backward call'))}</h2>\n", _calls_table(report)]
    for record in report.calls:
        if record.error is not None:
            parts.append(f"<p>Backward call {record.index} raised an error: <code>{text(record.error.strip())}"
                         "</code>" + (f" In plain words: {text(record.explanation)}" if record.explanation else "")
                         + "</p>\n")
    if report.run.traceback:
        parts.append(f"<p>The script raised an error; its traceback:</p>\n<pre>{text(report.run.traceback.rstrip())}"
                     "</pre>\n")
    if report.run.target_problem:
        parts.append(f"<p>{text(report.run.target_problem)}</p>\n")
    parts.append("</header>\n<main>\n")
    for explanation in report.all_explanations:
        parts.append(fragment(explanation, report.view, standalone=False,
                              updates=getattr(report, "updates", {}).get(explanation.index)))
    parts.append(f"</main>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n")
    return "".join(parts)
