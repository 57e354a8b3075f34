"""Several processes (2 x 4 simulated CPU devices, gloo collectives) run the same as one 8-device
process, and checkpoints move between the two topologies and onto a single device."""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab.loop.train import evaluate_workdir
from tests.conftest import REPO, read_jsonl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch_two_processes(*args: str) -> list[subprocess.Popen]:
    """Starts ``python -m jaxlab.cli ARGS`` as processes 0 and 1 of one run, 4 CPU devices each."""
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4"
    )
    address = f"localhost:{_free_port()}"
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxlab.cli",
                *args,
                "--coordinator-address",
                address,
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]


def run_two_processes(*args: str) -> list[subprocess.CompletedProcess]:
    """`launch_two_processes`, waited for; both must succeed."""
    procs = launch_two_processes(*args)
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    return results


def train_two_processes(workdir, overrides):
    """`jaxlab train minimal_transformer:smoke` in ``workdir`` by 2 processes, with
    ``overrides`` (dotted config keys)."""
    flags = [f"--config.{key}={value}" for key, value in overrides.items()]
    run_two_processes(
        "train", "minimal_transformer:smoke", "--workdir", str(workdir), "--quiet", *flags
    )


@pytest.mark.slow  # 35 s: two JAX processes, then one
def test_two_processes_equal_one_process_and_checkpoints_cross_topologies(tmp_path):
    overrides = {"train.log_every": 1}
    one, two = tmp_path / "one_process", tmp_path / "two_processes"
    config = jaxlab.load_config("minimal_transformer:smoke", overrides)
    single = jaxlab.train(config, one, quiet=True)

    train_two_processes(two, overrides)
    losses_one = [r["train/loss"] for r in read_jsonl(one / "metrics.jsonl")]
    losses_two = [r["train/loss"] for r in read_jsonl(two / "metrics.jsonl")]
    assert len(losses_one) == len(losses_two) == 20  # written once, by process 0
    np.testing.assert_allclose(losses_one, losses_two, rtol=1e-5, atol=1e-5)

    # written by 2 processes -> restored on 8 devices and on 1 device
    for devices in (jax.devices(), jax.devices()[:1]):
        restored = evaluate_workdir(two, devices=devices)
        last = read_jsonl(two / "metrics.jsonl")[-1]
        np.testing.assert_allclose(restored["eval/loss"], last["eval/loss"], rtol=1e-5)
        np.testing.assert_allclose(restored["eval/loss"], single["eval/loss"], rtol=1e-4)

    # written by 1 process on 8 devices -> restored on 2 processes
    evaluated = run_two_processes("eval", str(one))
    json_lines = [
        [line for line in r.stdout.splitlines() if line.startswith("{")] for r in evaluated
    ]  # gloo prints its own lines too
    assert len(json_lines[0]) == 1 and json_lines[1] == []  # only process 0 reports
    printed = json.loads(json_lines[0][0])
    assert printed["step"] == 20
    np.testing.assert_allclose(printed["eval/loss"], single["eval/loss"], rtol=1e-5)


@pytest.mark.slow
def test_a_dead_peer_ends_the_run_within_the_heartbeat_timeout_and_it_resumes(tmp_path):
    """What docs/faults.md says of a multi-process run whose peer dies, measured: the survivor
    is ended by JAX (an abort: no Python code runs) about ``--heartbeat-timeout`` seconds later,
    or at once when a collective breaks; the same command, on every process, resumes."""
    workdir = tmp_path / "run"
    args = [
        "train",
        "minimal_transformer:smoke",
        "--workdir",
        str(workdir),
        "--quiet",
        "--heartbeat-timeout",
        "5",
        "--config.train.log_every=5",
        "--config.train.checkpoint_every=10",
        "--config.train.eval_every=10",
    ]
    procs = launch_two_processes(*args, "--config.train.steps=100000")
    deadline = time.monotonic() + 240
    while not (workdir / "checkpoints" / "20").is_dir():
        assert time.monotonic() < deadline and procs[0].poll() is None, "no checkpoint 20"
        time.sleep(0.2)
    procs[1].kill()
    killed = time.monotonic()
    procs[0].wait(timeout=120)
    assert procs[0].returncode != 0 and time.monotonic() - killed < 60
    for proc in procs:
        proc.communicate()
    resumed = run_two_processes(*args, "--config.train.steps=40", "--allow-config-change")
    assert all(r.returncode == 0 for r in resumed)
    assert read_jsonl(workdir / "metrics.jsonl")[-1]["step"] == 40


@pytest.mark.slow
def test_fsdp_and_tensor_axes_spanning_two_processes_train_as_one_device_does(tmp_path):
    """FSDP(4) x tensor(2) over 2 processes of 4 devices: the fsdp axis crosses the processes,
    each process holds its shards only, and the checkpoint restores onto one device."""
    overrides = {"train.log_every": 2, "sharding.fsdp_min_size": 64}
    one, two = tmp_path / "one_device", tmp_path / "two_processes"
    config = jaxlab.load_config("minimal_transformer:smoke", overrides)
    single = jaxlab.train(config, one, quiet=True, devices=jax.devices()[:1])
    train_two_processes(two, {**overrides, "mesh.fsdp": 4, "mesh.tensor": 2})
    losses_one = [r["train/loss"] for r in read_jsonl(one / "metrics.jsonl")]
    losses_two = [r["train/loss"] for r in read_jsonl(two / "metrics.jsonl")]
    assert len(losses_two) == 10
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5, atol=1e-6)
    restored = evaluate_workdir(two, jax.devices()[:1], mesh={"fsdp": 1, "tensor": 1})
    np.testing.assert_allclose(restored["eval/loss"], single["eval/loss"], rtol=1e-5)
