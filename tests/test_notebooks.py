"""Every notebook runs top to bottom on CPU (small presets), and is committed without outputs."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_NOTEBOOK_SMOKE", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    # execute() raises on any failing cell; the last cell shows the restored model's metrics
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                    for o in notebook.cells[-1].outputs)
    assert "eval/accuracy" in shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


def test_there_is_a_quickstart():
    assert "quickstart.ipynb" in [p.name for p in NOTEBOOKS]
