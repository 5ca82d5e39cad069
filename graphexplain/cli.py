"""`graphexplain trace SCRIPT [ARGS...]`: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import __version__
from .exitcodes import USAGE as EXIT_USAGE

DEFAULT_OUT = "graphexplain-out"
MIN_WIDTH = 40  # narrower, the walkthrough's two columns have no room left
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
  2  bad usage: no such script, not valid Python, an output that would be overwritten
     or cannot be written (checked before the script runs), or a --target that names
     no tensor
  3  the script raised an error (what was captured before it is still reported)
  4  the script never called backward, or none of its calls could be explained
     (torch refused them, or --call N is past the last call)
  5  incomplete: no mismatch, but not every number could be derived: an op without
     a symbolic rule (no-rule), a rule that failed to apply (rule-error), complex
     numbers a rule does not do yet (not-derived), a gradient changed by a user's
     hook (hook-changed), or the nodes and leaves below any of these, which carry
     torch's numbers only (unchecked); never shown as verified
  N  the script ended itself with sys.exit(N), N not 0: graphexplain exits with N too,
     as python would (1 for sys.exit("a message"), which is printed to stderr)

examples:
  graphexplain trace examples/autograd_mean.py
  graphexplain trace --format svg,pdf --json result.json train.py --epochs 3
  graphexplain trace --call all examples/grad_accumulation.py
  graphexplain trace --target loss my_forward_pass.py
  graphexplain trace --markdown post.md examples/autograd_mean.py"""


class UsageError(Exception):
    pass


# Note [the heap frozen around the script]
# Importing torch, and after the script sympy, makes many objects, and each
# of Python's full collections walks the whole heap, torch's modules and the
# script's tensors included: a third of a second over a small script's run,
# spent finding no garbage. So graphexplain's own imports run without the
# collector, and what they made is frozen (gc.freeze: left out of later
# collections) before the script runs, under the collector as python would
# run it; once it has run, what it left is frozen too, before the
# derivation. A caller in the same process (tests: main(argv)) gets its
# heap unfrozen at the end and the collector as it was; a host that froze
# objects of its own is left alone. The command line itself ends frozen:
# unfreezing would only make Python's collection at exit walk it all.


def _formats(text: str) -> List[str]:
    from .render.dot import FORMATS

    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return formats


def _width(text: str) -> int:
    try:
        width = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number of columns, not {text!r}") from None
    if width < MIN_WIDTH:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_WIDTH} columns for the walkthrough to fit, "
                                         f"not {width}")
    return width


def _depth(text: str):
    from .render.collapse import parse_depth

    try:
        return parse_depth(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number of module levels (0 or more) or 'all', "
                                         f"not {text!r}") from None


def parser() -> argparse.ArgumentParser:
    from .render.collapse import TALL, THRESHOLD
    from .render.json import SUMMARY_LIMIT

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
    trace.add_argument("--json-full", action="store_true",
                       help=f"with --json: also write tensors over {SUMMARY_LIMIT} elements, which the JSON only "
                            "summarises, whole into FILE's .npz sidecar (FILE with .npz for .json)")
    trace.add_argument("--html", metavar="FILE",
                       help="write one self-contained HTML page to FILE: the picture (click a node for its step), "
                            "every step with its formulas, the table of backward calls")
    trace.add_argument("--call", default="first", metavar="WHICH",
                       help="which backward calls to explain in full: first (default), last, all, or a number")
    trace.add_argument("--target", metavar="NAME",
                       help="also explain the tensor the script leaves in variable NAME, without a backward call")
    trace.add_argument("--width", type=_width, default=None, metavar="N",
                       help=f"terminal width for the walkthrough, at least {MIN_WIDTH} (default: the terminal's)")
    trace.add_argument("--no-color", action="store_true", help="plain text, no colour")
    trace.add_argument("--quiet", action="store_true", help="print only the summary, not the walkthrough")
    trace.add_argument("--depth", type=_depth, default=None, metavar="N",
                       help=f"for a graph of more than {THRESHOLD} nodes or of modules more than {TALL} ops deep (or "
                            "any graph, given a number): draw "
                            "modules nested deeper than N as one box each; 'all' draws every node "
                            "(default: as deep as keeps the picture readable)")
    trace.add_argument("--expand", action="append", default=[], metavar="MODULE",
                       help="open this module in full, in the picture and the walkthrough (repeatable; "
                            "a path such as encoder.layers.0)")
    trace.add_argument("--full", action="store_true",
                       help="print every step of a big graph's walkthrough, not only the expanded modules'")
    trace.add_argument("--markdown", metavar="FILE",
                       help="also write the walkthrough as Markdown to FILE, for a blog post: formulas as $…$ "
                            "LaTeX, each call's picture linked from the --out folder")
    trace.add_argument("--force", action="store_true",
                       help="overwrite output files even if graphexplain did not make them")
    trace.add_argument("--no-cache", action="store_true",
                       help="derive every formula afresh, neither reading nor writing the derivation cache "
                            "(also GRAPHEXPLAIN_CACHE=off)")
    return main


@dataclass(frozen=True)
class Outputs:
    """Where the results go, fixed before the script runs: absolute paths to
    write to (so an ``os.chdir`` in the script changes nothing), and the
    paths as the user typed them, to print."""

    folder: str
    folder_shown: str
    json: Optional[str] = None
    json_shown: Optional[str] = None


def _writable(folder: str) -> bool:
    """Whether a file can be made in `folder`: tried, not guessed from the
    mode bits (root may write anywhere but /proc and read-only mounts)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _nearest_existing(path: str) -> str:
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _check_folder(option: str, shown: str, folder: str, force: bool) -> None:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"{option} {shown!r} is a file, not a folder; choose another folder with {option}.")
    if os.path.isdir(folder):
        if not _writable(folder):
            raise UsageError(f"{option} {shown!r} is a folder graphexplain cannot write into; "
                             f"choose another folder with {option}.")
        if os.listdir(folder) and not os.path.exists(os.path.join(folder, MARKER)) and not force:
            raise UsageError(f"The folder {shown!r} already holds files that graphexplain did not write; "
                             f"they were left untouched. Choose another folder with {option}, or pass "
                             "--force to write into it anyway.")
        return
    above = _nearest_existing(folder)
    if not os.path.isdir(above) or not _writable(above):
        what = "is a file" if not os.path.isdir(above) else "cannot be written into"
        raise UsageError(f"{option} {shown!r} cannot be made: {above!r} {what}; choose another folder "
                         f"with {option}.")


def _check_json(shown: str, path: str, force: bool, out_folder: str) -> None:
    if os.path.isdir(path):
        raise UsageError(f"--json {shown!r} is a folder, not a file; give the name of a file to write.")
    folder = os.path.dirname(path)
    if folder == out_folder and not os.path.exists(folder):
        return  # into the --out folder, which is made (and was checked) before the JSON is written
    if not os.path.isdir(folder):
        raise UsageError(f"--json {shown!r} cannot be written: the folder {folder!r} does not exist.")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"--json {shown!r} is a file graphexplain cannot write; choose another --json file.")
        if not force:
            try:
                with open(path, encoding="utf-8") as handle:
                    ours = json.load(handle).get("schema", "").startswith("graphexplain/")
            except Exception:
                ours = False
            if not ours:
                raise UsageError(f"{shown!r} already exists and is not a graphexplain result, so it was "
                                 "left untouched. Choose another --json file, or pass --force to replace it.")
    elif not _writable(folder):
        raise UsageError(f"--json {shown!r} cannot be written: graphexplain cannot make files in {folder!r}.")


def check_markdown(options, outputs: Outputs) -> Optional[str]:
    """The --markdown file's absolute path, checked as --json's is: a file
    that is not one graphexplain wrote is never replaced without --force."""
    shown = getattr(options, "markdown", None)
    if shown is None:
        return None
    if not shown.strip():
        raise UsageError("--markdown was given an empty path; give it a file name.")
    from .render.markdown import MARKER as MARKDOWN_MARKER

    path = os.path.abspath(shown)
    if os.path.isdir(path):
        raise UsageError(f"--markdown {shown!r} is a folder, not a file; give the name of a file to write.")
    if path in (outputs.json, outputs.json and sidecar_path(outputs.json)):
        raise UsageError(f"--markdown {shown!r} is the --json file too; give each its own file.")
    folder = os.path.dirname(path)
    if folder == outputs.folder and not os.path.exists(folder):
        return path  # into the --out folder, which is made (and was checked) before the Markdown is written
    if not os.path.isdir(folder):
        raise UsageError(f"--markdown {shown!r} cannot be written: the folder {folder!r} does not exist.")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"--markdown {shown!r} is a file graphexplain cannot write; choose another "
                             "--markdown file.")
        if not options.force:
            try:
                with open(path, encoding="utf-8") as handle:
                    ours = handle.readline().rstrip("\n") == MARKDOWN_MARKER
            except Exception:
                ours = False
            if not ours:
                raise UsageError(f"{shown!r} already exists and is not a page graphexplain wrote, so it was left "
                                 "untouched. Choose another --markdown file, or pass --force to replace it.")
    elif not _writable(folder):
        raise UsageError(f"--markdown {shown!r} cannot be written: graphexplain cannot make files in {folder!r}.")
    return path


def _write_markdown(report, options, outputs: Outputs, path: str, written: List[str]) -> None:
    """The page, each call's picture linked relative to the page's folder,
    where it was drawn; the first picture format asked for that is not dot."""
    from .render.markdown import to_markdown

    format = next((f for f in options.format if f != "dot"), None)
    pictures, missing = {}, {}
    for explanation in report.all_explanations:
        name = f"call-{explanation.index}" if explanation.index else "target"
        if format is None:
            missing[explanation.index] = f"No picture: --format {','.join(options.format)} draws none; the DOT " \
                                         f"source is {os.path.join(outputs.folder_shown, name + '.dot')}."
        elif os.path.join(outputs.folder_shown, f"{name}.{format}") in written:
            picture = os.path.join(outputs.folder, f"{name}.{format}")
            pictures[explanation.index] = os.path.relpath(picture, os.path.dirname(path)).replace(os.sep, "/")
        else:
            missing[explanation.index] = f"The picture {os.path.join(outputs.folder_shown, name + '.' + format)} " \
                                         "could not be drawn (see graphexplain's message)."
    page = to_markdown(report, pictures, missing, title=options.script)

    def write():
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(page)
    _written(write, options.markdown)


def check_outputs(options) -> Outputs:
    """Every output path, resolved against the folder graphexplain started
    in and checked before anything runs: refuse to overwrite what the user
    had, and refuse a path that cannot be written."""
    for option, value, what in (("--out", options.out, "folder"), ("--json", options.json, "file")):
        if value is not None and not value.strip():
            raise UsageError(f"{option} was given an empty path; give it a {what} name.")
    folder = os.path.abspath(options.out)
    _check_folder("--out", options.out, folder, options.force)
    if options.json is None:
        if getattr(options, "json_full", False):
            raise UsageError("--json-full adds a sidecar to the --json file: give --json FILE as well.")
        return Outputs(folder, options.out)
    path = os.path.abspath(options.json)
    _check_json(options.json, path, options.force, folder)
    if getattr(options, "json_full", False):
        sidecar = sidecar_path(path)
        if os.path.isdir(sidecar) or (os.path.exists(sidecar) and not os.path.exists(path) and not options.force):
            raise UsageError(f"--json-full would write {sidecar_path(options.json)!r}, which already exists and "
                             "is not beside a graphexplain result, so it was left untouched. Choose another "
                             "--json file, or pass --force to replace it.")
    return Outputs(folder, options.out, path, options.json)


class OutputError(Exception):
    """An output could not be written after the run; the message says which."""


def _written(action, shown: str):
    try:
        return action()
    except OSError as error:
        raise OutputError(f"could not write {shown!r}: {error.strerror or error}.") from None


def _write_pictures(report, options, outputs: Outputs, err, more: Tuple[Tuple[str, str], ...] = ()) -> List[str]:
    """Each picture is tried; a failure is one line, and the others are still made.
    The DOT source is made once per call, written first, then drawn in each
    format, many calls to one `dot` process (Note [one dot for many pictures]).
    `more`: (name, DOT source) of other pictures drawn with them (the loop plot)."""
    from .render.dot import RenderError, draw_all, to_dot

    def marker():
        os.makedirs(outputs.folder, exist_ok=True)
        with open(os.path.join(outputs.folder, MARKER), "w", encoding="utf-8") as handle:
            handle.write("This folder was written by graphexplain; reruns may overwrite its files.\n")

    def write(path, data):
        with open(path, "wb") as handle:
            handle.write(data)

    _written(marker, outputs.folder_shown)
    names, sources = [], []
    for explanation in report.all_explanations:
        names.append(f"call-{explanation.index}" if explanation.index else "target")
        sources.append(to_dot(explanation, report.view))
    for name, source in more:
        names.append(name)
        sources.append(source)
    formats = ["dot", *dict.fromkeys(f for f in options.format if f != "dot")]
    outcome: Dict[Tuple[int, str], Optional[str]] = {}  # (call, format) → None when written, else the problem
    for position, (name, source) in enumerate(zip(names, sources)):
        try:
            write(os.path.join(outputs.folder, f"{name}.dot"), source.encode("utf-8"))
            outcome[position, "dot"] = None
        except OSError as error:
            outcome[position, "dot"] = f"{error.strerror or error}."
    for format in formats[1:]:
        for position, picture in draw_all(sources, format):
            if isinstance(picture, RenderError):
                outcome[position, format] = str(picture)
                continue
            try:
                write(os.path.join(outputs.folder, f"{names[position]}.{format}"), picture)
                outcome[position, format] = None
            except OSError as error:
                outcome[position, format] = f"{error.strerror or error}."
    written, failed = [], {}  # problem → the pictures it stopped
    dot_files = {}  # problem → the DOT files written for those pictures, to draw by hand
    for position, name in enumerate(names):
        for format in formats:
            shown = os.path.join(outputs.folder_shown, f"{name}.{format}")
            problem = outcome[position, format]
            if problem is None:
                written.append(shown)
                continue
            failed.setdefault(problem, []).append(shown)
            source = os.path.join(outputs.folder_shown, f"{name}.dot")
            if format != "dot" and outcome[position, "dot"] is None \
                    and source not in dot_files.setdefault(problem, []):
                dot_files[problem].append(source)
    for problem, pictures in failed.items():
        where = f" The DOT source is in {', '.join(dot_files[problem])}." if dot_files.get(problem) else ""
        err.print(f"graphexplain: not drawn: {', '.join(pictures)}: {problem}{where}")
    return written


LISTED_PICTURES = 24  # more files than this (a loop under --call all), and the line names the first and last few


def _pictures_line(written: List[str]) -> str:
    """The files written, or, for many, the first and last few and a count.

    >>> _pictures_line([f"call-{k}.dot" for k in range(1, 31)])
    'call-1.dot, call-2.dot, call-3.dot, call-4.dot, … 23 more …, call-28.dot, call-29.dot, call-30.dot'
    """
    if len(written) <= LISTED_PICTURES:
        return ", ".join(written)
    first, last = written[:4], written[-3:]
    return ", ".join([*first, f"… {len(written) - len(first) - len(last)} more …", *last])


def _loop_plot(report) -> Tuple[Tuple[str, str], ...]:
    """The loop plot, (name, DOT source), for a loop (`PLOTTED_FROM` backward
    calls or more), to be written and drawn with the pictures
    (render/loop_plot.py); none for fewer calls."""
    from .render.loop_plot import LOOP_NAME, PLOTTED_FROM, points, to_dot

    calls = points(report)
    if len(calls) < PLOTTED_FROM:
        return ()
    return ((LOOP_NAME, to_dot(calls, f"Loss per backward call: {os.path.basename(report.run.script)}")),)


def trace(options, out, err, program: bool = False) -> int:
    """`program`: this run is the whole process (Note [the heap frozen around the script])."""
    collecting, ours = gc.isenabled(), gc.get_freeze_count() == 0
    if ours:
        gc.disable()  # Note [the heap frozen around the script]
    try:
        return _trace(options, out, err, collecting if ours else None)
    finally:
        if ours:
            if not program:
                gc.unfreeze()
            if collecting:
                gc.enable()


def _trace(options, out, err, collecting) -> int:
    from .capture.script import ScriptError, read_script

    try:  # what needs no torch first, so that these answer at once
        read_script(options.script)
        outputs = check_outputs(options)
        markdown = check_markdown(options, outputs)
        html_path = check_html(options, outputs.folder)
        from .capture.intercept import Selection
        selection = Selection.parse(options.call)
    except (ScriptError, UsageError, ValueError) as problem:
        err.print(f"graphexplain: {problem}")
        return EXIT_USAGE

    from .capture.runner import EXITED, run_script
    from .render.terminal import report_parts, verdict_line
    from .render.collapse import View
    from .report import NOTHING_EXPLAINED, Report

    if collecting is not None:  # the script runs under Python's collector as python would run it
        gc.freeze()
        if collecting:
            gc.enable()
    run = run_script(options.script, options.args, selection, options.target)
    if collecting is not None:
        gc.freeze()
    from .blas import one_thread_from_now
    one_thread_from_now()  # the script is done: what follows is ours (Note [one BLAS thread] in blas.py)
    from .memory import return_big_blocks_from_now
    return_big_blocks_from_now()  # Note [big blocks returned at once] in memory.py
    if options.no_cache:  # (imported here, after the script, as the derivation would import it)
        from .derive import disk_cache
        disk_cache.switch_off()
    whole = options.json_full or markdown or html_path  # reports that read big arrays whole
    report = Report.of(run, View(options.depth, tuple(options.expand), options.full), lean=not whole)
    out.rule("graphexplain", characters="═")
    for part in report_parts(report, out.width, options.quiet):
        out.print(part)
    unwritten = None
    written: List[str] = []
    if report.all_explanations:
        try:
            written = _write_pictures(report, options, outputs, err, _loop_plot(report))
            out.print(f"pictures: {_pictures_line(written) or 'none'}")
        except OutputError as problem:
            unwritten = problem
            err.print(f"graphexplain: {problem}")
    if outputs.json:
        try:
            sidecar = _write_json(report, outputs.json, outputs.json_shown, options.json_full)
            out.print(f"json: {outputs.json_shown}" + (f" (arrays: {sidecar_path(outputs.json_shown)})"
                                                       if sidecar else ""))
        except OutputError as problem:
            unwritten = unwritten or problem
            err.print(f"graphexplain: {problem}")
    if markdown:
        try:
            if not report.all_explanations:  # the page still says what happened
                _written(lambda: os.makedirs(os.path.dirname(markdown), exist_ok=True), options.markdown)
            _write_markdown(report, options, outputs, markdown, written)
            out.print(f"markdown: {options.markdown}")
        except OutputError as problem:
            unwritten = unwritten or problem
            err.print(f"graphexplain: {problem}")
    if html_path is not None:
        try:
            _write_html(report, html_path, options.html)
            out.print(f"html: {options.html}")
        except OutputError as problem:
            unwritten = unwritten or problem
            err.print(f"graphexplain: {problem}")
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
                  f"{len(report.calls)} backward call(s); what was captured is reported above, "
                  f"and graphexplain exits with {run.exit_code} too, as python would.")
    if run.traceback and run.ours:
        err.print(f"graphexplain: graphexplain itself failed while {options.script} ran, after "
                  f"{len(report.calls)} backward call(s): this is a bug in graphexplain, not in the script; "
                  "please report it with this traceback:")
        err.out(run.traceback.rstrip(), highlight=False)
    elif run.traceback:
        err.print(f"graphexplain: {options.script} raised an error after "
                  f"{len(report.calls)} backward call(s); what was captured is reported above. "
                  "Its traceback:")
        err.out(run.traceback.rstrip(), highlight=False)
    if unwritten is not None and run.outcome != EXITED:
        return EXIT_USAGE
    return report.exit_code


def check_html(options, out_folder: str) -> Optional[str]:
    """The --html file's absolute path, checked as --json's is (before the
    script runs): never a folder, never a file of the user's without --force."""
    shown = getattr(options, "html", None)
    if shown is None:
        return None
    if not shown.strip():
        raise UsageError("--html was given an empty path; give it a file name.")
    path = os.path.abspath(shown)
    if os.path.isdir(path):
        raise UsageError(f"--html {shown!r} is a folder, not a file; give the name of a file to write.")
    folder = os.path.dirname(path)
    if folder == out_folder and not os.path.exists(folder):
        return path  # into the --out folder, which is made (and was checked) before the page is written
    if not os.path.isdir(folder):
        raise UsageError(f"--html {shown!r} cannot be written: the folder {os.path.dirname(shown)!r} does not exist.")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"--html {shown!r} is a file graphexplain cannot write; choose another --html file.")
        if not options.force and not _ours_html(path):
            raise UsageError(f"{shown!r} already exists and is not a page graphexplain wrote, so it was left "
                             "untouched. Choose another --html file, or pass --force to replace it.")
    elif not _writable(folder):
        raise UsageError(f"--html {shown!r} cannot be written: graphexplain cannot make files in {folder!r}.")
    return path


def _ours_html(path: str) -> bool:
    from .render.html import MARKER

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return MARKER in handle.read(4096)
    except OSError:
        return False


def _write_html(report, path: str, shown: str) -> None:
    from .render.html import page

    # only ever the --out folder (check_html)
    _written(lambda: os.makedirs(os.path.dirname(path), exist_ok=True), shown)
    text = page(report)

    def write():
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    _written(write, shown)


def sidecar_path(json_path: str) -> str:
    """Where --json-full puts the whole arrays: the JSON's path, .npz for .json.

    >>> sidecar_path("out/result.json"), sidecar_path("result")
    ('out/result.npz', 'result.npz')
    """
    root, extension = os.path.splitext(json_path)
    return (root if extension.lower() == ".json" else json_path) + ".npz"


def _write_json(report, path: str, shown: str, full: bool = False) -> bool:
    """The JSON, and with `full` the .npz sidecar of the arrays it summarises;
    whether a sidecar was written (only when something was summarised)."""
    from .render.json import Arrays

    # only ever the --out folder (_check_json)
    _written(lambda: os.makedirs(os.path.dirname(path), exist_ok=True), shown)
    out = Arrays(full=full)
    data = report.to_json(out)
    if out.arrays:
        data["arrays"] = os.path.basename(sidecar_path(path))

    def write_json():
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    _written(write_json, shown)
    if out.arrays:
        import numpy as np
        _written(lambda: np.savez(sidecar_path(path), **out.arrays), sidecar_path(shown))
    return bool(out.arrays)


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
    return trace(options, out, err, program=argv is None)  # None: the command line, sys.argv


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
