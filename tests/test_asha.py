"""Asynchronous successive halving in worker processes: a run goes on from a rung once it is among
the best of the runs before it there, without waiting for the rung's last run; the decisions
follow a fixed order, so they do not depend on which worker finishes first, and a search killed
at random moments ends with the table of one that was not."""

import json
import random
import signal

import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.sweep import axis, plan
from jaxlab.sweep.asha import survey
from jaxlab.sweep.halving import Halving
from tests.test_faults import finish
from tests.test_halving import table
from tests.test_sweep_faults import interrupt_at_random_moments, launch_sweep

FIXED = {"train.steps": 40, "train.log_every": 10, "train.eval_every": 10,
         "train.checkpoint_every": 10}  # fmt: skip
ASHA = Halving(min_steps=10, reduction=2, metric="eval/loss", asynchronous=True)


def recorded(workdir, runs, losses):
    """Writes each run's metrics.jsonl: ``losses[i]`` maps a step to run i's eval/loss."""
    for run_, steps in zip(runs, losses):
        (workdir / run_.name).mkdir(parents=True)
        lines = [json.dumps({"step": s, "eval/loss": v}) + "\n" for s, v in steps.items()]
        (workdir / run_.name / "metrics.jsonl").write_text("".join(lines))


def test_a_run_goes_on_once_among_the_best_of_the_runs_before_it(tmp_path):
    runs = plan("mlp_moons:smoke", axis("config.seed", range(4)), FIXED)
    recorded(tmp_path, runs, [{10: 0.5}, {10: 0.4}, {10: 0.9}, {10: 0.1}])
    turns = survey(runs, tmp_path, ASHA).turns
    # Two runs in, the better goes on; four in, the best two: run 3 joins. Runs 0 and 2 stop.
    assert [r.name for r in turns[1]] == [runs[1].name, runs[3].name]
    assert survey(runs, tmp_path, ASHA).settled[0]

    late = tmp_path / "late"  # run 2 has not reached the rung: run 3 waits for it
    recorded(late, runs, [{10: 0.5}, {10: 0.4}, {}, {10: 0.1}])
    waiting = survey(runs, late, ASHA)
    assert [r.name for r in waiting.turns[1]] == [runs[1].name]
    assert not waiting.settled[0]

    ahead = tmp_path / "ahead"  # rung 2 (step 20): the first two to reach it, in their order
    recorded(ahead, runs, [{10: 0.5}, {10: 0.4, 20: 0.3}, {10: 0.9}, {10: 0.1, 20: 0.05}])
    turns = survey(runs, ahead, ASHA).turns
    assert [r.name for r in turns[2]] == [runs[3].name]


def test_asha_is_for_workers_not_a_vmapped_program(tmp_path):
    with pytest.raises(UserError, match="with --vmap use --scheduler halving"):
        jaxlab.sweep("mlp_moons:smoke", axis("config.seed", [0, 1]), tmp_path / "bad",
                     fixed_overrides=FIXED, scheduler=ASHA, vmap=True)  # fmt: skip
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # 60 s: a local Ray cluster, a task for each rung of each run
def test_asha_on_ray_tasks_decides_as_in_local_workers(tmp_path):
    pytest.importorskip("ray")
    rates = axis("config.optimizer.learning_rate", [1e-4, 1e-3, 1e-2, 1e-1, 3e-1])
    outcomes = {}
    for backend in ("ray", "local"):
        rows = jaxlab.sweep("mlp_moons:smoke", rates, tmp_path / backend, backend=backend,
                            parallel=2, fixed_overrides=FIXED, scheduler=ASHA)  # fmt: skip
        outcomes[backend] = {row["run"]: (row["status"], row["step"], row["error"])
                             for row in rows}  # fmt: skip
    assert outcomes["ray"] == outcomes["local"]
    assert {status for status, _, _ in outcomes["ray"].values()} == {"done", "stopped"}


SEARCH = ["mlp_moons:smoke", "--scheduler", "asha", "--min-steps", "10", "--reduction", "2",
          "--sweep", "config.optimizer.learning_rate=loguniform(1e-4,3e-1)", "--samples", "5",
          *(f"--config.{k}={v}" for k, v in FIXED.items())]  # fmt: skip


@pytest.mark.slow  # 2-3 min: worker processes for each rung of each run, three times over
def test_killed_stopped_and_with_more_workers_a_search_decides_as_one_worker_alone(tmp_path):
    reference, cache = tmp_path / "reference", tmp_path / "cache"
    status, err = finish(launch_sweep([*SEARCH, "--parallel", "1"], reference, cache), reference)
    assert status == 0, err
    rows = table(reference)
    statuses = sorted((row["status"], row["step"]) for row in rows.values())
    assert statuses.count(("done", "40")) >= 1 and ("stopped", "10") in statuses
    workdir = tmp_path / "search"
    stops = [signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGTERM]
    more = range(10, 40, 10)
    interrupt_at_random_moments([*SEARCH, "--parallel", "2"], workdir, cache, random.Random(3),
                                stops, more)  # fmt: skip
    status, err = finish(launch_sweep([*SEARCH, "--parallel", "2"], workdir, cache), workdir)
    assert status == 0, err
    assert table(workdir) == rows
