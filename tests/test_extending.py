"""docs/extending.md, done as a user does it: its files written to a directory outside the
repository, then trained by CLI and by Python, swept, resumed; and its bad inputs."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import jaxlab
from jaxlab.errors import UserError
from tests.conftest import REPO, read_jsonl
from tests.test_cli import jaxlab_cli

DOC = REPO / "docs" / "extending.md"
SINE = ["sine_fit:smoke", "--experiments-dir", "experiments"]


def doc_files() -> dict[str, str]:
    """relative path -> content of every ```python block of the doc that starts ``# file: PATH``."""
    blocks = re.findall(r"```python\n# file: (\S+)\n(.*?)```", DOC.read_text(), re.S)
    return {path: text for path, text in blocks}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """my_project/ of the doc, written outside the repository (one per test process: its modules
    are imported by the in-process tests)."""
    root = tmp_path_factory.mktemp("user")
    files = doc_files()
    assert {
        "my_project/sine/task.py",
        "my_project/experiments/sine_fit.py",
        "my_project/experiments/blobs.py",
    } <= set(files)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root / "my_project"


def test_the_example_trains_from_the_cli_and_from_python_alike(project):
    listed = jaxlab_cli("list", "--experiments-dir", "experiments", cwd=project)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^sine_fit +Fit y = sin\(x\)", listed.stdout, re.M)
    assert re.search(r"^mlp_moons ", listed.stdout, re.M)  # the built-ins are still there

    cli = jaxlab_cli("train", *SINE, "--workdir", "runs/cli", cwd=project)
    assert cli.returncode == 0, cli.stderr
    records = read_jsonl(project / "runs" / "cli" / "metrics.jsonl")
    assert [r["step"] for r in records] == [50, 100, 150, 200]
    assert records[-1]["eval/mse"] < 0.25 * records[0]["train/mse"]  # it learns the sine
    assert records[-1]["eval/mse"] < 0.1  # sin(x) has variance 0.5; the noise floor is 0.01
    saved = json.loads((project / "runs" / "cli" / "config.json").read_text())
    assert saved["task"] == f"{project / 'sine' / 'task.py'}:make_task"  # absolute

    config = jaxlab.load_config(str(project / "experiments" / "sine_fit.py:smoke"))
    final = jaxlab.train(config, project / "runs" / "python", quiet=True)
    assert final["eval/mse"] == records[-1]["eval/mse"]  # same seed, same numbers

    by_path = jaxlab_cli(
        "train", "--config=experiments/sine_fit.py:smoke", "--workdir", "runs/cli", cwd=project
    )
    assert by_path.returncode == 0, by_path.stderr  # the same run: finished, nothing to do
    assert read_jsonl(project / "runs" / "cli" / "metrics.jsonl") == records
    evaluated = jaxlab_cli("eval", str(project / "runs" / "cli"))  # from another directory
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["eval/mse"] == pytest.approx(records[-1]["eval/mse"])


def test_the_example_resumes_exactly(project):
    workdir = project / "runs" / "resumed"
    first = jaxlab_cli("train", *SINE, "--workdir", str(workdir), cwd=project)
    assert first.returncode == 0, first.stderr
    uninterrupted = read_jsonl(workdir / "metrics.jsonl")
    shutil.rmtree(workdir / "checkpoints" / "200")  # as if killed between steps 100 and 200
    again = jaxlab_cli("train", *SINE, "--workdir", str(workdir), cwd=project)
    assert again.returncode == 0, again.stderr
    assert read_jsonl(workdir / "metrics.jsonl") == uninterrupted


def test_the_example_sweeps_as_one_vmapped_program(project):
    sweep = jaxlab_cli(
        "sweep",
        *SINE,
        "--workdir",
        "runs/sweep",
        "--sweep",
        "config.seed=0,1",
        "--sweep",
        "config.optimizer.learning_rate=3e-3,1e-2",
        "--vmap",
        cwd=project,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert "4 runs: 4 done;" in sweep.stdout
    rows = (project / "runs" / "sweep" / "results.csv").read_text().splitlines()
    assert len(rows) == 5 and all(",done," in row for row in rows[1:])


def test_your_own_arrays_train_the_classifier(project):
    subprocess.run([sys.executable, "make_blobs.py"], cwd=project, check=True)
    result = jaxlab_cli(
        "train", "blobs", "--experiments-dir", "experiments", "--workdir", "runs/blobs", cwd=project
    )
    assert result.returncode == 0, result.stderr
    final = read_jsonl(project / "runs" / "blobs" / "metrics.jsonl")[-1]
    assert final["eval/accuracy"] > 0.8  # three blobs; chance is 1/3


BROKEN = {  # file -> (content, what the one error line says)
    "syntax_error.py": (
        "def make_task(config)\n    pass\n",
        r"importing .*syntax_error.py failed: SyntaxError: .*line 1\)",
    ),
    "raises.py": (
        "import math\nVALUE = 1 / 0\n",
        r"importing .*raises.py failed: ZeroDivisionError: division by zero "
        r"\(.*raises.py, line 2\)",
    ),
    "no_function.py": (
        "def make_tsak(config):\n    pass\n",
        r"no_function \(.*no_function.py\) defines no 'make_task'",
    ),
    "json.py": (
        "def make_task(config):\n    pass\n",
        r"json.py would be imported as module 'json', a name already taken by json ",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_user_module_is_one_line_and_writes_nothing(project, tmp_path, name):
    content, message = BROKEN[name]
    (tmp_path / name).write_text(content)
    workdir = tmp_path / "run"
    result = jaxlab_cli(
        "train",
        *SINE,
        "--workdir",
        str(workdir),
        f"--config.task={tmp_path / name}:make_task",
        cwd=project,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxlab: error: config.task="), lines
    assert re.search(message, lines[0]), lines[0]
    assert not workdir.exists()


def test_a_module_name_taken_by_another_file_is_refused(tmp_path):
    for directory in ("a", "b"):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "clash_task.py").write_text("def make_task(config):\n    pass\n")
    from jaxlab.config import references

    assert callable(references.resolve(f"{tmp_path / 'a' / 'clash_task.py'}:make_task", "x"))
    with pytest.raises(
        UserError,
        match=r"clash_task.py would be imported as module "
        r"'clash_task', a name already taken by clash_task \(",
    ):
        references.resolve(f"{tmp_path / 'b' / 'clash_task.py'}:make_task", "config.task")


def test_references_are_checked_before_anything_is_written(tmp_path):
    config = jaxlab.load_config("mlp_moons:smoke")
    for reference, message in [
        ("no_colon_here", "is not a reference to code"),
        ("not_installed_pkg.tasks:make_task", "no module named 'not_installed_pkg'"),
        (f"{tmp_path / 'missing.py'}:make_task", "missing.py does not exist"),
    ]:
        config.task = reference
        with pytest.raises(UserError, match=message):
            jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_arrays_loader_reads_npz_npy_and_directories(tmp_path):
    from jaxlab.data import arrays

    x, label = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10) % 2
    np.savez(tmp_path / "train.npz", x=x, label=label)
    (tmp_path / "split").mkdir()
    np.save(tmp_path / "split" / "x.npy", x[:4])
    np.save(tmp_path / "split" / "label.npy", label[:4])
    data = arrays.load(train=str(tmp_path / "train.npz"), test=str(tmp_path / "split"))
    np.testing.assert_array_equal(data.train["x"], x)
    np.testing.assert_array_equal(data.test["label"], label[:4])
    halves = arrays.load(train=str(tmp_path / "train.npz"), test_fraction=0.5, keys=("x",))
    assert set(halves.train) == {"x"} and len(halves.train["x"]) == len(halves.test["x"]) == 5
    assert sorted(np.concatenate([halves.train["x"], halves.test["x"]])[:, 0]) == list(x[:, 0])
    single = arrays.load(train=str(tmp_path / "split" / "x.npy"), test_fraction=0.25)
    assert set(single.train) == {"x"} and len(single.test["x"]) == 1


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "missing.npz does not exist"),
        (
            "missing_key",
            "config.data.keys names 'y', which .* does not hold \\(it holds label, x\\)",
        ),
        ("lengths", "differ in their number of examples \\(x has 10, label has 9\\)"),
        ("objects", "holds an object array \\(dtype=object\\).* save numeric arrays instead"),
        ("test_names", "holds the arrays x, the train split label, x: both need the same names"),
        ("no_test", "config.data.test_fraction must be in \\(0, 1\\)"),
        ("not_numpy", "text.npz is not a .npz file \\(it does not start with the format"),
    ],
)
def test_arrays_loader_bad_files_are_user_errors(tmp_path, case, message):
    from jaxlab.data import arrays

    x, label = np.zeros((10, 2), np.float32), np.zeros(10, np.int64)
    good = tmp_path / "good.npz"
    np.savez(good, x=x, label=label)
    kwargs = {"train": str(good), "test_fraction": 0.2}
    if case == "missing":
        kwargs["train"] = str(tmp_path / "missing.npz")
    elif case == "missing_key":
        kwargs["keys"] = ("x", "y")
    elif case == "lengths":
        np.savez(tmp_path / "bad.npz", x=x, label=label[:9])
        kwargs["train"] = str(tmp_path / "bad.npz")
    elif case == "objects":
        np.save(
            tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True
        )
        kwargs["train"] = str(tmp_path / "objects.npy")
    elif case == "test_names":
        np.savez(tmp_path / "test.npz", x=x)
        kwargs.update(test=str(tmp_path / "test.npz"), test_fraction=0.0)
    elif case == "no_test":
        kwargs["test_fraction"] = 0.0
    elif case == "not_numpy":
        (tmp_path / "text.npz").write_text("not a zip file")
        kwargs["train"] = str(tmp_path / "text.npz")
    with pytest.raises(UserError, match=message):
        arrays.load(**kwargs)
