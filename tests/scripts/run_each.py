"""Run several scripts in one interpreter, each in its own folder and with
its stdout (file descriptor 1) sent to a file of its own.

    python run_each.py plain JOBS.json    # each as `python SCRIPT ARGS...` would
    python run_each.py trace JOBS.json    # each as `graphexplain trace SCRIPT ARGS...`

JOBS.json is a list of {"script", "args", "cwd", "stdout"}; each job's exit
code is written next to its stdout file, with ".exit" appended. Used by
tests/test_capture.py, so that comparing every example under both costs
one `import torch` per mode instead of one per script.
"""

import json
import os
import runpy
import sys
import traceback


def exit_code(stop: SystemExit) -> int:
    if stop.code in (None, 0):
        return 0
    return stop.code if isinstance(stop.code, int) else 1


def plain(script: str, args) -> int:
    saved = list(sys.argv), list(sys.path)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python SCRIPT` does
    try:
        runpy.run_path(script, run_name="__main__")
        return 0
    except SystemExit as stop:
        return exit_code(stop)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.argv, sys.path[:] = saved


def trace(script: str, args) -> int:
    from graphexplain.cli import main

    return main(["trace", "--out", "traced", script, *args])


def main(mode: str, jobs_file: str) -> None:
    run = {"plain": plain, "trace": trace}[mode]
    with open(jobs_file, encoding="utf-8") as handle:
        jobs = json.load(handle)
    for job in jobs:
        os.chdir(job["cwd"])
        sys.stdout.flush()
        terminal = os.dup(1)
        with open(job["stdout"], "wb") as captured:
            os.dup2(captured.fileno(), 1)
        try:
            code = run(job["script"], job["args"])
        finally:
            sys.stdout.flush()
            os.dup2(terminal, 1)
            os.close(terminal)
        with open(job["stdout"] + ".exit", "w", encoding="utf-8") as handle:
            handle.write(f"{code}\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
