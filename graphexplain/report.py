"""A whole traced run: every backward call, explained or listed, and the
run's status and exit code.

Exit codes (also in `graphexplain trace --help` and docs/cli.md):

    0  every explained call verified
    1  a derived gradient disagrees with torch's (a mismatch)
    2  bad usage: no such script, not Python, an output that would be overwritten
       or cannot be written, a --target that names no tensor
    3  the script itself raised an error (what was captured before it is reported)
    4  the script never called backward, or none of its calls could be explained
    5  incomplete: no mismatch, but some numbers could not be derived (no rule,
       a rule that failed, complex, a user's hook, and everything below them)
    N  the script ended itself with sys.exit(N), N not 0: its own status, as python gives it
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .capture.intercept import CallRecord
from .capture.runner import COMPLETED, EXITED, ScriptRun
from .render.collapse import View
from .render.json import SCHEMA, Arrays, call_to_json, numbers, updates_to_json
from .results import HOOK_CHANGED, INTENTIONAL, MISMATCH, NO_RULE, NOT_CHECKED, NOT_DERIVED, RULE_ERROR, UNCHECKED, VERIFIED, worst

from .exitcodes import MISMATCH as EXIT_MISMATCH, NO_BACKWARD as EXIT_NO_BACKWARD, NO_RULE as EXIT_NO_RULE  # noqa: E402
from .exitcodes import SCRIPT_ERROR as EXIT_SCRIPT_ERROR, USAGE as EXIT_USAGE, VERIFIED as EXIT_VERIFIED  # noqa: E402
if TYPE_CHECKING:  # imported where a call is explained: a script without backward never loads sympy
    from .explanation import Explanation

SCRIPT_ERROR = "script-error"
NO_BACKWARD = "no-backward"
NOTHING_EXPLAINED = "nothing-explained"  # backward was called, but no call could be explained
NOT_EXPLAINED = "not-explained"
CALL_ERROR = "error"
CAPTURE_FAILED = "capture-failed"  # asked for, but graphexplain could not copy the graph (capture_problem says why)
TARGET_PROBLEM = "target-problem"


@dataclass
class Report:
    run: ScriptRun
    explanations: Dict[int, Explanation] = field(default_factory=dict)

    target: Optional[Explanation] = None  # --target NAME
    view: View = field(default_factory=View)  # how big graphs are shown (--depth, --expand, --full)
    updates: Dict[int, tuple] = field(default_factory=dict)  # call index → verify_updates.UpdateResult, per update

    @classmethod
    def of(cls, run: ScriptRun, view: Optional[View] = None, lean: bool = False) -> "Report":
        """`lean`: no report asks for whole big arrays, so the explanations
        keep digests of them (Note [a big array's last use] in digest.py)."""
        if not any(record.graph is not None for record in run.calls) and run.target is None:
            return cls(run, {}, None, view or View())
        from .explanation import Explanation

        explanations = {
            record.index: Explanation.of(record.graph, record.observed, record.index, lean)
            for record in run.calls if record.graph is not None
        }
        target = Explanation.of(run.target.graph, run.target.observed, 0, lean) if run.target is not None else None
        from .verify_updates import explain_updates

        updates = {record.index: explain_updates(record.updates)
                   for record in run.calls if record.index in explanations and record.updates}
        return cls(run, explanations, target, view or View(), updates)

    @property
    def all_explanations(self) -> List[Explanation]:
        """Every explanation, the --target one (index 0) first."""
        return ([self.target] if self.target is not None else []) + \
            [self.explanations[i] for i in sorted(self.explanations)]

    @property
    def calls(self) -> List[CallRecord]:
        return self.run.calls

    def call_status(self, record: CallRecord) -> str:
        if record.error is not None:
            return CALL_ERROR
        if record.capture_failed and record.index not in self.explanations:
            return CAPTURE_FAILED
        explanation = self.explanations.get(record.index)
        return explanation.status if explanation is not None else NOT_EXPLAINED

    @property
    def status(self) -> str:
        statuses = {e.status for e in self.all_explanations}
        statuses |= {result.status for results in self.updates.values() for result in results}
        if self.run.outcome != COMPLETED:
            return SCRIPT_ERROR
        if self.run.target_problem:
            return TARGET_PROBLEM
        if not self.calls and self.target is None:
            return NO_BACKWARD
        if not self.all_explanations:  # torch refused every call asked for, or --call N > calls made
            return NOTHING_EXPLAINED
        return worst(statuses)

    @property
    def exit_code(self) -> int:
        if self.run.outcome == EXITED:  # sys.exit(N): the status python would give
            return self.run.exit_code
        return {
            VERIFIED: EXIT_VERIFIED, MISMATCH: EXIT_MISMATCH, SCRIPT_ERROR: EXIT_SCRIPT_ERROR,
            NO_BACKWARD: EXIT_NO_BACKWARD, NOTHING_EXPLAINED: EXIT_NO_BACKWARD,
            # incomplete: something is not derived, so not verified (docs/cli.md)
            NO_RULE: EXIT_NO_RULE, RULE_ERROR: EXIT_NO_RULE, NOT_DERIVED: EXIT_NO_RULE, HOOK_CHANGED: EXIT_NO_RULE,
            UNCHECKED: EXIT_NO_RULE, NOT_CHECKED: EXIT_NO_RULE,
            INTENTIONAL: EXIT_NO_RULE,  # a surrogate gradient on purpose: below it, torch's numbers only
            TARGET_PROBLEM: EXIT_USAGE,
        }[self.status]

    @cached_property  # asked by the walkthrough and by the table
    def folded(self) -> Dict[int, int]:
        """Explained calls whose walkthrough is a line of the loop table, each
        with the call whose walkthrough stands for it: verified, and a graph of
        the same structure as an earlier call printed in full. None under
        --full (Note [a loop's walkthroughs folded])."""
        if self.view.full:
            return {}
        shown: Dict[Any, int] = {}  # structure → the call printed in full
        folded: Dict[int, int] = {}
        for index in sorted(self.explanations):
            explanation = self.explanations[index]
            key = structure(explanation.graph)
            if key in shown and explanation.status == VERIFIED:
                folded[index] = shown[key]
            elif explanation.status == VERIFIED:
                shown.setdefault(key, index)
        return folded

    def to_json(self, out: Optional[Arrays] = None) -> Dict[str, Any]:
        """The run as a JSON-ready dict; tensors over render.json.SUMMARY_LIMIT
        elements are summaries, kept whole in `out.arrays` when `out` asks."""
        out = out if out is not None else Arrays()
        return {
            "schema": SCHEMA,
            "script": self.run.script,
            "argv": self.run.argv,
            "status": self.status,
            "exit_code": self.exit_code,
            "script_outcome": self.run.outcome,
            "backward_calls": [self._call_json(record, out) for record in self.calls],
            "target": call_to_json(self.target, out) if self.target is not None else None,
            "target_problem": self.run.target_problem,
        }

    def _call_json(self, record: CallRecord, out: Arrays) -> Dict[str, Any]:
        explanation = self.explanations.get(record.index)
        if explanation is not None:
            data = call_to_json(explanation, out)
            data["kind"] = record.kind
            if record.index in self.updates:  # only where the script updated its parameters (docs/optimizers.md)
                data["updates"] = updates_to_json(self.updates[record.index], out, f"call-{record.index}/updates")
            return data
        return {
            "index": record.index,
            "kind": record.kind,
            "call": record.call,
            "status": self.call_status(record),
            "root": {"name": record.summary.root, "value": out(record.summary.root_value, f"call-{record.index}/root/value")},
            "leaf_grad_norms": {name: numbers(norm) for name, norm in record.summary.leaf_norms},
            "error": record.error,
            "explanation": record.explanation,
            "capture_problem": record.capture_problem,
        }


def structure(graph) -> tuple:
    """What two backward calls of a loop share when only their numbers
    differ: the ops, names, wiring, modules, shapes and dtypes, the leaves,
    roots and constants, and the line the call was made at. Two graphs with
    the same structure have the same walkthrough but for its numbers.

        >>> from graphexplain.model import Graph
        >>> structure(Graph((), (), ())) == structure(Graph((), (), ()))
        True
    """
    def value(v):
        return None if v is None else (v.shape, v.dtype)

    def where(source):
        return None if source is None else (source.file, source.line)

    def node(n):
        inner = None if n.inner is None else (n.inner.title, None if n.inner.graph is None
                                              else structure(n.inner.graph), n.inner.inputs, n.inner.outputs)
        return (n.op, n.name, n.module, n.origin, where(n.source), tuple(value(o) for o in n.outputs),
                tuple((o.name, o.label, value(o.value), o.producer, o.producer_output, o.requires_grad)
                      for o in n.operands),
                tuple(sorted((k, repr(v)) for k, v in n.params.items() if isinstance(v, (bool, int, float, str, tuple)))),
                tuple((h.kind, h.location) for h in n.hooks), inner)

    return (graph.call, where(graph.call_source), tuple(node(n) for n in graph.nodes),
            tuple((r.node, r.output, r.name, value(r.value), r.grad_output.shape) for r in graph.roots),
            tuple((l.node, l.name, value(l.value), l.accumulates, l.grad_before is None, l.produced_by)
                  for l in graph.leaves),
            tuple((c.name, c.shape, c.reason, c.used_by) for c in graph.constants),
            tuple((u.name, u.shape, u.returned) for u in graph.unused))


# Note [a loop's walkthroughs folded]
# Under --call all, a training loop's 300 calls have one graph and 300 sets
# of numbers: 300 walkthroughs of the same steps bury the one that matters.
# So a call prints its walkthrough in full when it is the first of its
# structure, or is not verified (a mismatch, an op without a rule: the
# reader must see it); a verified call of a structure already printed is a
# line of the loop table instead, naming the call it looks like. It is
# still derived, verified, drawn and in the JSON, like any other; --full
# prints every walkthrough. `grad_before is None` is part of the structure
# because the first call's leaves start from no .grad, and say so.
