"""The command line: `python -m graphexplain trace SCRIPT [ARGS...]`.

Runs that execute a script are real ``python -m graphexplain`` processes
(`SUBPROCESS_RUNS`), all started together when the first test asks for one,
since each pays for ``import torch``. Runs that stop before any script runs
(help, bad usage), or that must change the process itself (PATH without
graphviz, a broken rule), call `graphexplain.cli.main` in-process.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SCRIPTS = TESTS / "scripts"
AUTOGRAD_MEAN = REPO / "examples" / "autograd_mean.py"
PACKAGE = str(REPO / "graphexplain") + os.sep

USER_JSON = b'{"my": "own results", "keep": [1, 2, 3]}\n'
USER_NOTES = b"notes the user keeps in this folder\n"
BROKEN = "import torch\nx = torch.ones(2)\ny = x * * 2\nprint(y)\n"


def user_json(folder: Path) -> None:
    (folder / "result.json").write_bytes(USER_JSON)


def user_folder(folder: Path) -> None:
    (folder / "results").mkdir()
    (folder / "results" / "notes.txt").write_bytes(USER_NOTES)


# name → the arguments of one real `python -m graphexplain` run
SUBPROCESS_RUNS = {
    "help": ["--help"],  # also shows that `python -m graphexplain` works
    "raises": ["trace", SCRIPTS / "raises_after_backward.py"],
    "torch-raises": ["trace", "--quiet", SCRIPTS / "backward_twice.py"],
    "formats-and-argv": ["trace", "--format", "svg,pdf", SCRIPTS / "print_argv.py",
                         "--epochs", "3", "--out", "elsewhere", "-q"],
}


@dataclass(frozen=True)
class Finished:
    folder: Path  # where it ran
    run: object  # conftest.Run: args, returncode, stdout, stderr


@pytest.fixture(scope="module")
def cli(launch, tmp_path_factory):
    """``cli(name)`` waits for that run and returns it `Finished`. All the
    runs start together, in folders of their own, when the first test asks."""
    started = {}
    for name, args in SUBPROCESS_RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        started[name] = (folder, launch.graphexplain(*args, cwd=folder))
    # the same script under plain python, for its traceback
    folder = tmp_path_factory.mktemp("plain-torch-raises")
    started["plain-torch-raises"] = (folder, launch.python(SCRIPTS / "backward_twice.py", cwd=folder))

    def finished(name: str) -> Finished:
        folder, future = started[name]
        return Finished(folder, future.result())

    return finished


def frames(traceback_text: str):
    """(file, line) of every frame in a printed traceback."""
    return [(file, int(line)) for file, line in re.findall(r'File "([^"]+)", line (\d+)', traceback_text)]


def line_of(path: Path, code: str) -> int:
    lines = [n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(code)]
    assert len(lines) == 1, (code, lines)
    return lines[0]


# --- help and exit codes ----------------------------------------------------------


def assert_lists_every_exit_code(run):
    assert run.returncode == 0, run.stderr
    assert "trace" in run.stdout
    for code in range(6):
        assert re.search(rf"^\s+{code}\s+\w", run.stdout, re.MULTILINE), f"exit code {code} not in help"


def test_help_lists_every_exit_code(cli):
    run = cli("help").run
    assert run.args[1:3] == ("-m", "graphexplain")  # `python -m graphexplain` works
    assert run.stdout.startswith("usage: graphexplain")
    assert_lists_every_exit_code(run)


def test_trace_help_lists_every_exit_code(graphexplain_main):
    run = graphexplain_main("trace", "--help")
    assert run.stdout.startswith("usage: graphexplain trace")
    assert_lists_every_exit_code(run)


# --- bad usage: exit 2, one paragraph, nothing run --------------------------------


def assert_usage_error(run, *words):
    assert run.returncode == 2, run.output
    assert "Traceback" not in run.output
    message = run.stderr.strip()
    assert message.startswith("graphexplain: "), message
    assert "\n\n" not in message, "more than one paragraph"
    assert len(message.splitlines()) <= 6, message
    for word in words:
        assert word in " ".join(message.split()), (word, message)
    assert run.stdout == "", "graphexplain went on to run the script"


def test_missing_script(graphexplain_main):
    assert_usage_error(graphexplain_main("trace", "no_such_script.py"), "no_such_script.py", "no file")


def test_script_that_is_a_folder(graphexplain_main, tmp_path):
    (tmp_path / "a_folder").mkdir()
    assert_usage_error(graphexplain_main("trace", "a_folder"), "a_folder", "folder")


def test_script_with_a_syntax_error_names_the_line(graphexplain_main, tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN)
    assert_usage_error(graphexplain_main("trace", "broken.py"), "broken.py", "not valid Python", "line 3")


def test_existing_json_that_is_not_ours_is_left_untouched(graphexplain_main, tmp_path):
    user_json(tmp_path)
    assert_usage_error(graphexplain_main("trace", "--json", "result.json", SCRIPTS / "print_argv.py"),
                       "result.json", "--force")
    assert (tmp_path / "result.json").read_bytes() == USER_JSON
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_out_folder_with_a_users_file_is_left_untouched(graphexplain_main, tmp_path):
    user_folder(tmp_path)
    assert_usage_error(graphexplain_main("trace", "--out", "results", SCRIPTS / "print_argv.py"), "results", "--force")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["notes.txt"]
    assert (tmp_path / "results" / "notes.txt").read_bytes() == USER_NOTES


def test_out_that_is_a_file_is_left_untouched(graphexplain_main, tmp_path):
    (tmp_path / "results").write_bytes(USER_NOTES)
    assert_usage_error(graphexplain_main("trace", "--out", "results", SCRIPTS / "print_argv.py"), "results")
    assert (tmp_path / "results").read_bytes() == USER_NOTES


def test_bad_call_and_format_options(graphexplain_main, tmp_path):
    assert_usage_error(graphexplain_main("trace", "--call", "second", AUTOGRAD_MEAN), "--call")
    run = graphexplain_main("trace", "--format", "gif", AUTOGRAD_MEAN)
    assert run.returncode == 2 and "unknown format gif" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_force_writes_into_a_users_folder_without_removing_anything(graphexplain_main, tmp_path):
    user_folder(tmp_path)
    run = graphexplain_main("trace", "--force", "--quiet", "--out", "results", SCRIPTS / "print_argv.py")
    assert run.returncode == 0, run.output
    results = tmp_path / "results"
    assert (results / "notes.txt").read_bytes() == USER_NOTES
    assert (results / "call-1.dot").is_file() and (results / "call-1.png").is_file()


def test_rerun_into_graphexplains_own_folder_and_json(graphexplain_main, tmp_path):
    command = ("trace", "--quiet", "--json", "result.json", SCRIPTS / "print_argv.py")
    first = graphexplain_main(*command)
    assert first.returncode == 0, first.output
    second = graphexplain_main(*command)
    assert second.returncode == 0, second.output
    out = tmp_path / "graphexplain-out"
    assert (out / ".graphexplain").is_file()
    assert sorted(p.name for p in out.iterdir()) == [".graphexplain", "call-1.dot", "call-1.png"]
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "verified"


# --- what a run writes ---------------------------------------------------------


def test_formats_and_script_arguments(cli):
    outcome = cli("formats-and-argv")
    run = outcome.run
    assert run.returncode == 0, run.output
    # everything after SCRIPT is the script's, even words that look like our options
    assert "argv: ['--epochs', '3', '--out', 'elsewhere', '-q']" in run.stdout
    assert not (outcome.folder / "elsewhere").exists()
    out = outcome.folder / "graphexplain-out"
    assert sorted(p.name for p in out.iterdir()) == [".graphexplain", "call-1.dot", "call-1.pdf", "call-1.svg"]
    assert (out / "call-1.pdf").read_bytes().startswith(b"%PDF")
    assert "<svg" in (out / "call-1.svg").read_text(encoding="utf-8")
    assert (out / "call-1.dot").read_text(encoding="utf-8").startswith("digraph")
    assert "Backward call 1: loss.backward()" in run.stdout
    assert "✓ verified" in run.stdout


# --- the script's own problems --------------------------------------------------


def test_script_that_raises_after_a_backward_call(cli):
    run = cli("raises").run
    script = SCRIPTS / "raises_after_backward.py"
    assert run.returncode == 3, run.output
    # what was captured before the error is still explained
    assert "w.grad = [3.0, 3.0]" in run.stdout
    assert "Backward call 1: loss.backward()" in run.stdout
    assert re.search(r"All \d+ nodes and 1 leaf verified against torch", run.stdout)
    assert "raised an error" in run.stdout
    # the script's own traceback, as python would print it, without our frames
    assert "Traceback (most recent call last):" in run.stderr
    assert run.stderr.rstrip().endswith("ValueError: deliberate failure, grad was [3.0, 3.0]")
    assert frames(run.stderr) == [(str(script), line_of(script, "check(w.grad.tolist())")),
                                  (str(script), line_of(script, "raise ValueError"))]


def test_torch_error_in_the_script_has_no_graphexplain_frames(cli):
    run = cli("torch-raises").run
    script = SCRIPTS / "backward_twice.py"
    assert run.returncode == 3, run.output
    assert "Trying to backward through the graph a second time" in run.stdout
    assert "retain_graph=True" in run.stdout  # the plain-words explanation
    shown = frames(run.stderr)
    assert shown[0] == (str(script), line_of(script, "loss.backward()  # second call"))
    ours = [frame for frame in shown if frame[0].startswith(PACKAGE)]
    assert ours == [], "graphexplain's own frames in the script's traceback"
    assert run.stderr.rstrip().splitlines()[-1].startswith("RuntimeError: Trying to backward")
    # frame for frame what plain python prints (torch's own frames included)
    plain = cli("plain-torch-raises").run
    assert plain.returncode == 1
    assert [(Path(f).name, n) for f, n in shown] == [(Path(f).name, n) for f, n in frames(plain.stderr)]
    assert run.stderr.rstrip().splitlines()[-1] == plain.stderr.rstrip().splitlines()[-1]


def test_script_that_never_calls_backward(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", SCRIPTS / "no_backward.py")
    assert run.returncode == 4, run.output
    assert "loss = 5.0" in run.stdout
    text = " ".join(run.stdout.split())
    assert "without calling .backward()" in text and "no gradient to explain" in text
    assert "Traceback" not in run.output
    assert not (tmp_path / "graphexplain-out").exists()


def test_custom_autograd_function_has_no_rule(graphexplain_main):
    run = graphexplain_main("trace", SCRIPTS / "custom_function.py")
    assert run.returncode == 5, run.output
    assert "Traceback" not in run.output
    assert "x.grad = [6.0, 24.0]" in run.stdout
    block = run.stdout[run.stdout.index("CubeBackward"):]
    assert "no symbolic rule" in block
    assert "not derived; torch's number: [6, 24]" in block
    assert "no symbolic rule: CubeBackward" in " ".join(run.stdout.split())
    leaf = block[block.index("leaf x"):]
    assert "· unchecked" in leaf and "✓" not in leaf  # below the Function, only torch's numbers


def test_in_place_activations_are_derived_and_verified(graphexplain_main):
    """nn.LeakyReLU(inplace=True) and nn.CELU(inplace=True) record nodes of
    their own, which keep the result instead of the input they overwrote."""
    run = graphexplain_main("trace", SCRIPTS / "inplace_activations.py")
    assert run.returncode == 0, run.output
    for node in ("LeakyReluBackward1 — leaky relu in place", "CeluBackward1 — celu in place"):
        assert node in run.stdout
    assert "every node and leaf matches torch" in " ".join(run.stdout.split())


def test_script_that_exits_with_an_error_code(graphexplain_main):
    run = graphexplain_main("trace", "--quiet", SCRIPTS / "exits_nonzero.py")
    assert run.returncode == 2, run.output  # sys.exit(2): python's status, mirrored
    assert "exited with code 2" in " ".join(run.stderr.split())
    assert "Traceback" not in run.output


@pytest.mark.parametrize("args, why", [
    (["--call", "5", SCRIPTS / "three_calls.py"], "--call 5 is past the last call; choose 1 to 3"),
    ([SCRIPTS / "refused_and_caught.py"], "torch refused"),
])
def test_nothing_explained_is_not_verified(graphexplain_main, tmp_path, args, why):
    run = graphexplain_main("trace", "--quiet", "--json", "result.json", *args)
    assert run.returncode == 4, run.output
    assert "✓" not in run.stdout and "verified —" not in run.stdout
    assert why in " ".join(run.stderr.split())
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "nothing-explained" and result["exit_code"] == 4


# --- in-process: things a subprocess cannot easily arrange ---------------------------


def test_missing_dot_program_still_writes_the_dot_source(tmp_path, monkeypatch, capsys):
    from graphexplain import cli as command_line

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere on it
    code = command_line.main(["trace", "--quiet", "--format", "png,svg", str(AUTOGRAD_MEAN)])
    output = capsys.readouterr()
    assert code == 0, output
    out = tmp_path / "graphexplain-out"
    assert sorted(p.name for p in out.iterdir()) == [".graphexplain", "call-1.dot"]
    message = " ".join(output.err.split())
    assert "graphviz" in message and "install" in message.lower()
    assert "apt-get install graphviz" in message or "brew install graphviz" in message
    assert message.count("graphviz's `dot` program is not installed") == 1  # said once, not per format
    assert "Traceback" not in output.out + output.err


@pytest.fixture
def broken_mul_rule(monkeypatch):
    """MulBackward0's row replaced by one whose forward is self + other, so
    every derived multiplication gradient is wrong."""
    from graphexplain import rules
    from graphexplain.derive import formula

    def clear_caches():
        for value in vars(formula).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()

    clear_caches()
    wrong = replace(rules.TABLE["MulBackward0"], forward="self + other")
    monkeypatch.setitem(rules.TABLE, "MulBackward0", wrong)
    yield wrong
    monkeypatch.undo()
    clear_caches()


def test_mismatch_exits_1_and_names_the_first_node(broken_mul_rule, tmp_path, monkeypatch, capsys):
    from graphexplain import cli as command_line

    monkeypatch.chdir(tmp_path)
    code = command_line.main(["trace", "--json", "result.json", str(AUTOGRAD_MEAN)])
    output = capsys.readouterr()
    assert code == 1, output.out[-3000:]
    text = " ".join(output.out.split())
    # z = mean(y * y * 2): the mean is right, the first multiplication is the first wrong node
    assert "first disagrees with torch at step 2, y * y * 2 [MulBackward0]" in text
    assert "✗ mismatch" in output.out
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "mismatch" and result["exit_code"] == 1
    [call] = result["backward_calls"]
    assert call["first_mismatch"] == 1
    assert [node["status"] for node in call["nodes"]][:2] == ["verified", "mismatch"]


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    [entry] = [e for e in entry_points(group="console_scripts") if e.name == "graphexplain"]
    assert entry.value == "graphexplain.cli:main"


def test_quiet_lists_every_call_with_its_verdict(graphexplain_main):
    """--quiet prints no walkthrough, so each explained call has a row of its own with its verdict."""
    run = graphexplain_main("trace", "--quiet", "--format", "dot", "--call", "all", SCRIPTS / "three_calls.py")
    assert run.returncode == 0, run.output
    rows = [line.split() for line in run.stdout.splitlines() if line.strip()[:1] in "123"]
    assert [row[0] for row in rows] == ["1", "2", "3"] and all(row[-2:] == ["✓", "verified"] for row in rows)
    wrong = graphexplain_main("trace", "--quiet", "--format", "dot", SCRIPTS / "wrong_function.py", "scaled")
    assert wrong.returncode == 1, wrong.output
    assert "✗ MISMATCH at step" in wrong.stdout


def test_output_to_a_file_has_no_padded_lines(graphexplain_main):
    run = graphexplain_main("trace", "--format", "dot", AUTOGRAD_MEAN)
    assert run.returncode == 0, run.output
    assert "1. z  MeanBackward0" in run.stdout
    assert [line for line in run.stdout.splitlines() if line.endswith(" ")] == []


def test_unpadded_trims_whole_lines_only():
    import io

    from graphexplain.render.terminal import Unpadded

    sink = io.StringIO()
    file = Unpadded(sink)
    file.write("a  ")  # the line's end has not come: nothing trimmed, nothing written yet
    file.write("b   \nc   \n  d")
    assert sink.getvalue() == "a  b\nc\n"
    file.flush()
    assert sink.getvalue() == "a  b\nc\n  d"
