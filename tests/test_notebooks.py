"""Every notebook runs top to bottom on CPU (small presets), and is committed without outputs."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# notebook -> the metric its last cell shows (the restored checkpoint, evaluated)
LAST_CELL_SHOWS = {
    "quickstart.ipynb": "eval/accuracy",
    "transformer_minimization.ipynb": "eval/accuracy",
    "koopman.ipynb": "eval/nrmse_std_5",
    "gedi.ipynb": "eval/nmi",
}


def execute(path, directory):
    """The notebook at ``path`` executed in ``directory``; raises on any failing cell (the
    notebooks assert their own checks)."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(directory)}},
    ).execute()
    return notebook


def text_of(cell) -> str:
    return "".join(
        str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in cell.outputs
    )


def training_cell(notebook):
    return next(cell for cell in notebook.cells if "jaxlab.train(" in cell.source)


@pytest.mark.parametrize(
    "path",
    [  # the papers' notebooks take 20-30 s each: the slow set
        pytest.param(p, marks=() if p.name == "quickstart.ipynb" else pytest.mark.slow)
        for p in NOTEBOOKS
    ],
    ids=[p.name for p in NOTEBOOKS],
)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_NOTEBOOK_SMOKE", "1")
    monkeypatch.delenv("JAXLAB_WORKDIR_ROOT", raising=False)
    notebook = execute(path, tmp_path)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    shows_image = [any("image/png" in o.get("data", {}) for o in cell.outputs) for cell in code]
    assert any(shows_image), "no plot was shown"
    for cell, shown in zip(code, shows_image):  # jaxlab must not take the notebook's backend
        assert shown or "plt.show()" not in cell.source, cell.source
    assert LAST_CELL_SHOWS[path.name] in text_of(notebook.cells[-1])
    progress = text_of(training_cell(notebook))  # tqdm's text bar: ipywidgets is not installed
    assert "step/s" in progress and "loss=" in progress, progress
    assert list((tmp_path / "runs").glob("*/base/metrics.jsonl"))  # workdirs under ./runs


@pytest.mark.slow  # 23 s: a notebook executed twice
def test_a_notebook_executed_again_finds_its_run_finished(tmp_path, monkeypatch):
    """Stable workdirs: a second execution against the same root trains nothing again."""
    monkeypatch.setenv("JAXLAB_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("JAXLAB_WORKDIR_ROOT", str(tmp_path / "root"))
    quickstart = REPO / "notebooks" / "quickstart.ipynb"
    execute(quickstart, tmp_path)
    (log,) = (tmp_path / "root").rglob("metrics.jsonl")
    checkpoints = log.parent / "checkpoints"
    before = (log.read_text(), {p.name: p.stat().st_mtime_ns for p in checkpoints.iterdir()})
    again = execute(quickstart, tmp_path)
    assert (
        log.read_text(),
        {p.name: p.stat().st_mtime_ns for p in checkpoints.iterdir()},
    ) == before
    assert "20/20" in text_of(training_cell(again))  # the bar starts and ends at the last step


def test_progress_bar_in_a_notebook_and_none_when_quiet(monkeypatch, capsys):
    from jaxlab.loop import progress

    assert not progress.in_notebook()  # pytest is no kernel
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    with progress.bar(10, 0, shown=False) as hidden:
        hidden.update(10)
    assert hidden.disable and capsys.readouterr().err == ""
    with progress.bar(10, 4, shown=True) as shown:
        shown.update(6)
        shown.set_postfix(loss="0.5")
    assert "10/10" in capsys.readouterr().err


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


def test_there_is_a_notebook_per_paper():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(LAST_CELL_SHOWS)
