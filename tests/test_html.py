"""`graphexplain trace --html FILE`: one self-contained page, checked as
text (escaping, determinism, size, no dot, overwriting) and in a real
headless Chromium (tests/browser.py): it loads without an error and asks
for nothing from the network, its picture has the JSON's nodes, a click on
a node opens that node's step, and the first mismatch is open and linked
from the top."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest

from browser import Browser, find_chromium  # tests/ is on sys.path under pytest
from traced_reports import traced, wrong_momentum_report
from graphexplain.render.html import MARKER, fragment, text

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SCRIPTS = REPO / "tests" / "scripts"
PAGE_LIMIT = 2 * 1024 * 1024  # bytes: the bound on an example's page

NASTY = '<a&"b\'[bold]>'
NASTY_SCRIPT = f"""\
import torch

model = torch.nn.ModuleDict({{{NASTY!r}: torch.nn.Linear(2, 1)}})
inputs = torch.tensor([[1.0, 2.0]])
loss = (model[{NASTY!r}](inputs) * len({NASTY!r})).sum()  # {NASTY}
loss.backward()
print({NASTY!r})
"""

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="no chromium: install Debian's `chromium` package (make test does, as root) to run the HTML page "
           "in a headless browser")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")


@pytest.fixture(scope="module")
def pages(launch, tmp_path_factory):
    """Every example traced with --html and --json, started together; name → (run, folder)."""
    folder = tmp_path_factory.mktemp("pages")
    shutil.copytree(EXAMPLES, folder / "examples")
    started = {}
    for script in sorted(EXAMPLES.glob("*.py")):
        started[script.stem] = launch.graphexplain(
            "trace", "--quiet", "--out", f"out-{script.stem}", "--html", f"{script.stem}.html",
            "--json", f"{script.stem}.json", f"examples/{script.name}", cwd=folder)
    (folder / "wrong.py").write_text((SCRIPTS / "wrong_function.py").read_text(encoding="utf-8"), encoding="utf-8")
    started["wrong"] = launch.graphexplain("trace", "--quiet", "--out", "out-wrong", "--html", "wrong.html",
                                           "--json", "wrong.json", "wrong.py", "flipped", cwd=folder)
    started["grad_accumulation_all"] = launch.graphexplain(
        "trace", "--quiet", "--out", "out-all", "--call", "all", "--html", "grad_accumulation_all.html",
        "examples/grad_accumulation.py", cwd=folder)

    def get(name):
        return started[name].result(), folder

    return get


@pytest.mark.parametrize("example", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_every_example_writes_one_small_page(pages, example):
    run, folder = pages(example)
    assert f"html: {example}.html" in run.stdout, run.output
    page = (folder / f"{example}.html").read_bytes()
    assert len(page) < PAGE_LIMIT, f"{example}.html is {len(page)} bytes"
    words = page.decode("utf-8")
    assert MARKER in words and words.startswith("<!DOCTYPE html>")
    # offline: nothing to fetch (no src= or href= but a link inside the page, no @import or url())
    assert not re.search(r"""\b(?:src|href)=["'](?!#)""", words), "the page refers to something outside itself"
    assert "@import" not in words and not re.search(r"url\((?!#)", words)


def test_the_page_escapes_every_string_of_the_user(graphexplain_main, tmp_path):
    (tmp_path / "nasty.py").write_text(NASTY_SCRIPT, encoding="utf-8")
    run = graphexplain_main("trace", "--quiet", "--html", "nasty.html", "nasty.py")
    assert run.returncode == 0, run.output
    page = (tmp_path / "nasty.html").read_text(encoding="utf-8")
    assert NASTY not in page and "<a&" not in page
    assert html.escape(NASTY, quote=True) in page  # the code line, the module's name
    assert "[bold]" in page  # shown as it is: no markup language of ours reads it
    # every tag of the page is one of ours (or graphviz's SVG): none came from the user's text
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", page))
    assert not tags - {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "code", "table",
                       "tr", "th", "td", "main", "div", "details", "summary", "pre", "span", "script", "a", "svg",
                       "g", "polygon", "path", "text", "ellipse", "polyline", "math", "mrow", "mi", "mo", "mn",
                       "msup", "msub", "mfrac", "mtext", "msqrt", "mspace", "mfenced", "mover", "munder",
                       "mtable", "mtr", "mtd", "mstyle", "mroot", "munderover", "msubsup", "mpadded",
                       "section", "h3"}, tags


def test_the_same_run_gives_the_same_bytes(pages, graphexplain_main, tmp_path):
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    run = graphexplain_main("trace", "--quiet", "--html", "again.html", "examples/logistic_regression.py")
    assert run.returncode == 0, run.output
    _, folder = pages("logistic_regression")
    assert (tmp_path / "again.html").read_bytes() == (folder / "logistic_regression.html").read_bytes()


def test_without_dot_the_page_says_the_picture_is_missing(graphexplain_main, tmp_path, monkeypatch):
    shutil.copy(EXAMPLES / "autograd_mean.py", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    run = graphexplain_main("trace", "--quiet", "--format", "dot", "--html", "page.html", "autograd_mean.py")
    assert run.returncode == 0, run.output
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "The picture is missing" in page and "<svg" not in page
    assert page.count('class="gx-step') >= 3  # every step is still there


def test_a_file_of_the_users_is_not_overwritten(graphexplain_main, tmp_path):
    shutil.copy(EXAMPLES / "autograd_mean.py", tmp_path)
    (tmp_path / "mine.html").write_text("<p>my notes</p>\n", encoding="utf-8")
    run = graphexplain_main("trace", "--quiet", "--html", "mine.html", "autograd_mean.py")
    assert run.returncode == 2 and "is not a page graphexplain wrote" in run.stderr
    assert "Traceback" not in run.output and "my notes" in (tmp_path / "mine.html").read_text()
    assert not (tmp_path / "graphexplain-out").exists()  # refused before the script ran
    assert graphexplain_main("trace", "--quiet", "--html", "mine.html", "--force", "autograd_mean.py").returncode == 0
    assert graphexplain_main("trace", "--quiet", "--html", "mine.html", "autograd_mean.py").returncode == 0  # ours now
    for bad, says in (("nowhere/page.html", "does not exist"), (".", "is a folder"), (" ", "empty path")):
        run = graphexplain_main("trace", "--quiet", "--html", bad, "autograd_mean.py")
        assert run.returncode == 2 and says in " ".join(run.stderr.split()) and "Traceback" not in run.output, \
            run.output


def test_the_fragment_stands_alone():
    import torch
    import graphexplain

    w = torch.tensor([1.0, -2.0], requires_grad=True)
    loss = ((w * torch.tensor([0.5, 3.0])).sum() - 1.0) ** 2
    explanation = graphexplain.explain(loss)
    piece = fragment(explanation)
    assert piece.startswith('<div class="gx" id="gx-c1"') and "<style>" in piece and "<script>" in piece
    assert explanation._repr_html_() == piece == explanation.to_html()
    assert "<math" in piece  # formulas as MathML, printed by sympy
    assert text("<&>") == "&lt;&amp;&gt;"


# --- in a real browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if find_chromium() is None:
        pytest.skip("no chromium: install Debian's `chromium` package (make test does, as root)")
    with Browser.start(tmp_path_factory.mktemp("chromium")) as started:
        yield started


def _visible(browser, selector: str) -> bool:
    return browser.evaluate(f"""(function () {{
        var e = document.querySelector({json.dumps(selector)});
        if (!e) return false;
        var r = e.getBoundingClientRect();  // checkVisibility: not inside a closed <details> either
        return r.width > 0 && r.height > 0 && e.checkVisibility({{visibilityProperty: true}});
    }})()""")


@needs_chromium
@needs_dot
def test_the_page_works_in_a_browser(pages, browser, tmp_path):
    _, folder = pages("logistic_regression")
    document = json.loads((folder / "logistic_regression.json").read_text(encoding="utf-8"))
    call = document["backward_calls"][0]
    browser.open(folder / "logistic_regression.html")
    assert browser.problems == []
    assert {url for url in browser.requests} == {(folder / "logistic_regression.html").as_uri()}
    drawn = browser.evaluate("document.querySelectorAll('.gx-picture svg g.node[data-gx-node]').length")
    assert drawn == len(call["nodes"])
    everything = browser.evaluate("document.querySelectorAll('.gx-picture svg g.node').length")
    assert everything == len(call["nodes"]) + len(call["constants"])  # the constants are drawn, not steps
    node = next(n for n in call["nodes"] if n["source"] and n["op"] != "AccumulateGrad" and n["id"] > 0)
    step = f'.gx-step[data-gx-node="{node["id"]}"]'
    code = f"{step} table"
    assert not browser.evaluate(f"document.querySelector({json.dumps(step)}).open")
    assert not _visible(browser, code)  # folded until asked for
    browser.click(f'.gx-picture g.node[data-gx-node="{node["id"]}"]')
    assert browser.evaluate(f"document.querySelector({json.dumps(step)}).open")
    assert _visible(browser, code)
    shown = browser.evaluate(f"document.querySelector({json.dumps(step)}).innerText")
    assert node["source"]["code"].strip() in shown and node["op"] in shown
    assert browser.evaluate(f"document.querySelector('.gx-picture g.node[data-gx-node=\"{node['id']}\"]')"
                            ".classList.contains('gx-selected')")
    picture = browser.screenshot(tmp_path / "html-report.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    assert browser.problems == []


@needs_chromium
@needs_dot
def test_the_first_mismatch_is_open_and_linked_from_the_top(pages, browser):
    run, folder = pages("wrong")
    assert run.returncode == 1, run.output
    first = json.loads((folder / "wrong.json").read_text(encoding="utf-8"))["backward_calls"][0]["first_mismatch"]
    assert first is not None
    browser.open(folder / "wrong.html")
    assert browser.problems == []
    step = f'.gx-step[data-gx-node="{first}"]'
    assert browser.evaluate(f"document.querySelector({json.dumps(step)}).open")
    assert browser.evaluate(f"document.querySelector({json.dumps(step)}).innerText").count("✗") >= 2
    assert browser.evaluate(f"document.querySelector('g.node[data-gx-node=\"{first}\"]').classList"
                            ".contains('gx-first')")
    browser.evaluate(f"document.querySelector({json.dumps(step)}).open = false")
    browser.click(".gx-first-link a")
    assert browser.evaluate(f"document.querySelector({json.dumps(step)}).open")
    assert browser.evaluate("location.hash") == f"#gx-c1-step-{first}"


@needs_chromium
@needs_dot
def test_several_fragments_on_one_page_keep_to_themselves(pages, browser):
    _, folder = pages("grad_accumulation_all")
    browser.open(folder / "grad_accumulation_all.html")
    assert browser.problems == []
    calls = browser.evaluate("document.querySelectorAll('.gx').length")
    assert calls >= 2
    browser.click('#gx-c2 .gx-picture g.node[data-gx-node="0"]')
    assert browser.evaluate("document.querySelector('#gx-c2 .gx-step[data-gx-node=\"0\"]').open")
    assert not browser.evaluate("document.querySelector('#gx-c1 .gx-step[data-gx-node=\"0\"]').open")
    assert browser.evaluate("document.querySelectorAll('.gx[data-gx-ready]').length") == calls


@needs_chromium
@needs_dot
def test_the_adam_page_shows_the_update_in_a_browser(pages, browser):
    _, folder = pages("adam_regression")
    browser.open(folder / "adam_regression.html")
    assert browser.problems == []
    assert _visible(browser, "#gx-c1 .gx-updates")  # open from the start, below the steps
    shown = browser.evaluate("document.querySelector('#gx-c1 .gx-updates').innerText")
    assert "After backward call 1: the parameters' updates" in shown
    for line in ("exp_avg ←", "exp_avg_sq ←", "bias_correction1 =", "m_hat =", "v_hat =", "model.weight ←",
                 "gradients cleared by optimizer.zero_grad()"):
        assert line in shown, line
    # 8 lines per parameter, each with its formula
    assert browser.evaluate("document.querySelectorAll('#gx-c1 .gx-updates math').length") == 16
    assert browser.evaluate("document.querySelectorAll('#gx-c1 .gx-updates .gx-u-verified').length") == 8
    assert "✗" not in shown
    assert browser.problems == []


def test_the_renderer_imports_neither_torch_nor_sympy(launch, tmp_path):
    """Formulas come from derive/printing.py, loaded when a page is made (the derivation stage owns sympy)."""
    run = launch.python("-c", "import sys, graphexplain.render.html; "
                              "print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))", cwd=tmp_path).result()
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.output


def test_without_dot_the_notebook_has_html_and_no_picture(monkeypatch, tmp_path):
    import torch
    import graphexplain

    w = torch.tensor([2.0], requires_grad=True)
    explanation = graphexplain.explain((w * w).sum())
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    assert explanation._repr_svg_() is None and explanation._repr_png_() is None
    assert "The picture is missing" in explanation._repr_html_()


# --- the parameters' updates after an explained call (docs/optimizers.md) ------------------------------

def _updates(page: str) -> str:
    return page[page.index('<section class="gx-updates">'):page.index("</section>")]


def test_the_adam_page_shows_m_v_and_the_bias_corrections(pages):
    run, folder = pages("adam_regression")
    assert run.returncode == 0, run.output
    section = _updates((folder / "adam_regression.html").read_text(encoding="utf-8"))
    assert "<h3>After backward call 1: the parameters' updates</h3>" in section
    assert '<code>optimizer.step()</code>: Adam, <code>betas=(0.9, 0.999), eps=1e-08, lr=0.1</code> ' \
           "(adam_regression.py:19) <span class=\"gx-mark\">✓ verified</span>" in section
    for target in ("step ←", "exp_avg ←", "exp_avg_sq ←", "bias_correction1 =", "bias_correction2 =", "m_hat =",
                   "v_hat =", "model.weight ←", "model.bias ←"):
        assert f"<th>{target}</th>" in section, target
    assert "<code>(-0.007487) - 0.1*(-27.43)/(sqrt(752.4) + 1e-08)</code> = <code>[[0.09251]]</code>" in section
    assert "<msqrt>" in section and "<mfrac>" in section  # sympy's MathML, not the formula's text
    assert section.count('class="gx-u-verified"') == 8  # one ✓ per value torch stored
    assert "gradients cleared by <code>optimizer.zero_grad()</code> (adam_regression.py:20): " \
           "<code>model.bias</code>, <code>model.weight</code> (set to None)" in section


def test_a_wrong_update_is_a_cross_with_both_numbers(tmp_path):
    from graphexplain.render.html import page

    report = wrong_momentum_report(tmp_path)
    written = page(report)
    section = _updates(written)
    assert '<p class="gx-verdict gx-s-mismatch"><code>optimizer.step()</code>: SGD' in section
    row = next(r for r in section.split("<tr>") if r.startswith("<th>momentum_buffer ←</th>"))
    assert '<span class="gx-u-mismatch"><span class="gx-mark">✗ MISMATCH</span></span>' in row
    assert "w momentum_buffer at [0]: derived 1, torch 1.01" in row
    assert '<div class="gx-update gx-s-mismatch">' in section
    assert page(report) == written  # the same bytes every time


def test_unknown_optimizers_manual_updates_and_hostile_names(tmp_path):
    from graphexplain.render.html import page

    report = traced(tmp_path, f"""
        import torch
        model = torch.nn.ModuleDict({{{NASTY!r}: torch.nn.Linear(1, 1)}})
        optimizer = torch.optim.Adagrad(model.parameters(), lr=0.1)
        w = torch.tensor([0.5, -1.0], requires_grad=True)
        loss = model[{NASTY!r}](torch.ones(1)).sum() + (w ** 2).sum()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            w -= 0.1 * w.grad
    """)
    written = page(report)
    section = _updates(written)
    assert NASTY not in written and html.escape(NASTY, quote=True) in section
    assert "torch.optim.Adagrad has no rule" in section and "(torch's; not checked)" in section
    assert "<th>before</th>" in section and "<th>after</th>" in section
    assert "<th>t =</th><td><code>0.1 * w.grad = </code><code>[0.1, -0.2]</code>" in section
    assert "<code>0.5 - 0.1</code> = <code>[0.4, -0.8]</code>" in section
