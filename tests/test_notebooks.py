"""Every notebook runs top to bottom on CPU (small presets), and is committed without outputs."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# notebook -> the metric its last cell shows (the restored checkpoint, evaluated)
LAST_CELL_SHOWS = {"quickstart.ipynb": "eval/accuracy",
                   "transformer_minimization.ipynb": "eval/accuracy",
                   "koopman.ipynb": "eval/nrmse_5",
                   "gedi.ipynb": "eval/nmi"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_NOTEBOOK_SMOKE", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    # execute() raises on any failing cell (the notebooks assert their own checks)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    shows_image = [any("image/png" in o.get("data", {}) for o in cell.outputs) for cell in code]
    assert any(shows_image), "no plot was shown"
    for cell, shown in zip(code, shows_image):  # jaxlab must not take the notebook's backend
        assert shown or "plt.show()" not in cell.source, cell.source
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                    for o in notebook.cells[-1].outputs)
    assert LAST_CELL_SHOWS[path.name] in shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


def test_there_is_a_notebook_per_paper():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(LAST_CELL_SHOWS)
