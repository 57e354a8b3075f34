"""A signal is never lost: SIGINT/SIGTERM at any moment of a command's start-up, to a sweep's
workers while they start, and to a Ray sweep, stops with exit 75 and one line, and what ran stays
resumable. These run the installed ``jaxlab`` command, as a user does."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from jaxlab import cli
from jaxlab.rundir.checkpoint import Checkpoints

JAXLAB = str(pathlib.Path(sys.executable).parent / "jaxlab")
LONG_MOONS = [
    "mlp_moons:smoke",
    "--config.train.steps=200000",
    "--config.train.log_every=10",
    "--config.train.eval_every=100000",
    "--config.train.checkpoint_every=100000",
]


def launch(args, tmp_path):
    return subprocess.Popen(
        [JAXLAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )


def stopped_cleanly(process, timeout=180):
    """(exit status, stderr) once the process ended; stderr holds no traceback."""
    _, err = process.communicate(timeout=timeout)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return process.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, delay",
    [
        (signal.SIGINT, 0.05),
        (signal.SIGINT, 0.5),
        (signal.SIGINT, 1.2),
        (signal.SIGINT, 2.5),
        (signal.SIGINT, 4.0),
        (signal.SIGTERM, 1.0),
    ],
)
def test_a_signal_during_start_up_stops_train_with_75_and_one_line(tmp_path, signum, delay):
    workdir = tmp_path / "run"
    process = launch(["train", *LONG_MOONS, "--workdir", str(workdir)], tmp_path)
    time.sleep(delay)
    process.send_signal(signum)
    status, err = stopped_cleanly(process)
    assert status == cli.INTERRUPTED, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(f"jaxlab: stopped by {signal.Signals(signum).name} "), err
    assert all(line.startswith("jaxlab:") for line in lines), err  # no other output


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 2.0, 4.0])
def test_a_signal_during_a_vmap_sweeps_start_up_stops_it_with_75(tmp_path, delay):
    workdir = tmp_path / "sweep"
    process = launch(
        ["sweep", *LONG_MOONS, "--sweep", "config.seed=0,1", "--vmap", "--workdir", str(workdir)],
        tmp_path,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    status, err = stopped_cleanly(process)
    assert status == cli.INTERRUPTED, err
    assert err.strip().splitlines()[-1].startswith("jaxlab: sweep stopped by SIGINT"), err


def sweep_workers(workdir):
    found = subprocess.run(
        ["pgrep", "-f", f"jaxlab.sweep.worker {workdir}"], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in found.split()]


def results(workdir):
    return {
        name: json.loads((workdir / name / "sweep_result.json").read_text())
        if (workdir / name / "sweep_result.json").exists()
        else {"status": "pending"}
        for name in json.loads((workdir / "sweep.json").read_text())
    }


def launch_parallel_sweep(workdir, args):
    """``jaxlab sweep ARGS --parallel 2`` into ``workdir``, from its parent directory."""
    command = ["sweep", *args, "--parallel", "2", "--workdir", str(workdir)]
    return launch(command, workdir.parent)


def wait_for_workers(workdir, process, count=2, timeout=120):
    deadline = time.monotonic() + timeout
    while len(sweep_workers(workdir)) < count:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.5, 1.5])
def test_a_signal_while_process_workers_start_leaves_their_runs_pending(tmp_path, delay):
    workdir = tmp_path / "sweep"
    process = launch_parallel_sweep(workdir, [*LONG_MOONS, "--sweep", "config.seed=0,1,2"])
    wait_for_workers(workdir, process)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    status, err = stopped_cleanly(process)
    assert status == cli.INTERRUPTED, err
    assert {n: r["status"] for n, r in results(workdir).items()} == {
        f"seed={s}": "pending" for s in range(3)
    }
    assert sweep_workers(workdir) == []


@pytest.mark.slow
def test_a_worker_killed_by_sigkill_is_recorded_with_that_cause(tmp_path):
    workdir = tmp_path / "sweep"
    args = ["mlp_moons:smoke", "--config.train.steps=2000", "--sweep", "config.seed=0,1"]
    process = launch_parallel_sweep(workdir, args)
    wait_for_workers(workdir, process)
    victim = sorted(sweep_workers(workdir))[0]
    arguments = pathlib.Path(f"/proc/{victim}/cmdline").read_bytes().split(b"\0")
    killed_run = pathlib.Path(arguments[3].decode())  # python -m jaxlab.sweep.worker RUN_DIR
    subprocess.run(["kill", "-9", str(victim)], check=True)
    status, err = stopped_cleanly(process)
    assert status == cli.SWEEP_INCOMPLETE, err
    result = results(workdir)[killed_run.name]
    assert result["status"] == "failed"
    assert result["error"].startswith("the worker was killed by SIGKILL"), result


RAY_SWEEP = [
    "sweep",
    "mlp_moons:smoke",
    "--backend",
    "ray",
    "--parallel",
    "2",
    "--sweep",
    "config.seed=0,1,2",
    "--config.train.steps=100000",
    "--config.train.log_every=5",
    "--config.train.checkpoint_every=5",
    "--config.train.eval_every=100000",
]


def logged_step(run_dir):
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-2])["step"] if len(lines) > 1 else 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_ray_sweep_meets_the_process_backends_contract(tmp_path, signum):
    pytest.importorskip("ray")
    workdir = tmp_path / "sweep"
    process = launch([*RAY_SWEEP, "--workdir", str(workdir)], tmp_path)
    deadline = time.monotonic() + 240
    while not all(logged_step(workdir / f"seed={s}") >= 10 for s in (0, 1)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signum)
    status, err = stopped_cleanly(process, timeout=240)
    assert status == cli.INTERRUPTED, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"jaxlab: sweep stopped by {signal.Signals(signum).name}: ")
    ), err
    assert {n: r["status"] for n, r in results(workdir).items()} == {
        f"seed={s}": "pending" for s in range(3)
    }
    assert (workdir / "results.md").is_file()
    for seed in (0, 1):  # each worker committed a checkpoint of the step it stopped at
        run = workdir / f"seed={seed}"
        assert "stopped by SIGTERM" in (run / "run.log").read_text()
        with Checkpoints(run / "checkpoints", keep=10) as checkpoints:
            step = checkpoints.latest_step()
        assert 10 <= step < 100000
        assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == step
