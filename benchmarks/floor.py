"""The least any explanation of a model's call costs: its backward again, in float64.

    python benchmarks/floor.py SCRIPT

SCRIPT is one of benchmarks/scripts/{resnet18,transformer}.py, which define
`make()` (the seeded model and its batch) and `loss_of(model, *batch)`.
Prints the CPU seconds of that model's backward in float32 and in float64,
each the median of five after one run to warm up, with torch's own kernels
on all its threads (benchmarks/speed.py, "The floor under the model targets").

Why that is a floor (non-negotiable 6): a ✓ needs every gradient computed
without torch's backward numbers, and a ✗ needs the difference to exceed
what float32 can produce, so the gradients are computed again at a higher
precision. torch's float64 backward of the same graph is the fastest such
computation there is: compiled kernels, no Python per node, no error
budgets and no comparisons. An explanation does all of that and more.
"""

from __future__ import annotations

import copy
import json
import runpy
import statistics
import sys
import time


def backward_seconds(model, batch, loss_of, repeat: int = 5) -> float:
    """The median CPU time of the backward alone: the forward is run, untimed, before each."""
    times = []
    for attempt in range(repeat + 1):  # the first warms the kernels up and is not counted
        model.zero_grad(set_to_none=True)
        loss = loss_of(model, *batch)
        start = time.process_time()
        loss.backward()
        if attempt:
            times.append(time.process_time() - start)
    return statistics.median(times)


def _in_float64(batch):
    return tuple(b.double() if b.is_floating_point() else b for b in batch)


def main(argv) -> int:
    script = runpy.run_path(argv[0], run_name="floor")  # its definitions, not its own step
    model, batch = script["make"]()
    seconds = {"float32": backward_seconds(model, batch, script["loss_of"]),
               "float64": backward_seconds(copy.deepcopy(model).double(), _in_float64(batch), script["loss_of"])}
    print(json.dumps(seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
