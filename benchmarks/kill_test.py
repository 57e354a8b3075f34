"""Kills real `jaxlab train` processes with SIGKILL at many seeded random points and checks that
each relaunch finishes with the metrics and final train state of an uninterrupted run, bit for bit.

    python benchmarks/kill_test.py --points 20 --seed 0 --out /tmp/kill_test

Kill points are of three kinds, drawn in turn: after a random logged step plus a random part of
the next chunk; as soon as an asynchronous checkpoint write is under way (its temporary directory
appears); at a random time after launch (start-up, compilation and restore included). Each point
gets a fresh workdir: launch, kill, relaunch to the end, compare. Prints one line per point and a
summary; runs on CPU with 8 simulated devices, like the tests.
"""

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

REPO = pathlib.Path(__file__).resolve().parent.parent
RUN = [
    "minimal_transformer:smoke",
    "--config.train.steps=48",
    "--config.train.log_every=2",
    "--config.train.checkpoint_every=6",
    "--config.train.eval_every=24",
    "--config.train.keep_checkpoints=3",
]
TMP_MARK = ".orbax-checkpoint-tmp"


def launch(workdir: pathlib.Path, cache: pathlib.Path) -> subprocess.Popen:
    """Starts the run; its stderr goes to WORKDIR.stderr (appended)."""
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    with open(workdir.with_suffix(".stderr"), "a") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "jaxlab.cli", "train", *RUN, "--workdir", str(workdir)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def logged_step(workdir: pathlib.Path) -> int:
    from jaxlab.rundir.metrics_log import read_metrics

    records = read_metrics(workdir, warn=False)
    return records[-1]["step"] if records else 0


def wait_for(condition, process, timeout=600) -> bool:
    """True once ``condition()`` holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def final_state(workdir: pathlib.Path):
    import jax

    import jaxlab
    from jaxlab.loop.train import prepare
    from jaxlab.rundir.checkpoint import Checkpoints

    config = jaxlab.load_config("minimal_transformer:smoke")
    with Checkpoints(workdir / "checkpoints", keep=10) as checkpoints:
        step, state = checkpoints.restore_latest(prepare(config).state)
    return step, jax.device_get(state)


def same_run(workdir: pathlib.Path, reference: pathlib.Path) -> bool:
    import jax
    import numpy as np

    from jaxlab.rundir.metrics_log import read_metrics

    if read_metrics(workdir) != read_metrics(reference):
        return False
    (step, got), (ref_step, want) = final_state(workdir), final_state(reference)
    leaves_equal = jax.tree.leaves(jax.tree.map(np.array_equal, got, want))
    return step == ref_step and all(leaves_equal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/kill_test"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    cache, reference = args.out / "compile_cache", args.out / "reference"
    rng = random.Random(args.seed)

    start = time.monotonic()
    process = launch(reference, cache)
    if process.wait() != 0:
        sys.exit(f"the reference run failed; see {reference.with_suffix('.stderr')}")
    launch_time = time.monotonic() - start

    tried = killed = during_write = exact = 0
    for point in range(args.points):
        workdir = args.out / f"point{point}"
        kind = ("after_step", "during_write", "at_time")[point % 3]
        process = launch(workdir, cache)
        if kind == "after_step":
            target = rng.randrange(2, 46, 2)
            reached = wait_for(lambda: logged_step(workdir) >= target, process)
            time.sleep(rng.uniform(0, 0.05))
            where = f"after step {target}"
        elif kind == "during_write":
            reached = wait_for(
                lambda: any(TMP_MARK in p.name for p in (workdir / "checkpoints").glob("*")),
                process,
            )
            where = "during a checkpoint write"
        else:
            delay = rng.uniform(0, launch_time)
            time.sleep(delay)
            reached = True
            where = f"{delay:.1f} s after launch"
        process.send_signal(signal.SIGKILL)
        process.wait()
        tried += 1
        was_killed = process.returncode == -signal.SIGKILL and reached
        killed += was_killed
        left_write = (
            any(TMP_MARK in p.name for p in (workdir / "checkpoints").glob("*"))
            if (workdir / "checkpoints").is_dir()
            else False
        )
        during_write += left_write
        resumed = launch(workdir, cache)
        ok = resumed.wait() == 0 and same_run(workdir, reference)
        exact += ok
        print(
            json.dumps(
                {
                    "point": point,
                    "kill": where,
                    "killed": was_killed,
                    "unfinished_write_left": left_write,
                    "resumed_exactly": ok,
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "kill_points_tried": tried,
                "killed_mid_run": killed,
                "killed_during_checkpoint_write": during_write,
                "resumed_exactly": exact,
                "wall_s": round(time.monotonic() - start, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
