"""A sweep is as safe as a single run: locks, kill -9, SIGTERM, damaged checkpoints and NaN, for
vmapped sweeps (the one training loop) and process sweeps (workers that stop with the sweep)."""

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab import cli
from jaxlab.loop.train import prepare
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.checkpoint import Checkpoints, CheckpointWarning
from jaxlab.sweep import axis, zipit
from tests.conftest import freeze, read_jsonl
from tests.test_faults import finish, read_jsonl_prefix, snapshot, wait_for

SMOKE = "minimal_transformer:smoke"
SEEDS = ["--sweep", "config.seed=0,1"]
# A vmapped sweep in a subprocess: many chunk boundaries and checkpoint writes to land in.
SUBPROCESS_SWEEP = [
    SMOKE,
    *SEEDS,
    "--vmap",
    "--config.train.steps=40",
    "--config.train.log_every=2",
    "--config.train.checkpoint_every=6",
    "--config.train.eval_every=20",
    "--config.train.keep_checkpoints=3",
]
TRIALS = ("seed=0", "seed=1")


def launch_sweep(args, workdir, compile_cache):
    """Starts `jaxlab sweep ARGS --workdir WORKDIR`; stderr to WORKDIR.stderr."""
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(compile_cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    with open(workdir.with_suffix(".stderr"), "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "jaxlab.cli", "sweep", *args, "--workdir", str(workdir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def interrupt_at_random_moments(args, workdir, compile_cache, rng, stops, more_steps):
    """Launches `jaxlab sweep ARGS --workdir WORKDIR` once for each signal in ``stops`` and
    sends it once the runs have recorded ``rng.choice(more_steps)`` more steps in all; a
    SIGTERM must end the sweep with exit status 75 (unless it had finished). Waits for the
    workers of a killed sweep to let go of their runs."""

    def steps_recorded():
        return sum(
            (records[-1]["step"] if (records := read_jsonl_prefix(path)) else 0)
            for path in workdir.glob("*/metrics.jsonl")
        )

    for stop in stops:
        process = launch_sweep(args, workdir, compile_cache)
        target = steps_recorded() + rng.choice(more_steps)
        wait_for(lambda: steps_recorded() >= target or process.poll() is not None, process)
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(stop)
        status, err = finish(process, workdir)
        if stop == signal.SIGTERM and status != 0:
            assert status == 75, err
        deadline = time.monotonic() + 60  # its workers see the sweep gone, commit and exit
        while any(workdir_lib.holder(d) for d in workdir.iterdir() if d.is_dir()):
            assert time.monotonic() < deadline, "a worker outlived its sweep"
            time.sleep(0.05)


def trial_step(workdir, trial):
    records = read_jsonl_prefix(workdir / trial / "metrics.jsonl")
    return records[-1]["step"] if records else 0


def final_states(workdir, config, names=TRIALS):
    """(step, train state) of each trial's newest checkpoint."""
    target = prepare(config, jax.devices()[:1]).state
    out = {}
    for name in names:
        with Checkpoints(workdir / name / "checkpoints", keep=10) as checkpoints:
            step, state = checkpoints.restore_latest(target)
        out[name] = step, jax.device_get(state)
    return out


def assert_same_trials(workdir, reference, config, names=TRIALS):
    """Every trial logged each step once with the same values as the reference's, and ends in a
    bit-identical train state."""
    for name in names:
        assert read_jsonl(workdir / name / "metrics.jsonl") == read_jsonl(
            reference / name / "metrics.jsonl"
        ), name
    got, want = final_states(workdir, config, names), final_states(reference, config, names)
    for name in names:
        assert got[name][0] == want[name][0]
        jax.tree.map(np.testing.assert_array_equal, got[name][1], want[name][1])


def results(workdir):
    with open(workdir / "results.csv") as file:
        return {row["run"]: row for row in csv.DictReader(file)}


@pytest.fixture(scope="module")
def vmap_reference(tmp_path_factory):
    """An uninterrupted vmapped sweep in a subprocess, and the compile cache it filled."""
    base = tmp_path_factory.mktemp("vmap")
    process = launch_sweep(SUBPROCESS_SWEEP, base / "reference", base / "cache")
    status, err = finish(process, base / "reference")
    assert status == 0, err
    return base / "reference", base / "cache"


def subprocess_config():
    return jaxlab.load_config(SMOKE, cli._split_overrides(SUBPROCESS_SWEEP[4:]))


@pytest.mark.slow
def test_vmap_sweep_killed_at_random_points_resumes_every_trial_exactly(vmap_reference, tmp_path):
    reference, cache = vmap_reference
    workdir, rng = tmp_path / "sweep", random.Random(3)
    for kill_point in range(3):
        process = launch_sweep(SUBPROCESS_SWEEP, workdir, cache)
        if kill_point == 1:  # while some trial's asynchronous checkpoint write is under way
            before = set(workdir.glob("*/checkpoints/*.orbax-checkpoint-tmp*"))
            wait_for(
                lambda: set(workdir.glob("*/checkpoints/*.orbax-checkpoint-tmp*")) - before, process
            )
        else:
            target = min(trial_step(workdir, TRIALS[0]) + rng.randrange(2, 14, 2), 36)
            wait_for(lambda: trial_step(workdir, TRIALS[0]) >= target, process)
            time.sleep(rng.uniform(0, 0.05))
        process.kill()
        assert finish(process, workdir)[0] == -signal.SIGKILL
    status, err = finish(launch_sweep(SUBPROCESS_SWEEP, workdir, cache), workdir)
    assert status == 0, err
    assert {name: row["status"] for name, row in results(workdir).items()} == {
        name: "done" for name in TRIALS
    }
    assert_same_trials(workdir, reference, subprocess_config())


@pytest.mark.slow
def test_vmap_sweep_sigterm_commits_every_trial_while_train_into_a_trial_is_refused(
    vmap_reference, tmp_path
):
    reference, cache = vmap_reference
    workdir = tmp_path / "sweep"
    process = launch_sweep(SUBPROCESS_SWEEP, workdir, cache)
    wait_for(lambda: trial_step(workdir, TRIALS[1]) >= 10, process)
    freeze(process)  # frozen while it holds the trials' workdirs
    try:
        before = snapshot(workdir / TRIALS[1] / "checkpoints")
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "jaxlab.cli",
                "train",
                SMOKE,
                "--workdir",
                str(workdir / TRIALS[1]),
                *SUBPROCESS_SWEEP[4:],
                "--config.seed=1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert refused.returncode == cli.USAGE_ERROR
        assert f"is in use by a running jaxlab process (pid {process.pid} on" in refused.stderr
        assert snapshot(workdir / TRIALS[1] / "checkpoints") == before
    finally:
        process.send_signal(signal.SIGCONT)
    process.send_signal(signal.SIGTERM)
    status, err = finish(process, workdir)
    assert status == cli.INTERRUPTED, err
    assert err.strip().splitlines()[-1].startswith("jaxlab: sweep stopped by SIGTERM: ")
    assert "Traceback" not in err
    stopped = {name: trial_step(workdir, name) for name in TRIALS}
    assert len(set(stopped.values())) == 1 and stopped[TRIALS[0]] < 40
    states = final_states(workdir, subprocess_config())
    assert {name: states[name][0] for name in TRIALS} == stopped  # every trial committed
    assert {row["status"] for row in results(workdir).values()} == {"pending"}
    status, err = finish(launch_sweep(SUBPROCESS_SWEEP, workdir, cache), workdir)
    assert status == 0, err
    assert_same_trials(workdir, reference, subprocess_config())


FIVE = {"train.steps": 20, "train.checkpoint_every": 5, "train.keep_checkpoints": 10}


@pytest.mark.slow
def test_vmap_trial_with_a_damaged_checkpoint_falls_back_alone_and_catches_up(tmp_path):
    points = axis("seed", [0, 1])
    first = jaxlab.sweep(SMOKE, points, tmp_path / "sweep", vmap=True, fixed_overrides=FIVE)
    assert [row["status"] for row in first] == ["done", "done"]
    shutil.copytree(tmp_path / "sweep", tmp_path / "reference")
    for name in TRIALS:
        (tmp_path / "sweep" / name / workdir_lib.RESULT_FILE).unlink()  # as if killed at the end
    step_20 = tmp_path / "sweep" / "seed=1" / "checkpoints" / "20"
    (step_20 / "_CHECKPOINT_METADATA").unlink()
    with pytest.warns(CheckpointWarning) as warned:
        again = jaxlab.sweep(SMOKE, points, tmp_path / "sweep", vmap=True, fixed_overrides=FIVE)
    messages = [str(w.message) for w in warned]
    assert any(
        m.startswith(f"ignoring checkpoint {step_20}: it has no commit record") for m in messages
    ), messages
    assert any(m.startswith(f"moved the checkpoint {step_20} (unreadable)") for m in messages)
    assert [row["status"] for row in again] == ["done", "done"]
    config = jaxlab.load_config(SMOKE, FIVE)
    assert_same_trials(tmp_path / "sweep", tmp_path / "reference", config)


@pytest.mark.slow
def test_a_diverging_trial_is_recorded_failed_and_the_others_finish(tmp_path):
    points = zipit(axis("seed", [0, 1]), axis("optimizer.learning_rate", [1e-3, 1e30]))
    rows = {
        row["run"]: row
        for row in jaxlab.sweep(SMOKE, points, tmp_path / "sweep", vmap=True, fixed_overrides=FIVE)
    }
    good = rows["seed=0,optimizer.learning_rate=0.001"]
    bad = rows["seed=1,optimizer.learning_rate=1e+30"]
    assert good["status"] == "done" and good["step"] == 20 and np.isfinite(good["eval/loss"])
    assert bad["status"] == "failed" and "non-finite" in bad["error"] and bad["step"] <= 5
    assert not (np.isfinite(bad["train/loss"]) and np.isfinite(bad["train/grad_norm"]))
    bad_dir = tmp_path / "sweep" / "seed=1,optimizer.learning_rate=1e+30"
    assert not any((bad_dir / "checkpoints").iterdir())  # nothing saved after it diverged
    good_dir = tmp_path / "sweep" / "seed=0,optimizer.learning_rate=0.001"
    assert [r["step"] for r in read_jsonl(good_dir / "metrics.jsonl")] == [5, 10, 15, 20]


def test_a_second_sweep_into_a_sweep_in_use_is_refused_and_touches_nothing(tmp_path):
    workdir = tmp_path / "sweep"
    workdir.mkdir()
    (workdir / "sweep.json").write_text("{}")
    before = snapshot(workdir)
    with workdir_lib.lock(workdir):  # what a running sweep holds
        for mode in (["--vmap"], ["--parallel", "2"]):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "jaxlab.cli",
                    "sweep",
                    SMOKE,
                    *SEEDS,
                    *mode,
                    "--workdir",
                    str(workdir),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == cli.USAGE_ERROR, result.stderr
            assert result.stderr.startswith(
                f"jaxlab: error: {workdir} is in use by a running "
                f"jaxlab process (pid {os.getpid()} on"
            )
            assert len(result.stderr.strip().splitlines()) == 1
    assert {k: v for k, v in snapshot(workdir).items() if k.name != ".lock"} == {
        k: v for k, v in before.items() if k.name != ".lock"
    }


@pytest.mark.parametrize("mode", [["--vmap"], ["--parallel", "1"]])
def test_a_run_held_by_a_live_process_is_reported_running(tmp_path, mode):
    workdir = tmp_path / "sweep"
    held = workdir / "seed=1"
    with workdir_lib.lock(held):  # e.g. a `jaxlab train` into that run's workdir
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "jaxlab.cli",
                "sweep",
                SMOKE,
                *SEEDS,
                *mode,
                "--config.train.steps=10",
                "--workdir",
                str(workdir),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == cli.SWEEP_INCOMPLETE, result.stderr
        assert "2 runs: 1 done, 1 running;" in result.stdout
        assert {n: r["status"] for n, r in results(workdir).items()} == {
            "seed=0": "done",
            "seed=1": "running",
        }
    assert sorted(p.name for p in held.iterdir()) == [".lock"]  # not touched


def sweep_workers(workdir):
    """PIDs of the worker processes training runs of the sweep in ``workdir``."""
    found = subprocess.run(
        ["pgrep", "-f", f"jaxlab.sweep.worker {workdir}"], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in found.split()]


PARALLEL_SWEEP = [
    SMOKE,
    "--sweep",
    "config.seed=0,1,2",
    "--parallel",
    "2",
    "--config.train.steps=400",
    "--config.train.log_every=5",
    "--config.train.checkpoint_every=5",
    "--config.train.eval_every=200",
]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_a_stopped_process_sweep_stops_its_workers_and_launches_nothing_more(tmp_path, how):
    workdir = tmp_path / "sweep"
    process = launch_sweep(PARALLEL_SWEEP, workdir, tmp_path / "cache")
    wait_for(lambda: all(trial_step(workdir, f"seed={s}") >= 10 for s in (0, 1)), process)
    workers = sweep_workers(workdir)
    assert len(workers) == 2
    process.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
    status, err = finish(process, workdir)
    deadline = time.monotonic() + 120
    while sweep_workers(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sweep_workers(workdir) == []  # no orphan trains on
    for seed in (0, 1):  # each worker committed a checkpoint of the step it stopped at
        run = workdir / f"seed={seed}"
        assert "stopped by SIGTERM" in (run / "run.log").read_text()
        with Checkpoints(run / "checkpoints", keep=10) as checkpoints:
            assert checkpoints.latest_step() == trial_step(workdir, f"seed={seed}") < 400
    assert not (workdir / "seed=2" / "metrics.jsonl").exists()  # never launched
    if how == "SIGTERM":
        assert status == cli.INTERRUPTED, err
        assert err.strip().splitlines()[-1].startswith("jaxlab: sweep stopped by SIGTERM: ")
        assert {n: r["status"] for n, r in results(workdir).items()} == {
            f"seed={s}": "pending" for s in range(3)
        }
    else:
        assert status == -signal.SIGKILL
