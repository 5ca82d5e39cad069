"""examples/notebook.ipynb run by a real kernel (nbclient + ipykernel): the
cell that ends with `graphexplain.explain(loss)` shows the explanation as
HTML (the page's fragment) and as a picture."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "examples" / "notebook.ipynb"
CELL_TIMEOUT = 120  # seconds; the explain cell imports sympy in a fresh kernel


def test_the_shipped_notebook_has_no_outputs():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert code[-1].source.strip() == "graphexplain.explain(loss)"


def test_the_notebook_shows_the_explanation(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat, nbclient and ipykernel")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # the kernel is this interpreter (ipykernel's own kernel spec), importing this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    results = [output for output in last.outputs if output.output_type == "execute_result"]
    assert len(results) == 1, last.outputs
    shown = results[0].data
    assert shown["text/html"].startswith('<div class="gx" id="gx-c1"')
    assert 'data-gx-node="' in shown["text/html"] and "<math" in shown["text/html"]
    assert "verified" in shown["text/plain"]
    if shutil.which("dot"):
        assert "image/svg+xml" in shown and "image/png" in shown
        assert "<svg" in shown["image/svg+xml"] and 'class="gx-picture"' in shown["text/html"]
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.output_type == "error" or output.get("name") == "stderr"]
    assert not errors, errors
