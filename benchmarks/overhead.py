"""How much slower is a training loop under graphexplain? Ratios, side by side.

    python benchmarks/overhead.py [--repeat 3]

Runs benchmarks/train_loop.py (300 optimizer steps) in this process: plainly,
then traced with --call first (the default: one call explained, recording
stops after it), --call 10, --call all, and with no call explained (the
interception alone) (every call captured). Prints the
median wall time of each and its ratio to the plain run. No pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "train_loop.py")


def plain() -> None:
    code = compile(open(SCRIPT, encoding="utf-8").read(), SCRIPT, "exec")
    exec(code, {"__name__": "__main__", "__file__": SCRIPT})


def traced(call: str):
    from graphexplain.capture.intercept import Selection
    from graphexplain.capture.runner import run_script
    from graphexplain.report import Report

    def run() -> None:
        Report.of(run_script(SCRIPT, [], Selection.parse(call)))
    return run


def median_seconds(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    import torch  # noqa: F401  (imported once, outside the timings)

    with contextlib.redirect_stdout(io.StringIO()):
        plain()  # warm-up: torch's own first-call costs
        traced("first")()  # warm-up: sympy derives each row once per process (cached)
    runs = [("plain python", plain), ("traced, none explained", traced("100000")),
            ("traced, --call first", traced("first")),
            ("traced, --call 10", traced("10")), ("traced, --call all", traced("all"))]
    base = None
    print(f"{'run':24} {'median s':>9} {'× plain':>8}")
    for name, work in runs:
        seconds = median_seconds(work, options.repeat)
        base = base or seconds
        print(f"{name:24} {seconds:9.3f} {seconds / base:8.2f}")


if __name__ == "__main__":
    main()
