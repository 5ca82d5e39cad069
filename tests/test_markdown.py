"""`--markdown FILE` and the printers behind it (derive/printing.py): formulas
are sympy's LaTeX / MathML, user text is escaped, pictures resolve, and a
mismatch shows as ✗ with both numbers."""

from __future__ import annotations

import random
import re

import pytest

from graphexplain.derive.printing import to_latex, to_mathml

# --- derive/printing.py ---------------------------------------------------------------------

# (formula string as the records hold it, the user's names in it, the LaTeX sympy prints)
PRINTED = [
    ("4*(x + 2)/3", ["x"], r"\frac{4 \left(x + 2\right)}{3}"),
    ("2*(y * y)", ["y * y", "y"], r"2 \left(\mathtt{y\ *\ y}\right)"),
    ("mean(y * y * 2)", ["y * y * 2", "y * y", "y"], r"\operatorname{mean}{\left(\mathtt{y\ *\ y\ *\ 2} \right)}"),
    ("y**2", ["y"], r"y^{2}"),
    ("(y_hat - y)**2", ["y_hat", "y"], r"\left(\mathtt{y\_hat} - y\right)^{2}"),
    ("X*t(model.weight) + model.bias", ["X", "t(model.weight)", "model.bias"],
     r"X \mathtt{t(model.weight)} + \mathtt{model.bias}"),
    ("alpha*mat1.T*G", [], r"\alpha \mathtt{mat1}^{T} G"),  # a matrix product keeps its order
    ("G*t(model.head.weight).T", ["t(model.head.weight)"], r"G \mathtt{t(model.head.weight)}^{T}"),
    ("mul#12 + x[0]", ["mul#12", "x[0]"], r"\mathtt{mul\#12} + \mathtt{x[0]}"),
    ("1/3", [], r"\frac{1}{3}"),
    ("∂y/∂x = 1", ["x", "y"], r"\frac{\partial y}{\partial x} = 1"),
    ("Piecewise((1, self > 0), (0, True))", [],
     r"\begin{cases} 1 & \text{for}\: \mathtt{self} \gt  0 \\0 & \text{otherwise} \end{cases}"),
]


@pytest.mark.parametrize("text,names,latex", PRINTED, ids=[case[0] for case in PRINTED])
def test_latex_is_what_sympy_prints(text, names, latex):
    assert to_latex(text, names) == latex


@pytest.mark.parametrize("text,names,latex", PRINTED, ids=[case[0] for case in PRINTED])
def test_mathml_is_well_formed(text, names, latex):
    from xml.dom import minidom

    shown = to_mathml(text, names)
    # HTML's named entities (&InvisibleTimes;) are not XML's: as character references for the XML parser
    document = minidom.parseString(re.sub(r"&(?!lt;|gt;|amp;|#)[A-Za-z]+;", "&#8290;", shown))
    assert document.documentElement.tagName == "math" and f"<mtext>{text}" not in shown, shown


def test_mathml_names_are_one_escaped_identifier():
    shown = to_mathml("2*(a<b & c)", ["a<b & c"])
    assert shown.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML">')
    assert '<mi mathvariant="monospace">a&lt;b &amp; c</mi>' in shown


def test_mathml_keeps_a_product_unexpanded():
    shown = to_mathml("4*(x + 2)/3", ["x"])
    assert "<mfrac>" in shown and "<mn>8</mn>" not in shown


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hacked')",
    "open('f').read()", "lambda: 1", "x.__class__", "[1, 2] * 3", "'a string'",
    "1 where result[k] was taken from self[j], else 0", "Σ_{n, i, j} G[n, o, i, j], each into w[o]",
    "", "((((", "1 +", "x if y else z",
])
def test_anything_else_is_escaped_text_never_code(text, capsys):
    latex, mathml = to_latex(text), to_mathml(text)
    assert latex.startswith(r"\text{") and mathml.count("<mtext>") == 1
    assert "hacked" not in capsys.readouterr().out
    assert not re.search(r"(?<!\\)[<>|]", latex)  # safe in a Markdown table cell


def test_a_statement_keeps_the_parts_that_parse():
    assert to_latex("∂y/∂x = 1 where result[k] was taken from x[j]", ["x", "y"]) == \
        r"\frac{\partial y}{\partial x} = \text{1 where result[k] was taken from x[j]}"


def test_a_builtins_name_is_only_a_name():
    """Every name is bound to a sympy Function or Symbol before parsing: `exit()` is printed, not run."""
    assert to_latex("exit() + print(x)", ["x"]) == r"\operatorname{exit}{\left( \right)} + \operatorname{print}{\left(x \right)}"


def test_printers_never_raise_on_noise():
    alphabet = "xy_*+-/()[]., 0123456789#'\"<>|&$\\{}^~∂Σ=T"
    rng = random.Random(11)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(2)]
        assert isinstance(to_latex(text, names), str) and isinstance(to_mathml(text, names), str)


# --- render/markdown.py and `trace --markdown` -----------------------------------------------

import dataclasses  # noqa: E402
import shutil  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

from graphexplain import rules  # noqa: E402
from graphexplain.render.markdown import MARKER, code, text  # noqa: E402
from traced_reports import traced, wrong_momentum_report  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PICTURE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _cells(row: str) -> list:
    """A Markdown table row's cells, split where GitHub splits: on `|` not escaped."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _tables_are_whole(page: str) -> None:
    """Every row of every table has as many cells as its header: no `|` of the user's split one."""
    width = None
    for line in page.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        if width is None:
            width = len(_cells(line))
        assert len(_cells(line)) == width, line


def test_the_renderer_imports_neither_torch_nor_sympy(launch, tmp_path):
    """Only the derivation stage imports sympy: the page asks derive/printing.py, when it prints."""
    run = launch.python("-c", "import sys, graphexplain.render.markdown; "
                              "print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))", cwd=tmp_path).result()
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr


@pytest.fixture
def autograd_mean(graphexplain_main, tmp_path):
    shutil.copy(EXAMPLES / "autograd_mean.py", tmp_path / "autograd_mean.py")
    (tmp_path / "posts").mkdir()
    run = graphexplain_main("trace", "--out", "site/pictures", "--markdown", "posts/post.md", "autograd_mean.py")
    assert run.returncode == 0, run.output
    return tmp_path / "posts" / "post.md", run


def test_an_example_as_markdown(autograd_mean):
    path, run = autograd_mean
    page = path.read_text(encoding="utf-8")
    assert page.startswith(MARKER + "\n") and "markdown: posts/post.md" in run.stdout
    assert "## Backward call 1: `z.backward()` (autograd\\_mean.py:20)" in page
    assert "### 1. `z` — `MeanBackward0`, mean of all elements" in page
    # formulas are sympy's LaTeX: the leaf's composed gradient, a local gradient with its numbers
    assert r"$\frac{\partial z}{\partial x} = \frac{4 \left(x + 2\right)}{3}$ = `[3.328, 3.691, 2.785]`" in page
    assert r"| local | $\frac{\partial z}{\partial \mathtt{y\ *\ y\ *\ 2}} = \frac{1}{N} = \frac{1}{3}$ = `0.3333` |" \
        in page
    assert "| chain → `y * y` | `[0.3333, 0.3333, 0.3333]` × `2` = `[0.6667, 0.6667, 0.6667]` |" in page
    assert "| torch | `[0.6667, 0.6667, 0.6667]` |" in page
    assert page.count("| status | **✓ verified** |") == 5
    assert "**✓ All 5 nodes and 1 leaf verified against torch.**" in page
    _tables_are_whole(page)
    assert "```python" not in page and "```console" not in page  # nothing test_docs would run


def test_the_picture_path_is_relative_to_the_page_and_resolves(autograd_mean):
    path, _ = autograd_mean
    (picture,) = PICTURE.findall(path.read_text(encoding="utf-8"))
    assert picture == "../site/pictures/call-1.png"
    assert (path.parent / picture).resolve().is_file()


def test_the_page_is_the_same_on_every_run(autograd_mean, graphexplain_main):
    path, _ = autograd_mean
    first = path.read_bytes()
    run = graphexplain_main("trace", "--out", "site/pictures", "--markdown", "posts/post.md", "autograd_mean.py")
    assert run.returncode == 0 and path.read_bytes() == first  # ours: rewritten without --force, identically


def test_a_file_graphexplain_did_not_write_is_never_replaced(graphexplain_main, tmp_path):
    shutil.copy(EXAMPLES / "autograd_mean.py", tmp_path / "autograd_mean.py")
    mine = tmp_path / "notes.md"
    mine.write_text("# my own notes\n", encoding="utf-8")
    run = graphexplain_main("trace", "--markdown", "notes.md", "autograd_mean.py")
    assert run.returncode == 2 and "'notes.md' already exists and is not a page graphexplain wrote" in run.stderr
    assert "--force" in run.stderr and "Traceback" not in run.stderr
    assert mine.read_text(encoding="utf-8") == "# my own notes\n"
    assert not (tmp_path / "graphexplain-out").exists()  # refused before the script ran
    run = graphexplain_main("trace", "--force", "--markdown", "notes.md", "autograd_mean.py")
    assert run.returncode == 0 and mine.read_text(encoding="utf-8").startswith(MARKER)


@pytest.mark.parametrize("argument,words", [
    ("", "empty path"), ("missing/notes.md", "does not exist"), (".", "is a folder"),
])
def test_a_markdown_path_that_cannot_be_written_is_refused_in_one_line(graphexplain_main, tmp_path, argument, words):
    shutil.copy(EXAMPLES / "autograd_mean.py", tmp_path / "autograd_mean.py")
    run = graphexplain_main("trace", "--markdown", argument, "autograd_mean.py")
    message = " ".join(run.stderr.split())
    assert run.returncode == 2 and words in message and message.count("graphexplain:") == 1, run.stderr
    assert "Traceback" not in message and not (tmp_path / "graphexplain-out").exists()


def test_a_hostile_scripts_names_are_escaped(graphexplain_main, tmp_path):
    """Module and parameter names may hold any character but a dot: each
    prints as written, breaks no table, opens no link, tag or emphasis."""
    hostile = "w|i*r_d`[bold]<i>&amp;$x$"
    (tmp_path / "hostile.py").write_text(textwrap.dedent(f"""
        import torch
        from torch import nn

        torch.manual_seed(0)
        model = nn.Sequential()
        model.add_module({hostile!r}, nn.Linear(2, 1))
        loss = model(torch.ones(3, 2)).tanh().sum()
        loss.backward()
    """), encoding="utf-8")
    run = graphexplain_main("trace", "--format", "dot", "--markdown", "post.md", "hostile.py")
    assert run.returncode == 0, run.output
    page = (tmp_path / "post.md").read_text(encoding="utf-8")
    _tables_are_whole(page)
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", page)  # a code span shows its text as it is
    formulas = re.findall(r"(?<!\\)\$.*?(?<!\\)\$", outside_code)
    assert formulas and not any("`" in formula for formula in formulas)  # no backtick in $…$ to pair with
    prose = re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", outside_code)
    assert "<i>" not in prose and "[bold]" not in prose.replace("\\[bold\\]", "")
    assert "&amp;amp;" in page or r"\&amp;" in page  # the name's own "&amp;" is text, not an entity
    module_row = next(line for line in page.splitlines() if line.startswith("| module |"))
    assert _cells(module_row)[1].startswith("`") and "\\|" in module_row
    assert "`0`" not in page.split("gradient seeded")[0]  # no picture: --format dot draws none, and it says so
    assert "No picture: --format dot draws none" in page
    markdown_it = pytest.importorskip("markdown_it")  # rich's own dependency: a CommonMark parser with GFM tables
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(page)
    assert "<i>" not in html and "<a " not in html, html
    assert all(row.count("<td") in (0, 2) for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S))
    assert "w|i*r_d`[bold]&lt;i&gt;&amp;amp;$x$" in html  # the name, as written, in the rendered page


def test_markdown_escaping_of_plain_text_and_code():
    assert text("a*b_c [bold] <i> x|y & `q` $1") == r"a\*b\_c \[bold\] &lt;i&gt; x\|y &amp; \`q\` \$1"
    assert code("a`b") == "``a`b``" and code("`a") == "`` `a ``" and code("x|y") == r"`x\|y`"
    assert code("x|y", table=False) == "`x|y`"


def test_a_mismatch_is_a_cross_with_both_numbers(graphexplain_main, tmp_path, monkeypatch):
    row = rules.TABLE["TanhBackward0"]
    monkeypatch.setitem(rules.TABLE, "TanhBackward0", dataclasses.replace(row, forward="tanh(self)*1.001"))
    (tmp_path / "tanh.py").write_text(textwrap.dedent("""
        import torch
        x = torch.tensor([0.3, 0.8], dtype=torch.float64, requires_grad=True)
        (x.tanh() * 2).sum().backward()
    """), encoding="utf-8")
    run = graphexplain_main("trace", "--format", "dot", "--markdown", "post.md", "tanh.py")
    assert run.returncode == 1, run.output
    page = (tmp_path / "post.md").read_text(encoding="utf-8")
    node = page[page.index("`TanhBackward0`"):]
    node = node[:node.index("\n\n###")]
    check = next(line for line in node.splitlines() if line.startswith("| check |"))
    found = re.search(r"derived (-?[\d.e+-]+), torch (-?[\d.e+-]+)", check)
    assert found and found.group(1) != found.group(2), check
    assert "| status | **✗ MISMATCH** |" in node
    assert "| chain → `x` |" in node and "| torch |" in node  # the derived and torch's numbers, side by side
    assert page.splitlines()[4].startswith("**✗ mismatch")


# --- the parameters' updates after an explained call (docs/optimizers.md) ------------------------------

def _section(page: str, heading: str) -> str:
    part = page[page.index(heading):]
    following = part.find("\n## ", 1)
    return part if following < 0 else part[:following]


def test_the_adam_example_shows_its_update_as_the_terminal_does(graphexplain_main, tmp_path):
    shutil.copy(EXAMPLES / "adam_regression.py", tmp_path / "adam_regression.py")
    run = graphexplain_main("trace", "--format", "dot", "--markdown", "post.md", "adam_regression.py")
    assert run.returncode == 0, run.output
    page = (tmp_path / "post.md").read_text(encoding="utf-8")
    section = _section(page, "## After backward call 1: the parameters' updates")
    assert "`optimizer.step()`: Adam, `betas=(0.9, 0.999), eps=1e-08, lr=0.1` (adam\\_regression.py:19): " \
           "**✓ verified**" in section
    assert "### `model.weight` (1, 1)" in section and "### `model.bias` (1,)" in section
    # m, v, the bias corrections and the step, each as sympy's LaTeX, its numbers and its value
    assert r"| `exp_avg` ← | $\mathtt{exp\_avg} + \left(\mathtt{grad} - \mathtt{exp\_avg}\right) \left(1 - " \
           r"\mathtt{beta1}\right)$ = `0 + ((-27.43) - 0)*(1 - 0.9)` = `[[-2.743]]` ✓ verified |" in section
    assert r"| `bias_correction2` = | $1 - \mathtt{beta2}^{\mathtt{step}}$ = `1 - 0.999**1` = `0.001` |" in section
    assert r"| `model.weight` ← | $\mathtt{model.weight} - \frac{\mathtt{lr} \mathtt{m\_hat}}" \
           r"{\sqrt{\mathtt{v\_hat}} + \mathtt{eps}}$ = `(-0.007487) - 0.1*(-27.43)/(sqrt(752.4) + 1e-08)` = `[[0.09251]]` ✓ verified |" \
        in section
    # one ✓ per value torch stored (step, exp_avg, exp_avg_sq, the parameter), per parameter; none on the rest
    assert section.count(" ✓ verified |") == 8 and section.count("| status | **✓ verified** |") == 2
    assert "Gradients cleared by `optimizer.zero_grad()` (adam\\_regression.py:20): `model.bias`, " \
           "`model.weight` (set to None)." in section
    _tables_are_whole(page)
    assert page.index("## Backward call 1") < page.index("## After backward call 1") < \
        page.index("## Other backward calls")


def test_a_wrong_update_is_a_cross_with_both_numbers(tmp_path):
    from graphexplain.render.markdown import to_markdown

    report = wrong_momentum_report(tmp_path)
    page = to_markdown(report)
    section = _section(page, "## After backward call 1")
    assert "`optimizer.step()`: SGD, `lr=0.1, momentum=0.9` (script.py:6): **✗ MISMATCH**" in section
    row = next(line for line in section.splitlines() if line.startswith("| `momentum_buffer` ←"))
    assert "**✗ MISMATCH w momentum\\_buffer at \\[0\\]: derived 1, torch 1.01" in row
    assert "| `w` ← |" in section and "| status | **✗ MISMATCH** |" in section
    assert page.splitlines()[4].startswith("**✗ mismatch")
    assert to_markdown(report) == page  # the same bytes every time
    _tables_are_whole(page)


def test_manual_updates_and_unknown_optimizers(tmp_path):
    from graphexplain.render.markdown import to_markdown

    report = traced(tmp_path, """
        import torch
        w = torch.tensor([0.5, -1.0], requires_grad=True)
        weird = torch.nn.Parameter(torch.tensor([2.0]))
        optimizer = torch.optim.Adagrad([weird], lr=0.1)
        loss = (w ** 2).sum() + (weird * 3).sum()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            w -= 0.1 * w.grad
        w.grad = None
    """)
    section = _section(to_markdown(report), "## After backward call 1")
    assert "torch.optim.Adagrad has no rule" in section
    assert "| before | `[2]` |" in section and "(torch's; not checked)" in section
    assert "| status | **? no symbolic rule** |" in section
    assert "`w -= 0.1 * w.grad`: the script's own update under torch.no_grad() (script.py:10): **✓ verified**" \
        in section
    assert "| t | `0.1 * w.grad = [0.1, -0.2]` |" in section
    assert "| `w` ← | $w - t$ = `0.5 - 0.1` = `[0.4, -0.8]` ✓ verified |" in section
    assert "Gradients cleared (grad = None): `w` (set to None)." in section
    _tables_are_whole(section)


def test_a_hostile_parameter_name_in_the_update_is_escaped(tmp_path):
    from graphexplain.render.markdown import to_markdown

    report = traced(tmp_path, """
        import torch
        model = torch.nn.ModuleDict({"a|b*c_[d]": torch.nn.Linear(1, 1)})
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model["a|b*c_[d]"](torch.ones(1)).sum().backward()
        optimizer.step()
    """)
    section = _section(to_markdown(report), "## After backward call 1")
    assert "### `model.a|b*c_[d].weight` (1, 1)" in section  # code outside a table needs no escaping
    assert "| `model.a\\|b*c_[d].weight` ← | $" in section  # in a cell, its `|` escaped
    _tables_are_whole(section)
