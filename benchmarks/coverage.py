"""Op coverage measured on PyTorch's own test database.

    python benchmarks/coverage.py                  # the whole yardstick (minutes)
    python benchmarks/coverage.py --ops add,mul    # a subset, by op_db name
    python benchmarks/coverage.py --no-modules --limit 50

Walks `torch.testing._internal.common_methods_invocations.op_db`: for every op
that supports autograd, its first samples in float64, reduces the outputs to
one number with fixed random weights (so no upstream is all ones), and runs
`graphexplain.explain` on it. Then `common_modules.module_db`: one forward of
each module's first samples, reduced and explained the same way.

Prints, per grad_fn node type, how often it was met and how often it was
verified / mismatched / without a rule, then the totals; writes the same as
JSON (--json, default benchmarks/coverage.json) and docs/coverage.md
(--markdown). A "crash" is graphexplain failing on a sample: the target is 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings
from collections import defaultdict
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import graphexplain  # noqa: E402
from graphexplain.results import MISMATCH, NO_RULE, VERIFIED  # noqa: E402

SAMPLES = 3
STATUSES = (VERIFIED, MISMATCH, NO_RULE)


def _tensors(value) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


def to_scalar(output) -> Optional[torch.Tensor]:
    """Σ outputs · fixed random weights, over the outputs that carry a gradient."""
    generator = torch.Generator().manual_seed(0)
    total = None
    for tensor in _tensors(output):
        if not tensor.requires_grad or not tensor.dtype.is_floating_point:
            continue
        weight = torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) + 0.5
        term = (tensor * weight).sum()
        total = term if total is None else total + term
    return total


class Tally:
    def __init__(self):
        self.by_type: Dict[str, Dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATUSES + ("met",), 0))
        self.groups: Dict[str, str] = {}  # op or module name → whole-graph status
        self.crashes: List[str] = []
        self.skipped: List[str] = []

    def add(self, group: str, explanation) -> None:
        statuses = set()
        for step in explanation.steps:
            counts = self.by_type[step.op]
            counts["met"] += 1
            status = step.status if step.status in STATUSES else NO_RULE
            # A node below a node without a rule is `unchecked` however good
            # its own row; its row is measured by its own step on torch's
            # upstream (Note [the local step on torch's upstream] in verify.py).
            checks = step.verification.checks
            own_step_verified = step.status == "unchecked" and checks and all(c.status == VERIFIED for c in checks)
            counts[VERIFIED if own_step_verified else status] += 1
            statuses.add(status)
        statuses |= {leaf.status for leaf in explanation.leaves}
        worst = next((s for s in (MISMATCH, NO_RULE) if s in statuses), VERIFIED)
        previous = self.groups.get(group, VERIFIED)
        order = {VERIFIED: 0, NO_RULE: 1, MISMATCH: 2, "crash": 3}
        self.groups[group] = max(previous, worst, key=order.get)

    def crash(self, group: str, error: BaseException) -> None:
        self.crashes.append(f"{group}: {type(error).__name__}: {error}"[:300])
        self.groups[group] = "crash"


def explain_quietly(scalar):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return graphexplain.explain(scalar)


def explain_sample(tally: Tally, group: str, run) -> None:
    """Run one sample (`run()` gives the outputs), reduce, explain, count.
    The sample runs under `recording()`, as a traced script does, so that
    what only the recorder sees (a custom Function's call, the region a
    write into a view replaced) is there to be explained."""
    with graphexplain.recording():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scalar = to_scalar(run())
        except Exception:
            return  # torch itself refused this sample: not ours to count
        if scalar is None:
            return
        try:
            tally.add(group, explain_quietly(scalar))
        except Exception as error:  # graphexplain failed: a crash
            tally.crash(group, error)


def forward_module(info, module_input):
    constructor, forward = module_input.constructor_input, module_input.forward_input
    module = info.module_cls(*constructor.args, **constructor.kwargs).to(torch.float64)
    return module(*forward.args, **forward.kwargs)


def walk_ops(tally: Tally, names: Optional[set], limit: Optional[int], prefix: str = "op") -> None:
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if op.supports_autograd and (names is None or op.name in names)]
    for op in ops[:limit]:
        group = f"{prefix}:{op.name}" + (f".{op.variant_test_name}" if op.variant_test_name else "")
        try:
            samples = list(op.sample_inputs("cpu", torch.float64, requires_grad=True))[:SAMPLES]
        except Exception:
            tally.skipped.append(group)
            continue
        for sample in samples:
            explain_sample(tally, group, lambda s=sample: op(s.input, *s.args, **s.kwargs))


def walk_modules(tally: Tally, limit: Optional[int]) -> None:
    from torch.testing._internal.common_modules import module_db

    for info in module_db[:limit]:
        group = f"module:{info.module_cls.__name__}" + (f".{info.variant_name}" if getattr(info, "variant_name", "") else "")
        try:
            inputs = info.module_inputs_func(info, device="cpu", dtype=torch.float64,
                                             requires_grad=True, training=True)[:SAMPLES]
        except Exception:
            tally.skipped.append(group)
            continue
        for module_input in inputs:
            explain_sample(tally, group, lambda i=module_input: forward_module(info, i))


def summary(tally: Tally, seconds: float) -> dict:
    types = dict(sorted(tally.by_type.items()))
    fully = [name for name, c in types.items() if c[VERIFIED] == c["met"]]
    ops = {k: v for k, v in tally.groups.items() if k.startswith("op:")}
    modules = {k: v for k, v in tally.groups.items() if k.startswith("module:")}

    def share(part, whole):
        return round(part / whole, 4) if whole else 0.0

    return {
        "torch": torch.__version__,
        "seconds": round(seconds, 1),
        "node_types": types,
        "totals": {
            "node_types_met": len(types),
            "node_types_verified": len(fully),
            "share_node_types_verified": share(len(fully), len(types)),
            "ops": len(ops),
            "share_ops_verified": share(sum(v == VERIFIED for v in ops.values()), len(ops)),
            "modules": len(modules),
            "share_modules_verified": share(sum(v == VERIFIED for v in modules.values()), len(modules)),
            "mismatched_groups": sorted(k for k, v in tally.groups.items() if v == MISMATCH),
            "crashes": len(tally.crashes),
        },
        "groups": dict(sorted(tally.groups.items())),
        "crashes": tally.crashes,
        "skipped": sorted(tally.skipped),
    }


def table(result: dict) -> str:
    lines = [f"{'grad_fn node type':34} {'met':>5} {'verified':>8} {'mismatch':>8} {'no-rule':>7}"]
    for name, c in result["node_types"].items():
        lines.append(f"{name:34} {c['met']:5} {c[VERIFIED]:8} {c[MISMATCH]:8} {c[NO_RULE]:7}")
    t = result["totals"]
    lines += [
        "",
        f"distinct node types met:      {t['node_types_met']}",
        f"node types verified on every sample: {t['node_types_verified']} "
        f"({100 * t['share_node_types_verified']:.1f}%)",
        f"ops whose whole graph verified:      {100 * t['share_ops_verified']:.1f}% of {t['ops']}",
        f"modules whose whole graph verified:  {100 * t['share_modules_verified']:.1f}% of {t['modules']}",
        f"mismatched ops/modules: {len(t['mismatched_groups'])}   crashes: {t['crashes']}",
        f"time: {result['seconds']} s (torch {result['torch']})",
    ]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    t = result["totals"]
    rows = "\n".join(
        f"| `{name}` | {c['met']} | {c[VERIFIED]} | {c[MISMATCH]} | {c[NO_RULE]} |"
        for name, c in result["node_types"].items())
    return (
        "# Op coverage\n\n"
        "<!-- Generated by benchmarks/coverage.py; do not edit by hand. -->\n\n"
        "Measured on PyTorch's own test database (`op_db`, `module_db`), float64, up to "
        f"{SAMPLES} samples each: `make coverage` or `python benchmarks/coverage.py`.\n\n"
        f"- distinct grad_fn node types met: **{t['node_types_met']}**\n"
        f"- node types explained and verified on every sample: **{t['node_types_verified']}** "
        f"(**{100 * t['share_node_types_verified']:.1f}%**)\n"
        f"- ops whose whole graph verified: **{100 * t['share_ops_verified']:.1f}%** of {t['ops']}\n"
        f"- modules whose whole graph verified: **{100 * t['share_modules_verified']:.1f}%** of {t['modules']}\n"
        f"- mismatched ops/modules: {len(t['mismatched_groups'])}; crashes: {t['crashes']}\n"
        f"- torch {result['torch']}, {result['seconds']} s\n\n"
        "A node counts as verified when its own step is: along a derived chain, or, below a node "
        "without a rule, on the upstream torch passed in (Note [the local step on torch's upstream], "
        "[verification.md](verification.md)); the last column counts every other outcome: no rule, a "
        "rule that failed to apply, complex numbers not derived, or no number to check its step.\n\n"
        "| node type | met | verified | mismatch | not verified |\n|---|---:|---:|---:|---:|\n"
        f"{rows}\n"
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", help="comma-separated op_db names (default: all)")
    parser.add_argument("--limit", type=int, help="at most this many ops and modules")
    parser.add_argument("--no-modules", action="store_true", help="skip module_db")
    parser.add_argument("--json", default=os.path.join(HERE, "coverage.json"), help="where to write the JSON")
    parser.add_argument("--markdown", help="also write the summary as Markdown (docs/coverage.md)")
    options = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    start = time.perf_counter()
    tally = Tally()
    names = set(options.ops.split(",")) if options.ops else None
    walk_ops(tally, names, options.limit)
    if not options.no_modules and names is None:
        walk_modules(tally, options.limit)
    result = summary(tally, time.perf_counter() - start)
    print(table(result))
    if options.json:
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
            handle.write("\n")
    if options.markdown:
        with open(options.markdown, "w", encoding="utf-8") as handle:
            handle.write(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
