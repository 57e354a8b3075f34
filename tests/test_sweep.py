"""Sweeps: expansion, up-front validation, local processes (failures, skip, resume), the vmapped
program (equal to sequential runs), Ray, and the sweep report."""

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
import time

import chex
import ml_collections
import numpy as np
import psutil
import pytest

import jaxlab
from jaxlab import cli
from jaxlab.config import apply_overrides
from jaxlab.config.registry import builtin_dir
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare
from jaxlab.rundir.checkpoint import Checkpoints
from jaxlab.rundir.workdir import RESULT_FILE
from jaxlab.sweep import (
    axis,
    command_line_points,
    experiment_points,
    fixed,
    plan,
    product,
    run_name,
    zipit,
)
from tests.conftest import read_jsonl
from tests.test_cli import jaxlab_cli

SHORT = {"train.steps": 10, "train.checkpoint_every": 5, "train.eval_every": 5}
SHORT_FLAGS = [f"--config.{k}={v}" for k, v in SHORT.items()]
ONE_SAVE = {**SHORT, "train.checkpoint_every": 10}  # Orbax saves cost seconds on 2 cores


def test_product_zip_fixed_and_command_line_form():
    seeds, rates = axis("config.seed", [0, 1]), axis("optimizer.learning_rate", [0.1, 0.2])
    assert product(seeds, rates) == [
        {"seed": 0, "optimizer.learning_rate": 0.1},
        {"seed": 0, "optimizer.learning_rate": 0.2},
        {"seed": 1, "optimizer.learning_rate": 0.1},
        {"seed": 1, "optimizer.learning_rate": 0.2},
    ]
    assert zipit(seeds, rates) == [
        {"seed": 0, "optimizer.learning_rate": 0.1},
        {"seed": 1, "optimizer.learning_rate": 0.2},
    ]
    assert product(zipit(seeds, rates), fixed("train.steps", 5))[1] == {
        "seed": 1,
        "optimizer.learning_rate": 0.2,
        "train.steps": 5,
    }
    with pytest.raises(UserError, match="same length"):
        zipit(seeds, axis("model.width", [8]))
    with pytest.raises(UserError, match="config.seed is swept twice"):
        product(seeds, axis("seed", [3]))
    points = command_line_points(
        ["config.seed=0,1,2", "config.model.depth=1,2"],
        ["config.optimizer.learning_rate=1e-3,1e-2", "config.optimizer.weight_decay=0,0.1"],
    )
    assert len(points) == 3 * 2 * 2
    assert points[-1] == {
        "seed": "2",
        "model.depth": "2",
        "optimizer.learning_rate": "1e-2",
        "optimizer.weight_decay": "0.1",
    }
    with pytest.raises(UserError, match="malformed sweep"):
        command_line_points(["config.seed"], [])


def test_get_sweep_in_experiment_file_and_typed_run_names(tmp_path):
    source = (builtin_dir() / "minimal_transformer.py").read_text()
    (tmp_path / "seeded.py").write_text(
        source
        + """

def get_sweep(arg=None):
    from jaxlab.sweep import axis, product, zipit
    return product(axis("config.seed", [0, 1]),
                   zipit(axis("optimizer.learning_rate", [1e-3, 1e-2]),
                         axis("optimizer.weight_decay", [0, 1e-4])))
"""
    )
    points = experiment_points("seeded:smoke", [str(tmp_path)])
    assert len(points) == 4 and points[1] == {
        "seed": 0,
        "optimizer.learning_rate": 1e-2,
        "optimizer.weight_decay": 1e-4,
    }
    runs = plan("seeded:smoke", points, {"train.steps": "7"}, [str(tmp_path)])
    assert runs[1].name == "seed=0,optimizer.learning_rate=0.01,optimizer.weight_decay=0.0001"
    assert runs[0].overrides["optimizer.weight_decay"] == 0.0  # typed like the default (float)
    assert runs[3].config.seed == 1 and runs[3].config.train.steps == 7
    assert run_name({"data.directory": "a/b c"}) == "data.directory=a_b_c"
    with pytest.raises(UserError, match="no get_sweep"):
        experiment_points("mlp_moons:smoke")


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--sweep", "config.seed=0,1", "--sweep", "config.optimizer.learning_rat=0.1"],
            "did you mean optimizer.learning_rate",
        ),
        (
            ["--sweep", "config.seed=0,1", "--sweep", "config.train.steps=10,0"],
            "sweep run (seed=0, train.steps=0): config.train.steps must be positive",
        ),
    ],
)
def test_one_bad_override_fails_the_whole_sweep_up_front(tmp_path, flags, message):
    workdir = tmp_path / "sweep"
    result = jaxlab_cli("sweep", "minimal_transformer:smoke", *flags, "--workdir", str(workdir))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not workdir.exists()


def _read_csv(path):
    with open(path) as file:
        return {row["run"]: row for row in csv.DictReader(file)}


def test_local_sweep_records_failures_skips_finished_resumes_unfinished_and_reports(tmp_path):
    workdir = tmp_path / "sweep"
    command = [
        "sweep",
        "minimal_transformer:smoke",
        "--zip",
        "config.data.test_fraction=0.2,0.2,1.5",
        "--zip",
        "config.seed=0,1,0",
        *SHORT_FLAGS,
        "--parallel",
        "2",
        "--workdir",
        str(workdir),
    ]
    first = jaxlab_cli(*command)
    assert first.returncode == cli.SWEEP_INCOMPLETE, first.stderr  # one run failed
    assert "3 runs: 2 done, 1 failed;" in first.stdout
    rows = _read_csv(workdir / "results.csv")
    good, resumed = "data.test_fraction=0.2,seed=0", "data.test_fraction=0.2,seed=1"
    bad = "data.test_fraction=1.5,seed=0"
    assert {name: row["status"] for name, row in rows.items()} == {
        good: "done",
        resumed: "done",
        bad: "failed",
    }
    assert "leaves an empty train or test split" in rows[bad]["error"]
    assert rows[good]["seed"] == "0" and float(rows[good]["wall_time_s"]) > 0
    assert f"| {bad} | 1.5 | 0 | failed |" in (workdir / "results.md").read_text()
    before = read_jsonl(workdir / resumed / "metrics.jsonl")
    assert [r["step"] for r in before] == [5, 10]
    assert float(rows[resumed]["eval/accuracy"]) == before[-1]["eval/accuracy"]

    # Make one run unfinished: only its step-5 checkpoint is left.
    (workdir / resumed / RESULT_FILE).unlink()
    shutil.rmtree(workdir / resumed / "checkpoints" / "10")
    good_log = (workdir / good / "run.log").read_text()
    second = jaxlab_cli(*command)
    assert second.returncode == cli.SWEEP_INCOMPLETE, second.stderr  # the bad run fails again
    assert (workdir / good / "run.log").read_text() == good_log  # finished: skipped
    after = read_jsonl(workdir / resumed / "metrics.jsonl")
    assert [r["step"] for r in after] == [5, 10] and after[0] == before[0]
    np.testing.assert_allclose(after[-1]["eval/loss"], before[-1]["eval/loss"], rtol=1e-6)
    assert _read_csv(workdir / "results.csv")[resumed]["status"] == "done"

    report = jaxlab_cli("report", str(workdir), "--metric", "eval/accuracy", "--descending")
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    accuracies = [float(rows[name]["eval/accuracy"]) for name in (good, resumed)]
    best = (good, resumed)[int(np.argmax(accuracies))]
    assert lines[2].startswith(f"| {best} |") and "| failed |" in lines[4]
    assert "sorted by eval/accuracy (descending); 2 of 3 runs done" in report.stdout
    for plot in ("sweep_metric.png", "sweep_curves.png"):
        assert (workdir / plot).stat().st_size > 5000


def _assert_vmap_equals_sequential(config, points, overrides, tmp_path):
    """The vmapped sweep of ``points`` and sequential `jaxlab.loop.train` runs give the same final
    metrics, logged records, configs and checkpointed states."""
    rows = jaxlab.sweep(config, points, tmp_path / "vmap", vmap=True, fixed_overrides=overrides)
    assert [row["status"] for row in rows] == ["done"] * len(points)
    for point, row in zip(points, rows):
        single_config = apply_overrides(config, {**overrides, **point})
        single = jaxlab.train(single_config, tmp_path / row["run"], quiet=True)
        trial_dir = tmp_path / "vmap" / row["run"]
        for key in (
            "train/loss",
            "train/accuracy",
            "train/grad_norm",
            "eval/loss",
            "eval/accuracy",
        ):
            np.testing.assert_allclose(row[key], single[key], rtol=1e-5, atol=1e-5, err_msg=key)
        vmapped_log = read_jsonl(trial_dir / "metrics.jsonl")
        single_log = read_jsonl(tmp_path / row["run"] / "metrics.jsonl")
        assert [r.keys() for r in vmapped_log] == [r.keys() for r in single_log]
        assert json.loads((trial_dir / "config.json").read_text()) == json.loads(
            (tmp_path / row["run"] / "config.json").read_text()
        )
        states, target = [], prepare(single_config).state
        for directory in (trial_dir, tmp_path / row["run"]):
            checkpoints = Checkpoints(directory / "checkpoints", keep=3)
            assert checkpoints.latest_step() == single["step"]
            states.append(checkpoints.restore(single["step"], target))
            checkpoints.close()
        chex.assert_trees_all_close(states[0], states[1], rtol=1e-5, atol=1e-5)
    return rows


L2_TASK = '''"""Classification plus config.loss.l2 times the squared norm of the parameters."""
import dataclasses

import jax
import jax.numpy as jnp

from jaxlab.tasks import classification


def make_task(config):
    task = classification.make_task(config)

    def loss(params, task_state, batch, key):
        value, aux = task.loss(params, task_state, batch, key)
        penalty = sum(jnp.sum(p ** 2) for p in jax.tree.leaves(params))
        return value + config.loss.l2 * penalty, aux

    return dataclasses.replace(task, loss=loss)
'''


def test_vmapped_sweep_over_seed_optimizer_and_loss_weight_equals_sequential_runs(tmp_path):
    (tmp_path / "l2_classification.py").write_text(L2_TASK)  # a user's task, outside jaxlab
    config = jaxlab.load_config("minimal_transformer:smoke")
    config.task = f"{tmp_path / 'l2_classification.py'}:make_task"
    config.loss = ml_collections.ConfigDict({"l2": 0.0})
    points = zipit(
        axis("seed", [0, 1]),
        axis("optimizer.learning_rate", [1e-3, 4e-3]),
        axis("optimizer.weight_decay", [1e-4, 1e-2]),
        axis("loss.l2", [0.0, 0.05]),
    )
    rows = _assert_vmap_equals_sequential(config, points, ONE_SAVE, tmp_path)
    again = jaxlab.sweep(config, points, tmp_path / "vmap", vmap=True, fixed_overrides=ONE_SAVE)
    assert again == rows  # finished trials are skipped, their results read back


@pytest.mark.slow
def test_vmap_trains_one_program_per_value_of_the_keys_it_cannot_trace(tmp_path):
    points = product(axis("model.width", [16, 32]), axis("seed", [0, 1]))
    config = jaxlab.load_config("minimal_transformer:smoke")
    rows = _assert_vmap_equals_sequential(config, points, ONE_SAVE, tmp_path)
    assert [row["model.width"] for row in rows] == [16, 16, 32, 32]


def test_vmap_says_how_many_programs_the_keys_it_cannot_trace_make(tmp_path, capsys):
    points = axis("optimizer.name", ["adam", "sgd"])
    rows = jaxlab.sweep(
        "minimal_transformer:smoke",
        points,
        tmp_path / "sweep",
        vmap=True,
        quiet=False,
        fixed_overrides=ONE_SAVE,
    )
    assert "differ in config.optimizer.name, which a program cannot trace: 2 programs" in (
        capsys.readouterr().out
    )
    assert [(row["optimizer.name"], row["status"]) for row in rows] == [
        ("adam", "done"),
        ("sgd", "done"),
    ]


def test_untraceable_keys_split_runs_into_programs_and_never_reach_one():
    from jaxlab.sweep.trials import TrialGroup, split_untraceable

    base = jaxlab.load_config("minimal_transformer:smoke")
    configs = [
        apply_overrides(base, {"model.width": w, "seed": s}) for w in (16, 32) for s in (0, 1)
    ]
    assert split_untraceable(configs) == (["model.width"], [[0, 1], [2, 3]])
    assert TrialGroup.of(configs[:2]).traced == ("seed",)
    with pytest.raises(ValueError, match="differ in config.model.width"):
        TrialGroup.of(configs)


def test_vmap_refuses_a_numeric_key_used_in_python_control_flow(tmp_path):
    points = axis("optimizer.warmup_steps", [2, 4])  # Python min()
    with pytest.raises(UserError, match="--vmap cannot sweep config.optimizer.warmup_steps"):
        jaxlab.sweep("minimal_transformer:smoke", points, tmp_path / "sweep", vmap=True)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_ray_backend_runs_the_sweep_on_a_loopback_only_cluster_showing_progress(tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'jaxlab[ray]')")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jaxlab.cli",
            "sweep",
            "minimal_transformer:smoke",
            "--sweep",
            "config.seed=0,1,2",
            "--backend",
            "ray",
            "--parallel",
            "2",
            *SHORT_FLAGS,
            "--config.train.checkpoint_every=10",
            "--workdir",
            str(tmp_path / "ray"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    listening = set()  # the addresses the sweep's Ray processes listen on
    while process.poll() is None:
        for child in psutil.Process(process.pid).children(recursive=True):
            try:
                listening |= {
                    c.laddr.ip
                    for c in child.net_connections("inet")
                    if c.status == psutil.CONN_LISTEN
                }
            except psutil.Error:
                pass
        time.sleep(0.2)
    output = process.stdout.read()
    assert process.returncode == 0, output
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening
    assert "jaxlab sweep (ray): 0 finished, 2 running, 1 queued" in output
    assert "3 runs: 3 done;" in output
    with open(tmp_path / "ray" / "results.csv") as file:
        rows = [(row["run"], row["status"], row["step"]) for row in csv.DictReader(file)]
    assert rows == [("seed=0", "done", "10"), ("seed=1", "done", "10"), ("seed=2", "done", "10")]
    assert (tmp_path / "ray" / "seed=1" / "checkpoints" / "10").is_dir()
