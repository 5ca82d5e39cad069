"""`graphexplain trace SCRIPT [ARGS...]`: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from . import __version__
from .exitcodes import USAGE as EXIT_USAGE

DEFAULT_OUT = "graphexplain-out"
MARKER = ".graphexplain"  # marks a folder graphexplain made, so reruns may overwrite it

DESCRIPTION = """\
Run a PyTorch script unchanged, catch every .backward() / torch.autograd.backward /
torch.autograd.grad call, and explain the gradient graph behind it: each node's local
gradient derived by sympy from the op's forward formula, the chain rule step by step,
and every number checked against what torch computed."""

EXIT_CODES = """\
exit codes:
  0  every explained backward call verified against torch
  1  mismatch: a derived gradient disagrees with torch's (the first node is named)
  2  bad usage: no such script, not valid Python, an output that would be overwritten,
     or a --target that names no tensor
  3  the script raised an error (what was captured before it is still reported)
  4  the script never called backward, or none of its calls could be explained
     (torch refused them, or --call N is past the last call)
  5  incomplete: no mismatch, but not every number could be derived: an op without
     a symbolic rule (no-rule), a rule that failed to apply (rule-error), complex
     numbers a rule does not do yet (not-derived), a gradient changed by a user's
     hook (hook-changed), or the nodes and leaves below any of these, which carry
     torch's numbers only (unchecked); never shown as verified

examples:
  graphexplain trace examples/autograd_mean.py
  graphexplain trace --format svg,pdf --json result.json train.py --epochs 3
  graphexplain trace --call all examples/grad_accumulation.py
  graphexplain trace --target loss my_forward_pass.py"""


class UsageError(Exception):
    pass


def _formats(text: str) -> List[str]:
    from .render.dot import FORMATS

    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return formats


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="graphexplain", description=DESCRIPTION, epilog=EXIT_CODES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    main.add_argument("--version", action="version", version=f"graphexplain {__version__}")
    commands = main.add_subparsers(dest="command", metavar="COMMAND")
    trace = commands.add_parser(
        "trace", help="run a script and explain its backward calls",
        description=DESCRIPTION, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="graphexplain trace [options] SCRIPT [ARGS...]")
    trace.add_argument("script", metavar="SCRIPT", help="the Python script to run")
    trace.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments passed to the script")
    trace.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                       help=f"folder for the pictures and DOT files (default: {DEFAULT_OUT}/)")
    trace.add_argument("--format", type=_formats, default=["png"], metavar="FMT[,FMT]",
                       help="picture formats: png, svg, pdf, dot (default: png; the .dot source is always written)")
    trace.add_argument("--json", metavar="FILE", help="write the whole result as JSON to FILE")
    trace.add_argument("--call", default="first", metavar="WHICH",
                       help="which backward calls to explain in full: first (default), last, all, or a number")
    trace.add_argument("--target", metavar="NAME",
                       help="also explain the tensor the script leaves in variable NAME, without a backward call")
    trace.add_argument("--width", type=int, default=None, help="terminal width for the walkthrough")
    trace.add_argument("--no-color", action="store_true", help="plain text, no colour")
    trace.add_argument("--quiet", action="store_true", help="print only the summary, not the walkthrough")
    trace.add_argument("--force", action="store_true",
                       help="overwrite output files even if graphexplain did not make them")
    return main


def _check_outputs(options) -> None:
    """Refuse, before running anything, to overwrite what the user had."""
    out = options.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a file, not a folder; choose another folder with --out.")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)) \
            and not options.force:
        raise UsageError(f"The folder {out!r} already holds files that graphexplain did not write; "
                         "they were left untouched. Choose another folder with --out, or pass --force "
                         "to write into it anyway.")
    if options.json and os.path.exists(options.json) and not options.force:
        try:
            with open(options.json, encoding="utf-8") as handle:
                ours = json.load(handle).get("schema", "").startswith("graphexplain/")
        except Exception:
            ours = False
        if not ours:
            raise UsageError(f"{options.json!r} already exists and is not a graphexplain result, so it "
                             "was left untouched. Choose another --json file, or pass --force to replace it.")


def _write_pictures(report, options, err) -> List[str]:
    from .render.dot import RenderError

    os.makedirs(options.out, exist_ok=True)
    with open(os.path.join(options.out, MARKER), "w", encoding="utf-8") as handle:
        handle.write("This folder was written by graphexplain; reruns may overwrite its files.\n")
    written, missing_dot = [], None
    for explanation in report.all_explanations:
        index = explanation.index
        stem = os.path.join(options.out, f"call-{index}" if index else "target")
        written.append(explanation.render(stem + ".dot", "dot"))
        for format in options.format:
            if format == "dot" or missing_dot:
                continue
            try:
                written.append(explanation.render(f"{stem}.{format}", format))
            except RenderError as problem:
                missing_dot = str(problem)
    if missing_dot:
        err.print(f"graphexplain: {missing_dot}")
    return written


def trace(options, out, err) -> int:
    from .capture.intercept import Selection
    from .report import NOTHING_EXPLAINED, Report
    from .capture.runner import EXITED, ScriptError, read_script, run_script
    from .render.terminal import report_parts, verdict_line

    try:
        selection = Selection.parse(options.call)
        read_script(options.script)
        _check_outputs(options)
    except (ScriptError, UsageError, ValueError) as problem:
        err.print(f"graphexplain: {problem}")
        return EXIT_USAGE

    run = run_script(options.script, options.args, selection, options.target)
    report = Report.of(run)
    out.rule("graphexplain", characters="═")
    for part in report_parts(report, out.width, options.quiet):
        out.print(part)
    if report.all_explanations:
        written = _write_pictures(report, options, err)
        out.print(f"pictures: {', '.join(written)}")
    if options.json:
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump(report.to_json(), handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        out.print(f"json: {options.json}")
    if run.target_problem:
        err.print(f"graphexplain: {run.target_problem}")
    out.print(verdict_line(report))
    if report.status == NOTHING_EXPLAINED:
        made = len(report.calls)
        past = selection.which.isdigit() and int(selection.which) > made
        uncaptured = any(record.capture_problem for record in report.calls)
        why = "graphexplain could not capture the call(s) asked for (the listing above says why)." \
            if uncaptured else "torch refused the call(s) asked for (see above)."
        err.print(f"graphexplain: none of the {made} backward call(s) was explained, so nothing was "
                  "verified: " + (f"--call {selection.which} is past the last call; choose 1 to {made}."
                                  if past else why))
    if run.outcome == EXITED:
        err.print(f"graphexplain: {options.script} exited with code {run.exit_code} after "
                  f"{len(report.calls)} backward call(s); what was captured is reported above.")
    if run.traceback:
        err.print(f"graphexplain: {options.script} raised an error after "
                  f"{len(report.calls)} backward call(s); what was captured is reported above. "
                  "Its traceback:", highlight=False)
        err.out(run.traceback.rstrip(), highlight=False)
    return report.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    from .render.terminal import console

    arguments = parser()
    options = arguments.parse_args(argv)
    if options.command is None:
        arguments.print_help()
        return EXIT_USAGE
    color = False if options.no_color else None
    out = console(sys.stdout, options.width, color)
    err = console(sys.stderr, options.width, color)
    return trace(options, out, err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
