"""Regenerate the parts of the docs that show graphexplain's real output.

    python docs/generate.py          # rewrite docs/tutorial.md, docs/images/, README excerpt
    python docs/generate.py --check  # exit 1 if any of them is out of date (the tests run this)

Every example of examples/ is traced in this process, as `graphexplain trace`
would trace it, and its walkthrough (plain text, 80 columns) and graph picture
are written into the tutorial. Pictures are checked through their DOT source;
the PNG is redrawn from it.
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


def build() -> Dict[Path, bytes]:
    """Every generated file and its content."""
    from graphexplain.render.dot import to_dot
    from graphexplain.render.terminal import report_text

    files: Dict[Path, bytes] = {}
    parts: List[str] = [
        "# The notes, explained\n",
        "<!-- Generated by docs/generate.py from examples/; do not edit by hand. -->\n",
        "Each section of the PyTorch study notes has a runnable example in `examples/`. Below is "
        "what `graphexplain trace` prints for it (plain text at 80 columns) and the picture it "
        "draws. Every number in them was derived by sympy from the ops' forward formulas and "
        "checked against torch.\n",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for number, section in enumerate(SECTIONS, 1):
            report = _trace(section, tmp)
            option = f" --call {section.call}" if section.call != "first" else ""
            parts.append(f"## {number}. {section.title}\n")
            parts.append(f"{section.text}\n")
            parts.append(f"```console\n$ graphexplain trace{option} examples/{section.example}.py\n```\n")
            parts.append("```text\n" + report_text(report, 80) + "```\n")
            for explanation in report.all_explanations:
                stem = f"{section.example}-call-{explanation.index}"
                files[IMAGES / f"{stem}.dot"] = to_dot(explanation).encode("utf-8")
                parts.append(f"![{section.example}, call {explanation.index}](images/{stem}.png)\n")
            if section.example == "autograd_mean":
                files[README] = _readme_with_excerpt(report_text(report, 80)).encode("utf-8")
    files[DOCS / "tutorial.md"] = "\n".join(parts).encode("utf-8")
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
