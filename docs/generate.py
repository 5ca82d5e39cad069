"""Regenerate the parts of the docs that show graphexplain's real output.

    python docs/generate.py          # rewrite docs/tutorial.md, docs/images/, README excerpt
    python docs/generate.py --check  # exit 1 if any of them is out of date (the tests run this)

Every example of examples/ is traced in this process by `graphexplain trace
--markdown` itself (graphexplain.cli.main), and the Markdown page it writes,
the walkthrough with formulas in $…$ LaTeX and the picture linked, is the
example's section of the tutorial, after the prose written here. Pictures are
checked through their DOT source; the PNG is redrawn from it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
README = ROOT / "README.md"
EXCERPT_START, EXCERPT_END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Section:
    example: str
    title: str
    text: str
    call: str = "first"
    args: tuple = ()


SECTIONS = (
    Section("autograd_mean", "Autograd: `y = x + 2; z = y*y*2; z = z.mean()`",
            "The notes' first autograd example. `z.backward()` runs the chain rule from `z` back "
            "to `x`: the mean contributes 1/N, each product its other factor, the addition 1. "
            "graphexplain derives each of these with sympy from the op's forward formula, "
            "multiplies them along the graph, and composes the whole gradient: 4(x + 2)/3."),
    Section("vector_jacobian", "Vector-Jacobian products: `z.backward(v)`",
            "Without the mean, `z` has three elements and `backward()` needs a vector `v` of the "
            "same shape (without it torch raises *grad can be implicitly created only for scalar "
            "outputs*, and graphexplain explains that error in plain words). What torch computes "
            "is vᵀ·J; graphexplain shows J itself, row by row, and checks vᵀ·J against `x.grad`."),
    Section("stop_gradients", "Stopping gradients: `requires_grad_(False)`, `.detach()`, `torch.no_grad()`",
            "Each way of stopping gradients makes a constant: a tensor that feeds the graph but "
            "receives no gradient. The walkthrough lists them with the reason, and the picture draws "
            "them as dashed notes.", call="all"),
    Section("grad_accumulation", "Gradient accumulation and zeroing",
            "`.grad` is added to, not replaced: the second call's walkthrough shows the value "
            "already there, this call's gradient, and their sum. The other calls are listed one "
            "line each; `--call N` explains any of them.", call="2"),
    Section("backprop_by_hand", "Backpropagation by hand: `y_hat = w*x; loss = (y_hat - y)**2`",
            "The notes' three steps: the forward pass, the local gradients (∂loss/∂s = 2s, "
            "∂s/∂y_hat = 1, ∂y_hat/∂w = x), and the backward pass multiplying them: "
            "∂loss/∂w = 2x(wx − y) = −2."),
    Section("gradient_descent", "Gradient descent: numpy by hand, then autograd",
            "The numpy half computes dJ/dw by hand; the autograd half lets torch do it. The "
            "example checks at the first step that both agree. Of the 20 backward calls the "
            "first is explained; the rest are listed with their loss and gradient norm."),
    Section("training_pipeline", "The training pipeline: `nn.Linear`, `nn.MSELoss`, `torch.optim.SGD`",
            "`nn.Linear` becomes an `addmm` node (X·Wᵀ + b), explained in matrix form with sympy's "
            "matrix calculus; nodes made inside a module are labelled with the module's name and "
            "drawn inside a box for it."),
    Section("linear_regression", "Linear regression", "100 samples from `make_regression`, "
            "100 epochs. Large tensors are summarised (shape, first values, norm); every element "
            "is still checked.", args=("{tmp}/linear_regression.png",)),
    Section("logistic_regression", "Logistic regression",
            "`torch.sigmoid` and `nn.BCELoss` on the breast-cancer data. The binary cross-entropy's "
            "local gradient (self − target)/(self(1 − self))/N is derived by sympy from its forward "
            "formula, then multiplied by the sigmoid's."),
)


def _trace(section: Section, tmp: str):
    from graphexplain.capture.intercept import Selection
    from graphexplain.capture.runner import run_script
    from graphexplain.report import Report

    args = [a.format(tmp=tmp) for a in section.args]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        from contextlib import redirect_stdout
        import io
        with redirect_stdout(io.StringIO()):  # the example's own prints are not the point here
            run = run_script(f"examples/{section.example}.py", args, Selection.parse(section.call))
    finally:
        os.chdir(cwd)
    return Report.of(run)


def _markdown(section: Section, tmp: str):
    """`graphexplain trace --markdown` on the example, run as the CLI runs
    it: the page's body (its headings one level down, under the section's)
    and the DOT source of each picture, by the name docs/images/ gives it."""
    from contextlib import redirect_stderr, redirect_stdout
    import io
    import re
    from graphexplain.cli import main
    from graphexplain.render.markdown import MARKER

    out, page = Path(tmp) / section.example, Path(tmp) / f"{section.example}.md"
    argv = ["trace", "--no-color", "--width", "80", "--quiet", "--format", "png", "--out", str(out),
            "--markdown", str(page)] + (["--call", section.call] if section.call != "first" else [])
    argv += [f"examples/{section.example}.py", *(a.format(tmp=tmp) for a in section.args)]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        printed = io.StringIO()
        with redirect_stdout(printed), redirect_stderr(printed):  # the example's own prints are not the point here
            code = main(argv)
    finally:
        os.chdir(cwd)
    if code != 0:
        raise SystemExit(f"graphexplain trace {' '.join(argv)} exited with {code}:\n{printed.getvalue()}")
    text = page.read_text(encoding="utf-8")
    dots = {}
    for index in re.findall(rf"\]\({re.escape(section.example)}/call-(\d+)\.png\)", text):
        stem = f"{section.example}-call-{index}"
        dots[IMAGES / f"{stem}.dot"] = (out / f"call-{index}.dot").read_bytes()
        text = text.replace(f"]({section.example}/call-{index}.png)", f"](images/{stem}.png)")
    lines = text.splitlines()
    assert lines[0] == MARKER and lines[2].startswith("# graphexplain: "), lines[:3]
    body, fenced = [], False
    for line in lines[4:]:  # after the marker and the page's own title
        fenced = fenced != line.startswith("```")
        body.append("#" + line if line.startswith("#") and not fenced else line)
    return "\n".join(body).strip("\n") + "\n", dots


def build() -> Dict[Path, bytes]:
    """Every generated file and its content."""
    from graphexplain.render.terminal import report_text

    files: Dict[Path, bytes] = {}
    parts: List[str] = [
        "# The notes, explained\n",
        "<!-- Generated by docs/generate.py from examples/; do not edit by hand. -->\n",
        "Each section of the PyTorch study notes has a runnable example in `examples/`. Below is "
        "what `graphexplain trace --markdown` writes for it: the walkthrough, node by node, with the "
        "formulas as sympy prints them in LaTeX, and the picture it draws. Every number in them was "
        "derived by sympy from the ops' forward formulas and checked against torch.\n",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for number, section in enumerate(SECTIONS, 1):
            option = f" --call {section.call}" if section.call != "first" else ""
            parts.append(f"## {number}. {section.title}\n")
            parts.append(f"{section.text}\n")
            parts.append(f"```console\n$ graphexplain trace{option} --markdown notes.md "
                         f"examples/{section.example}.py\n```\n")
            body, dots = _markdown(section, tmp)
            parts.append(body)
            files.update(dots)
            if section.example == "autograd_mean":
                files[README] = _readme_with_excerpt(report_text(_trace(section, tmp), 80)).encode("utf-8")
    files[DOCS / "tutorial.md"] = "\n".join(parts).encode("utf-8")
    files.update(big_graphs())
    return files


@dataclass(frozen=True)
class BigGraph:
    script: str  # under tests/scripts/
    title: str
    text: str
    options: tuple = ()  # graphexplain trace's, as the page shows them


BIG_GRAPHS = (
    BigGraph("transformer_encoder", "A 6-layer `nn.TransformerEncoder` language model",
             "d_model 128, four heads, an embedding before and a linear head after: 347 nodes. The six "
             "layers have the same ops, so they are one box, `model.encoder.layers.0–5`, "
             "TransformerEncoderLayer ×6. The attention's fused kernel has no symbolic rule, so the box "
             "says so, and what lies below it carries torch's numbers only. `--depth 4` opens the layer "
             "(drawn once, its submodules as boxes ×6); `--expand encoder.layers.5` draws the last layer "
             "node by node, apart from the other five, and prints its steps."),
    BigGraph("resnet18", "A ResNet-18", "Written out in the script (no torchvision): a stem, four stages of two "
             "basic blocks (conv, batch norm, relu, conv, batch norm, shortcut), a linear head. Its 133 "
             "nodes are under the node threshold, but 65 ops one after another are too tall a picture, so "
             "it is drawn by module by default, one level open; `--depth 2` opens the stages. The two "
             "blocks of the first stage are alike (×2); so are the last three stages (×3): the same ops on "
             "more channels.",
             ("--depth", "2")),
)


def big_graphs() -> Dict[Path, bytes]:
    """docs/big-graphs.md and its pictures, from the scripts of tests/scripts/."""
    from graphexplain.capture.intercept import Selection
    from graphexplain.capture.runner import run_script
    from graphexplain.cli import parser
    from graphexplain.render.collapse import TALL, THRESHOLD, View
    from graphexplain.render.dot import to_dot
    from graphexplain.render.terminal import _plain_text, walkthrough
    from graphexplain.report import Report
    from contextlib import redirect_stdout
    import io

    files: Dict[Path, bytes] = {}
    parts = [
        "# Big graphs\n",
        "<!-- Generated by docs/generate.py from tests/scripts/; do not edit by hand. -->\n",
        f"A graph of more than {THRESHOLD} nodes (a ConvNet, a transformer), or a graph of modules more "
        f"than {TALL} ops deep (a ResNet-18), is shown by module call: each call of an `nn.Module` is one "
        "box, with its path, its type, its op and leaf counts and the worst status of its nodes (✗ and "
        "the step where a mismatch starts, ? for an op without a rule, · where only torch's numbers "
        "reach). A run of calls with the same ops, each feeding the next (the layers of a transformer, "
        "the steps of a loop over one cell), is one box with a count, its statuses combined. Smaller "
        "graphs are drawn node by node, as before.\n",
        "| option | meaning |\n|---|---|\n"
        "| `--depth N` | open modules down to N levels of their path (`model` is 1, `model.encoder` 2, …); "
        "deeper ones are boxes. Default: the deepest level that keeps the picture readable (at most 40 "
        "items in 12 rows). Given a number, a small graph is drawn by module too |\n"
        "| `--depth all` | every node, as for a small graph |\n"
        "| `--expand MODULE` | open this module and everything in it, in the picture and the walkthrough "
        "(repeatable; `encoder.layers.0` finds `model.encoder.layers.0`); a run it belongs to is split "
        "around it |\n"
        "| `--full` | print every step of the walkthrough, not only the expanded modules' |\n",
        "The walkthrough of a big graph starts with a table by module (the rows of the picture) and "
        "prints the steps of the `--expand`ed modules only; the verdict still names the first mismatch. "
        "Every node is still derived and checked, whatever is shown.\n",
    ]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for graph in BIG_GRAPHS:
            script = f"tests/scripts/{graph.script}.py"
            options = parser().parse_args(["trace", *graph.options, script])
            view = View(options.depth, tuple(options.expand), options.full)
            with redirect_stdout(io.StringIO()):
                run = run_script(script, [], Selection.parse("first"))
            explanation = Report.of(run, view).all_explanations[0]
            stem = f"big-{graph.script}"
            files[IMAGES / f"{stem}.dot"] = to_dot(explanation, view).encode("utf-8")
            command = " ".join(["graphexplain trace", *graph.options, script])
            table = _plain_text(walkthrough(explanation, 100, view), 100)
            start = table.index("By module")
            table = table[start:table.index("\nThe ", start)]
            parts.append(f"## {graph.title}\n")
            parts.append(f"{graph.text}\n")
            parts.append(f"```sh\n$ {command}\n```\n")
            parts.append("```text\n" + "\n".join(line.rstrip() for line in table.splitlines()) + "\n```\n")
            parts.append(f"![{graph.script}](images/{stem}.png)\n")
    finally:
        os.chdir(cwd)
    files[DOCS / "big-graphs.md"] = "\n".join(parts).encode("utf-8")
    return files


def _readme_with_excerpt(text: str) -> str:
    readme = README.read_text(encoding="utf-8")
    start, end = readme.index(EXCERPT_START), readme.index(EXCERPT_END)
    lines = text.splitlines()
    second = next(i for i, line in enumerate(lines) if line.startswith("2. "))
    leaf = next(i for i, line in enumerate(lines) if line.startswith("leaf "))
    verdict = next(i for i, line in enumerate(lines) if line.startswith("✓ All"))
    excerpt = lines[:second] + ["   …"] + lines[leaf:verdict + 1]
    block = f"{EXCERPT_START}\n```text\n" + "\n".join(excerpt) + "\n```\n"
    return readme[:start] + block + readme[end:]


def draw(files: Dict[Path, bytes]) -> None:
    """Redraw each picture from its DOT source (needs graphviz's dot)."""
    import graphviz

    for path, content in files.items():
        if path.suffix == ".dot":
            path.with_suffix(".png").write_bytes(graphviz.Source(content.decode("utf-8")).pipe(format="png"))


def stale(files: Dict[Path, bytes]) -> List[Path]:
    return [path for path, content in files.items() if not path.exists() or path.read_bytes() != content]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the docs are current")
    options = parser.parse_args(argv)
    files = build()
    if options.check:
        out_of_date = stale(files)
        for path in out_of_date:
            print(f"out of date: {path.relative_to(ROOT)} (run python docs/generate.py)")
        return 1 if out_of_date else 0
    IMAGES.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        path.write_bytes(content)
    draw(files)
    print(f"wrote {len(files)} files under docs/ and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
