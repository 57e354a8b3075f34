"""Nothing silently wrong: re-run sweeps of another config, links planted in a workdir, two
processes racing for one lock, settings that must act, odd paths, damaged sweep records, and data
paths that must mean the same files from any directory."""

import json
import multiprocessing
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import jaxlab
from jaxlab import cli, paths
from jaxlab.errors import InUse
from jaxlab.rundir import workdir as workdir_lib
from tests.conftest import REPO, without_progress

MOONS = "mlp_moons:smoke"
SHORT = [
    "--config.train.steps=20",
    "--config.train.eval_every=20",
    "--config.train.checkpoint_every=20",
]


def one_error_line(capsys) -> str:
    lines = without_progress(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("jaxlab: error: "), lines
    return lines[0]


def tree(directory: pathlib.Path) -> dict:
    return {
        p.relative_to(directory): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
        for p in sorted(directory.rglob("*"))
    }


# --- a re-run sweep whose config changed ------------------------------------------------------


@pytest.mark.parametrize(
    "mode", [["--vmap"], pytest.param(["--parallel", "1"], marks=pytest.mark.slow)]
)
def test_a_finished_sweep_rerun_with_another_config_is_refused_naming_the_keys(
    tmp_path, mode, capsys
):
    workdir = tmp_path / "sweep"
    sweep = ["sweep", MOONS, "--sweep", "config.seed=0,1", *mode, *SHORT, "--workdir", str(workdir)]
    assert cli.main(sweep) == 0
    capsys.readouterr()
    before = tree(workdir)
    assert cli.main([*sweep, "--config.train.steps=40"]) == cli.USAGE_ERROR
    line = one_error_line(capsys)
    assert "seed=0" in line and "train.steps: 20 in the workdir, 40 now" in line, line
    assert (
        cli.main(
            [
                "sweep",
                "minimal_transformer:smoke",
                "--sweep",
                "config.seed=0,1",
                *mode,
                *SHORT,
                "--workdir",
                str(workdir),
            ]
        )
        == cli.USAGE_ERROR
    )
    assert (
        "experiment: 'mlp_moons:smoke' in the workdir, 'minimal_transformer:smoke' now"
        in one_error_line(capsys)
    )
    assert tree(workdir) == before
    assert cli.main(sweep) == 0  # the same command: its finished runs are skipped
    assert "2 runs: 2 done" in capsys.readouterr().out


# --- links planted in a workdir ---------------------------------------------------------------


def test_links_planted_in_a_workdir_are_never_written_through(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = {name: outside / name for name in ("a", "b", "c")}
    for victim in victims.values():
        victim.write_text("precious\n")
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json.tmp").symlink_to(victims["a"])
    (workdir / "metrics.jsonl.tmp").symlink_to(victims["b"])
    (workdir / "metrics.jsonl").symlink_to(victims["c"])
    assert cli.main(["train", MOONS, *SHORT, "--quiet", "--workdir", str(workdir)]) == 0
    assert all(v.read_text() == "precious\n" for v in victims.values())
    for name in ("config.json", "metrics.jsonl"):
        assert not (workdir / name).is_symlink() and (workdir / name).is_file()
    assert json.loads((workdir / "config.json").read_text())["experiment"] == MOONS

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / ".lock").symlink_to(victims["a"])
    assert (
        cli.main(["train", MOONS, *SHORT, "--quiet", "--workdir", str(locked)]) == cli.USAGE_ERROR
    )
    assert ".lock is a symbolic link" in one_error_line(capsys)
    assert victims["a"].read_text() == "precious\n"
    assert sorted(p.name for p in locked.iterdir()) == [".lock"]


def test_atomic_writes_are_flushed_to_the_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd)
    )
    paths.write_atomic(paths.path(tmp_path / "config.json"), "{}")
    assert synced[0].startswith(str(tmp_path / ".config.json.")) and synced[1] == str(tmp_path)
    assert (tmp_path / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


# --- two processes racing for one lock --------------------------------------------------------


def _race(directory: str, barrier, outcomes) -> None:
    barrier.wait()
    try:
        with workdir_lib.lock(paths.path(directory)):
            barrier.wait()  # hold the lock until the other process has tried
            barrier.wait()  # ... and has looked at the directory
            outcomes.put("held")
    except InUse:
        barrier.wait()
        held = workdir_lib.holder(paths.path(directory)) is not None
        lock_there = (pathlib.Path(directory) / workdir_lib.LOCK_FILE).is_file()
        barrier.wait()
        outcomes.put(f"refused, holder alive={held}, lock file={lock_there}")
    except BaseException as error:  # noqa: BLE001 - reported to the test
        outcomes.put(f"{type(error).__name__}: {error}")
        barrier.abort()


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # the children only lock files
def test_two_processes_locking_one_new_directory_at_once_never_break_the_winner(tmp_path):
    context = multiprocessing.get_context("fork")
    tries = 60
    results = []
    for i in range(tries):
        directory = str(tmp_path / f"new{i}")
        barrier, outcomes = context.Barrier(2, timeout=30), context.Queue()
        racers = [
            context.Process(target=_race, args=(directory, barrier, outcomes)) for _ in range(2)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
        results.append(sorted(outcomes.get(timeout=5) for _ in racers))
        assert (tmp_path / f"new{i}").is_dir()
    assert all(r == ["held", "refused, holder alive=True, lock file=True"] for r in results), [
        r for r in results if r != ["held", "refused, holder alive=True, lock file=True"]
    ][:3]


# --- settings that must act or be refused -----------------------------------------------------


def test_dropout_acts_in_training_and_evaluation_is_deterministic(tmp_path):
    finals = {}
    for rate in (0.0, 0.5):
        config = jaxlab.load_config(MOONS, {"model.dropout": rate})
        finals[rate] = jaxlab.train(config, tmp_path / f"dropout{rate}", quiet=True)
    assert finals[0.0]["train/loss"] != finals[0.5]["train/loss"]
    assert finals[0.0]["eval/loss"] != finals[0.5]["eval/loss"]
    again = [jaxlab.evaluate(tmp_path / "dropout0.5")["eval/loss"] for _ in range(2)]
    assert again[0] == again[1] == pytest.approx(finals[0.5]["eval/loss"], rel=1e-6)


MODELS = """
import flax.linen as nn

class NoTrainFlag(nn.Module):
    num_classes: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes)(nn.Dropout(self.dropout, deterministic=True)(x))

class BatchNormWithoutTrainFlag(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes)(nn.BatchNorm(use_running_average=False)(x))
"""


@pytest.mark.parametrize(
    "case, overrides, message",
    [
        (
            0,
            {
                "model.constructor": "{dir}/models0.py:NoTrainFlag",
                "model.hidden_sizes": None,
                "model.dropout": 0.3,
            },
            "config.model.dropout=0.3: {dir}/models0.py:NoTrainFlag takes "
            "no train (or deterministic) argument in __call__",
        ),
        (
            1,
            {
                "model.constructor": "{dir}/models1.py:BatchNormWithoutTrainFlag",
                "model.hidden_sizes": None,
                "model.dropout": None,
            },
            "has the mutable variable collections batch_stats but no train (or "
            "deterministic) argument in __call__ to update them in training",
        ),
        (2, {"model.num_classes": 2}, "config.model.num_classes is set by the task"),
        (
            3,
            {"data.loader": "{dir}/loader3.py:load"},
            "config.data.loader='{dir}/loader3.py:load' failed: FileNotFoundError",
        ),
    ],
)
def test_a_model_or_data_setting_the_task_cannot_honour_is_one_line(
    tmp_path, case, overrides, message, capsys
):
    (tmp_path / f"models{case}.py").write_text(MODELS)  # a module name of its own per case
    (tmp_path / f"loader{case}.py").write_text(
        "import numpy as np\n\ndef load(**unused):\n    return np.load('missing.npz')\n"
    )
    experiment = tmp_path / "exp.py"
    lines = [
        "from experiments_base import get_config as base",
        "",
        "def get_config(arg=None):",
        "    config = base(arg)",
    ]
    for key, value in overrides.items():
        section, leaf = key.split(".")
        if value is None:
            lines.append(f"    del config.{section}[{leaf!r}]")
        else:
            value = value.format(dir=tmp_path) if isinstance(value, str) else value
            lines.append(f"    config.{section}[{leaf!r}] = {value!r}")
    lines.append("    return config")
    shutil.copy(
        REPO / "experiments" / "mlp_moons.py",
        tmp_path / "experiments_base.py",
    )
    experiment.write_text(
        f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n" + "\n".join(lines) + "\n"
    )
    workdir = tmp_path / "run"
    assert cli.main(["train", f"{experiment}:smoke", "--workdir", str(workdir)]) == cli.USAGE_ERROR
    assert message.format(dir=tmp_path) in one_error_line(capsys)
    assert not workdir.exists()


# --- odd paths --------------------------------------------------------------------------------


def test_odd_workdirs_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", MOONS, "--workdir", ""]) == cli.USAGE_ERROR
    assert "workdir is empty" in one_error_line(capsys)
    long = tmp_path / "/".join(["d" * 200] * 20)  # 4,000 characters
    assert cli.main(["train", MOONS, "--workdir", str(long)]) == cli.USAGE_ERROR
    assert "use a shorter path" in one_error_line(capsys)
    assert cli.main(["train", MOONS, "--workdir", str(tmp_path / ("x" * 300))]) == cli.USAGE_ERROR
    assert f"longer than {workdir_lib.NAME_MAX} bytes" in one_error_line(capsys)
    (tmp_path / "a_file").write_text("mine\n")
    assert (
        cli.main(
            ["sweep", MOONS, "--sweep", "config.seed=0,1", "--workdir", str(tmp_path / "a_file")]
        )
        == cli.USAGE_ERROR
    )
    assert "a_file is a file, not a directory" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert (tmp_path / "a_file").read_text() == "mine\n"


# --- damaged sweep records --------------------------------------------------------------------


def test_damaged_sweep_records_are_one_line_or_healed(tmp_path, capsys):
    workdir = tmp_path / "sweep"
    sweep = [
        "sweep",
        MOONS,
        "--sweep",
        "config.seed=0,1",
        "--vmap",
        *SHORT,
        "--workdir",
        str(workdir),
    ]
    assert cli.main(sweep) == 0
    (workdir / "seed=0" / "sweep_result.json").write_text('{"status": "do')
    (workdir / "sweep.json").write_text("[1, 2")
    assert cli.main(["report", str(workdir)]) == cli.USAGE_ERROR
    assert "sweep.json is damaged" in one_error_line(capsys)
    with pytest.warns(UserWarning, match="seed=0/sweep_result.json is damaged"):
        assert cli.main(sweep) == 0  # rewrites sweep.json; the damaged run resumes at its end
    assert "2 runs: 2 done" in capsys.readouterr().out
    assert json.loads((workdir / "seed=0" / "sweep_result.json").read_text())["status"] == "done"
    assert cli.main(["report", str(workdir)]) == 0


# --- relative data paths ----------------------------------------------------------------------


def test_relative_data_paths_are_stored_absolute_so_eval_works_from_anywhere(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 2)).astype(np.float32)
    np.savez(project / "data" / "points.npz", x=x, label=(x[:, 0] > 0).astype(np.int32))
    monkeypatch.chdir(project)
    config = jaxlab.load_config(MOONS, {"data.loader": "jaxlab.data.arrays:load"})
    config.data = {
        "loader": "jaxlab.data.arrays:load",
        "train": "data/points.npz",
        "test_fraction": 0.25,
    }
    jaxlab.train(config, "run", quiet=True)
    stored = json.loads((project / "run" / "config.json").read_text())["data"]["train"]
    assert stored == str(project / "data" / "points.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = subprocess.run(
        [sys.executable, "-m", "jaxlab.cli", "eval", str(project / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["eval/accuracy"] > 0.8
