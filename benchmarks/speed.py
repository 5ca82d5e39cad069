"""What graphexplain costs, side by side: `python SCRIPT` against
`graphexplain trace SCRIPT`, each in a fresh process, alternating, medians
of N runs; CPU time (user + system, the child's own rusage), wall time and
peak RSS. Writes docs/performance.md.

    python benchmarks/speed.py [--repeat 3] [--quick] [--only NAME,...] [--no-write]

CPU time is the measure the targets are judged on: on a machine shared with
other work, wall time says more about the neighbours than about us (it is
shown too). The cases (docs/performance.md lists the targets):

- the notes' scripts (examples/*.py), default options: traced/plain ≤ 1.3,
  judged on the warm run (the derivation cache already filled by a first
  run, as when a learner runs a script again); the cold run (an empty cache)
  is shown beside it;
- benchmarks/train_loop.py, 300 steps, with --call first and --call all
  (≤ 10× plain);
- an nn.GRU and an nn.LSTM; a ResNet-18 on a CIFAR-sized batch (8×3×32×32)
  and a 6-layer, 128-wide nn.TransformerEncoder on 8×64 tokens, where
  explaining the one call (traced − plain CPU) is set against that call's
  own forward+backward (≤ 3×); the scripts' docstrings say why those sizes;
- loss = (a @ b).relu().mean() at 2000×2000, with and without --json
  (within 3× the plain time and 2× its peak memory with --json), and at
  250/500/1000 for how the cost grows with the elements;
- elementwise chains of 1k/3k/10k nodes, one backward call, the collapsed
  picture (PNG, render/collapse.py folds the chain) and JSON written (the
  10k one in under 60 s).

The growth is a fitted exponent: the slope of log(traced − plain CPU
seconds) against log(nodes) or log(elements). benchmarks/overhead.py stays:
it measures, in one process, the interception alone and --call 10, which
this driver does not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPTS = HERE / "scripts"
EXAMPLES = REPO / "examples"
PAGE = REPO / "docs" / "performance.md"
TIMEOUT = 120  # seconds a child may run before it is killed (and shows as exit -9)


@dataclass(frozen=True)
class Sample:
    cpu: float  # user + system seconds of the child
    wall: float
    rss_mb: float  # peak resident set size
    returncode: int


@dataclass(frozen=True)
class Case:
    name: str
    script: Path
    args: Tuple[str, ...] = ()  # the script's own arguments
    options: Tuple[str, ...] = ()  # graphexplain trace options, before the script
    target: str = "ratio"  # ratio (traced/plain CPU), explain (extra/forward+backward), seconds, none
    limit: Optional[float] = None
    memory_limit: Optional[float] = None  # traced/plain peak RSS
    heavy: bool = False  # measured once, whatever --repeat says
    json: bool = False  # gets --json FILE in a scratch folder
    group: str = ""


@dataclass(frozen=True)
class Floor:
    """The least an explanation of a model's call costs (benchmarks/floor.py says why)."""
    imports: float  # CPU seconds of importing sympy and rich on top of torch
    float32: float  # the model's backward, torch's kernels
    float64: float  # the same backward in float64

    @property
    def seconds(self) -> float:
        return self.imports + self.float64


@dataclass
class Result:
    case: Case
    plain: List[Sample] = field(default_factory=list)
    traced: List[Sample] = field(default_factory=list)  # the notes' scripts: the warm runs
    cold: List[Sample] = field(default_factory=list)  # the notes' scripts: the same, on an empty cache
    warm: List[Sample] = field(default_factory=list)  # the models: run again on the cache a first run filled
    step_cpu: List[float] = field(default_factory=list)  # the script's own forward+backward, plain runs
    floor: List["Floor"] = field(default_factory=list)  # the models: the least any explanation costs

    @staticmethod
    def _median(samples, what):
        return statistics.median(getattr(s, what) for s in samples) if samples else float("nan")

    def plain_(self, what="cpu"):
        return self._median(self.plain, what)

    def traced_(self, what="cpu"):
        return self._median(self.traced, what)

    def cold_(self, what="cpu"):
        return self._median(self.cold, what)

    def warm_(self, what="cpu"):
        return self._median(self.warm, what)

    @property
    def step(self) -> float:
        return statistics.median(self.step_cpu) if self.step_cpu else float("nan")

    @property
    def ratio(self) -> float:
        return self.traced_() / self.plain_() if self.plain_() > 0 else float("nan")

    @property
    def memory_ratio(self) -> float:
        return self.traced_("rss_mb") / self.plain_("rss_mb") if self.plain_("rss_mb") > 0 else float("nan")

    @property
    def extra(self) -> float:
        return self.traced_() - self.plain_()

    @property
    def explain_ratio(self) -> float:
        return self.extra / self.step if self.step > 0 else float("nan")

    @property
    def measured(self) -> float:
        """The number the target is about."""
        return {"ratio": self.ratio, "explain": self.explain_ratio, "seconds": self.traced_()}.get(
            self.case.target, self.ratio)

    @property
    def met(self) -> Optional[bool]:
        if self.case.limit is None:
            return None
        ok = self.measured <= self.case.limit
        if self.case.memory_limit is not None:
            ok = ok and self.memory_ratio <= self.case.memory_limit
        return ok and all(s.returncode in (0, 1, 5) for s in self.traced)  # a crash or a kill is not met


def run_child(argv: Sequence[str], cwd: Path, env: Dict[str, str]) -> Sample:
    """One run; the child's own CPU time and peak RSS from wait4's rusage."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        child = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        timer = threading.Timer(TIMEOUT, child.kill)  # a case that hangs is reported, not waited for
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)
        timer.cancel()
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode not in (0, 5):
            errors.seek(0)
            tail = errors.read().decode("utf-8", "replace")[-800:]
            print(f"  ! {' '.join(argv[-3:])} exited {child.returncode}: {tail}", file=sys.stderr)
    rss = usage.ru_maxrss / 1024  # kilobytes on Linux
    return Sample(usage.ru_utime + usage.ru_stime, wall, rss, child.returncode)


def cases(quick: bool) -> List[Case]:
    found = [Case(f"examples/{path.name}", path, group="notes", limit=1.3)
             for path in sorted(EXAMPLES.glob("*.py"))]
    loop = HERE / "train_loop.py"
    found += [
        Case("train_loop.py, --call first", loop, options=("--call", "first"), group="loop"),
        Case("train_loop.py, --call all, DOT only", loop, options=("--call", "all", "--quiet", "--format", "dot"),
             group="loop", limit=10.0, heavy=True),
        # the default PNG: one `dot` process per call, 300 of them (their CPU counts: wait4 sums the tree)
        Case("train_loop.py, --call all, PNG (default)", loop, options=("--call", "all", "--quiet"), group="loop",
             limit=10.0, heavy=True),
        Case("nn.GRU + nn.LSTM", SCRIPTS / "recurrent.py", options=("--call", "all"), group="models"),
        Case("ResNet-18, one call", SCRIPTS / "resnet18.py", group="models", target="explain", limit=3.0),
        Case("TransformerEncoder 6×128, one call", SCRIPTS / "transformer.py", group="models",
             target="explain", limit=3.0),
        Case("matmul 2000×2000", SCRIPTS / "matmul.py", ("2000",), ("--quiet",), group="matmul"),
        Case("matmul 2000×2000, --json", SCRIPTS / "matmul.py", ("2000",), ("--quiet",), json=True,
             group="matmul", limit=3.0, memory_limit=2.0),
    ]
    for size in (250, 500, 1000):
        found.append(Case(f"matmul {size}×{size}, --json", SCRIPTS / "matmul.py", (str(size),), ("--quiet",),
                          json=True, group="matmul-growth", target="none"))
    for nodes in ((1000, 3000) if quick else (1000, 3000, 10000)):
        found.append(Case(f"chain of {nodes // 1000}k nodes, PNG + --json", SCRIPTS / "chain.py", (str(nodes),),
                          ("--quiet", "--format", "png"), json=True, group="chain",
                          target="seconds" if nodes == 10000 else "none",
                          limit=60.0 if nodes == 10000 else None, heavy=nodes >= 3000))
    return found


def measure(case: Case, repeat: int, scratch: Path) -> Result:
    result = Result(case)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("BENCH_TIMES", None)
    if not cached(case):  # as before the cache existed: every formula derived afresh, nothing written
        env["GRAPHEXPLAIN_CACHE"] = "off"
    python = sys.executable
    for attempt in range(1 if case.heavy else repeat):
        times = scratch / f"times-{attempt}"
        out = scratch / f"out-{attempt}"
        shutil.rmtree(out, ignore_errors=True)
        json_options = ("--json", str(out / "result.json")) if case.json else ()
        plain = [python, str(case.script), *case.args]
        traced = [python, "-m", "graphexplain", "trace", "--out", str(out), *json_options, *case.options,
                  str(case.script), *case.args]
        # alternating, the order swapped each time, so that a busy spell hits both sides alike
        order = [("plain", plain), ("traced", traced)]
        for side, argv in (order if attempt % 2 == 0 else order[::-1]):
            side_env = {**env, "BENCH_TIMES": str(times)} if side == "plain" else env
            if side == "traced" and cached(case):  # cold on an empty cache, then warm on what it kept
                folder = scratch / f"cache-{attempt}"
                shutil.rmtree(folder, ignore_errors=True)
                side_env = {**env, "GRAPHEXPLAIN_CACHE": str(folder)}
                result.cold.append(run_child(argv, scratch, side_env))
            sample = run_child(argv, scratch, side_env)  # what a script writes lands in the scratch folder
            getattr(result, side).append(sample)
            if side == "traced" and case.target == "explain":  # and what a second run of the script costs
                folder = scratch / f"cache-{attempt}"
                shutil.rmtree(folder, ignore_errors=True)
                warm_env = {**env, "GRAPHEXPLAIN_CACHE": str(folder)}
                run_child(argv, scratch, warm_env)
                result.warm.append(run_child(argv, scratch, warm_env))
            if side == "plain" and times.exists():
                result.step_cpu.append(float(times.read_text()))
                times.unlink()
        if case.target == "explain":
            result.floor.append(floor(case, scratch, env))
    return result


def floor(case: Case, scratch: Path, env: Dict[str, str]) -> Floor:
    """What importing sympy and rich costs (fresh processes, as `graphexplain trace` pays it) and the
    model's backward in float32 and float64 (benchmarks/floor.py)."""
    python = sys.executable
    bare = run_child([python, "-c", "import torch"], scratch, env)
    loaded = run_child([python, "-c", "import torch, sympy, rich.console"], scratch, env)
    backward = subprocess.run([python, str(HERE / "floor.py"), str(case.script)], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT, check=True)
    seconds = json.loads(backward.stdout.strip().splitlines()[-1])
    return Floor(loaded.cpu - bare.cpu, seconds["float32"], seconds["float64"])


def cached(case: Case) -> bool:
    """The cases run cold and warm (the notes' scripts); the others run without the cache."""
    return case.group == "notes"


def cold_and_warm(results: List[Result]) -> List[str]:
    """The notes' scripts on an empty derivation cache and on a filled one."""
    rows = [r for r in results if r.cold]
    if not rows:
        return []
    lines = ["| case | plain CPU s | cold traced CPU s | warm traced CPU s | cold / plain | warm / plain "
             "| target (warm) | met? |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for result in rows:
        _, target, met = _cell(result)
        cold_ratio = result.cold_() / result.plain_() if result.plain_() > 0 else float("nan")
        lines.append(f"| {result.case.name} | {result.plain_():.2f} | {result.cold_():.2f} | {result.traced_():.2f} "
                     f"| {cold_ratio:.2f}× | {result.ratio:.2f}× | {target} | {met} |")
    return lines


def models_warm(results: List[Result]) -> List[str]:
    """The models' one call explained again on the cache a first run filled."""
    rows = [r for r in results if r.warm]
    if not rows:
        return []
    lines = ["| case | plain CPU s | traced CPU s, cache off | traced CPU s, warm | extra, warm | "
             "explaining, warm |",
             "|---|---:|---:|---:|---:|---:|"]
    for result in rows:
        extra = result.warm_() - result.plain_()
        ratio = extra / result.step if result.step > 0 else float("nan")
        lines.append(f"| {result.case.name} | {result.plain_():.2f} | {result.traced_():.2f} | {result.warm_():.2f} "
                     f"| {extra:.2f} s | {ratio:.1f}× |")
    return lines


def floors(results: List[Result]) -> List[str]:
    """The model targets against the least any explanation of the call costs."""
    rows = [r for r in results if r.floor]
    if not rows:
        return []
    lines = ["| case | fwd+bwd s | 3× leaves s | sympy + rich import s | backward float32 s | "
             "backward float64 s | floor s | floor / fwd+bwd | explaining now |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for result in rows:
        median = {what: statistics.median(getattr(f, what) for f in result.floor)
                  for what in ("imports", "float32", "float64", "seconds")}
        leaves = result.case.limit * result.step
        lines.append(f"| {result.case.name} | {result.step:.3f} | {leaves:.3f} | {median['imports']:.3f} "
                     f"| {median['float32']:.3f} | {median['float64']:.3f} | {median['seconds']:.3f} "
                     f"| {median['seconds'] / result.step:.1f}× | {result.explain_ratio:.1f}× |")
    return lines


def exponent(points: List[Tuple[float, float]]) -> Optional[float]:
    """The least-squares slope of log(y) against log(x)."""
    points = [(x, y) for x, y in points if x > 0 and y > 0]
    if len(points) < 2:
        return None
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    denominator = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / denominator if denominator else None


TARGET_WORDS = {
    "ratio": lambda c: f"traced/plain ≤ {c.limit:g}" + (f", memory ≤ {c.memory_limit:g}×" if c.memory_limit else ""),
    "explain": lambda c: f"explaining ≤ {c.limit:g}× its fwd+bwd",
    "seconds": lambda c: f"traced ≤ {c.limit:g} s",
}


def _cell(result: Result) -> Tuple[str, str, str]:
    case = result.case
    if case.target == "explain":
        measured = f"{result.explain_ratio:.1f}× (extra {result.extra:.2f} s / fwd+bwd " \
                   f"{statistics.median(result.step_cpu) if result.step_cpu else float('nan'):.2f} s)"
    elif case.target == "seconds":
        measured = f"{result.traced_():.1f} s"
    else:
        measured = f"{result.ratio:.2f}×"
    if case.memory_limit is not None:
        measured += f", memory {result.memory_ratio:.2f}×"
    target = TARGET_WORDS[case.target](case) if case.limit is not None else "—"
    met = {True: "yes", False: "**no**", None: "—"}[result.met]
    return measured, target, met


def table(results: List[Result]) -> List[str]:
    lines = ["| case | plain CPU s | traced CPU s | plain wall s | traced wall s | plain / traced peak MB "
             "| measured | target | met? |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for result in results:
        measured, target, met = _cell(result)
        codes = {s.returncode for s in result.traced}
        note = "" if codes <= {0} else f" (exit {', '.join(map(str, sorted(codes)))})"
        lines.append(f"| {result.case.name}{note} | {result.plain_():.2f} | {result.traced_():.2f} "
                     f"| {result.plain_('wall'):.2f} | {result.traced_('wall'):.2f} "
                     f"| {result.plain_('rss_mb'):.0f} / {result.traced_('rss_mb'):.0f} "
                     f"| {measured} | {target} | {met} |")
    return lines


def growth(results: List[Result]) -> List[str]:
    chains = [(float(r.case.args[0]), r.extra) for r in results if r.case.group == "chain"]
    matmuls = [(float(r.case.args[0]) ** 2, r.extra) for r in results
               if r.case.group in ("matmul-growth", "matmul") and r.case.json]
    lines = []
    for what, points, unit in (("nodes (elementwise chains)", chains, "nodes"),
                               ("elements (n×n matmuls, --json)", matmuls, "elements")):
        slope = exponent(points)
        shown = ", ".join(f"{x:g} {unit}: {y:.2f} s" for x, y in sorted(points))
        lines.append(f"- time vs {what}: exponent **{slope:.2f}**" if slope is not None else
                     f"- time vs {what}: too few points")
        if shown:
            lines[-1] += f" (traced − plain CPU: {shown})"
    return lines


def markdown(results: List[Result], repeat: int, quick: bool) -> str:
    machine = f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    try:
        import torch
        machine += f", torch {torch.__version__}"
    except ImportError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    met = [r for r in results if r.met is not None]
    lines = [
        "# Performance",
        "",
        "Generated by `python benchmarks/speed.py` (`make benchmark`); do not edit by hand.",
        "",
        f"Each case runs `python SCRIPT` and `graphexplain trace SCRIPT` in fresh processes, alternating, "
        f"median of {repeat} (heavy cases once){', --quick' if quick else ''}. CPU time is the child's own "
        "user + system time and is what the targets judge; wall time is shown too, but on a shared machine "
        f"it mostly measures the neighbours (load average {load:.1f} when this was written). Machine: {machine}.",
        "",
        f"Targets met: {sum(1 for r in met if r.met)} of {len(met)}.",
        "",
        *table(results),
        "",
        "What is measured: *traced/plain* is the ratio of CPU times; *explaining* is (traced − plain CPU) "
        "over the script's own forward+backward CPU time (the script times itself); the chains write the "
        "collapsed picture as PNG (the chain folded into one box, render/collapse.py) and the JSON.",
        "",
        "## The notes' scripts, cold and warm",
        "",
        "What sympy derives is kept on disk between runs (the derivation cache, `$GRAPHEXPLAIN_CACHE`, "
        "by default `~/.cache/graphexplain`; see [cli.md](cli.md#the-derivation-cache)). A learner runs "
        "a script again and again, so the notes' scripts are judged on the *warm* run: the second run of "
        "the script, on the cache its first run filled (the *traced* column above). The *cold* run, on an "
        "empty cache, pays for sympy's derivations as every run did before the cache. The other cases run "
        "with the cache off (`GRAPHEXPLAIN_CACHE=off`), every formula derived afresh.",
        "",
        *cold_and_warm(results),
        "",
        "## The models, run again",
        "",
        "The models are judged with the cache off, as above. A user explains a model's training step again "
        "and again too; this is what the second run costs, on the cache the first one filled (for "
        "information, not judged).",
        "",
        *models_warm(results),
        "",
        "## The floor under the model targets",
        "",
        "What any explanation of one call must do, however it is written. It imports sympy, because every "
        "derivative is derived by sympy, and a first run (the cache off, as these cases are judged) derives "
        "them all; and rich, for the walkthrough. It computes every gradient again, at a precision above "
        "float32 and without torch's backward numbers: a ✓ needs numbers of its own, and a ✗ a difference "
        "beyond what float32 can produce. The *floor* is that import plus torch's own float64 backward of "
        "the same model and batch (benchmarks/floor.py): compiled kernels, no Python per node, no error "
        "budgets, no comparisons, no walkthrough, no picture. Where the floor is over 3× the call, no "
        "explanation of this kind meets the target.",
        "",
        *floors(results),
        "",
        "The *fwd+bwd* is the script's own first forward+backward, the denominator of the target; the "
        "backward columns are medians of five after a warm-up.",
        "",
        "## How the cost grows",
        "",
        *growth(results),
        "",
        "An exponent near 1 is linear. The plain matmul itself grows as elements^1.5 (n³ work on n² elements).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side per case (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run each, chains of 1k and 3k nodes only")
    parser.add_argument("--only", metavar="NAME,...", help="only the cases whose name contains one of these")
    parser.add_argument("--markdown", default=str(PAGE), metavar="FILE",
                        help=f"where to write the page (default {PAGE.relative_to(REPO)})")
    parser.add_argument("--no-write", action="store_true", help="print the table, write no page")
    options = parser.parse_args(argv)
    repeat = 1 if options.quick else max(1, options.repeat)
    chosen = cases(options.quick)
    if options.only:
        words = [w.strip() for w in options.only.split(",") if w.strip()]
        chosen = [c for c in chosen if any(w in c.name for w in words)]
    results = []
    with tempfile.TemporaryDirectory(prefix="graphexplain-speed-") as folder:
        for case in chosen:
            result = measure(case, repeat, Path(folder))
            results.append(result)
            measured, target, met = _cell(result)
            cold = f" (cold {result.cold_():.2f} s)" if result.cold else ""
            print(f"{case.name:42} plain {result.plain_():6.2f} s  traced {result.traced_():7.2f} s{cold}  "
                  f"{measured}  [{target}: {met}]", flush=True)
    page = markdown(results, repeat, options.quick)
    print("\n".join(growth(results)))
    if not options.no_write:
        Path(options.markdown).write_text(page, encoding="utf-8")
        print(f"wrote {options.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
