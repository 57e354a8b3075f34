"""Successive halving of a vmapped sweep: at each rung the best runs by the metric go on and the
others stop (their records and checkpoints left at the rung), the compute spent shrinks, bad
settings are one error line, and a search killed at random moments takes the same decisions and
ends with the same table as one that was not."""

import csv
import random
import signal

import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.report import report
from jaxlab.sweep import axis
from jaxlab.sweep.halving import Halving
from tests.conftest import read_jsonl, without_progress
from tests.test_cli import jaxlab_cli
from tests.test_faults import finish
from tests.test_sweep_faults import interrupt_at_random_moments, launch_sweep

FIXED = {"train.steps": 80, "train.log_every": 10, "train.eval_every": 10,
         "train.checkpoint_every": 10}  # fmt: skip
RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
BASE = ["mlp_moons:smoke", "--vmap", "--scheduler", "halving",
        "--sweep", "config.optimizer.learning_rate=loguniform(1e-4,3e-1)", "--samples", "8",
        *(f"--config.{k}={v}" for k, v in FIXED.items())]  # fmt: skip
SEARCH = [*BASE, "--min-steps", "10", "--reduction", "2"]
TIMING = ("perf/steps_per_s", "wall_time_s")


def table(workdir):
    with open(workdir / "results.csv") as file:
        return {
            row["run"]: {k: v for k, v in row.items() if k not in TIMING}
            for row in csv.DictReader(file)
        }


def test_each_rung_keeps_the_best_and_stops_the_rest_where_they_are(tmp_path):
    halving = Halving(min_steps=10, reduction=2, metric="eval/loss")
    assert halving.rungs(80) == [10, 20, 40, 80]
    rows = jaxlab.sweep(
        "mlp_moons:smoke", axis("config.optimizer.learning_rate", RATES), tmp_path,
        vmap=True, fixed_overrides=FIXED, scheduler=halving,
    )  # fmt: skip
    by_rung = {}
    for row in rows:
        steps = [r["step"] for r in read_jsonl(tmp_path / row["run"] / "metrics.jsonl")]
        assert steps == list(range(10, steps[-1] + 1, 10))  # records end at its last rung
        by_rung.setdefault(steps[-1], []).append(row)
        assert row["status"] == ("done" if steps[-1] == 80 else "stopped")
    assert {rung: len(group) for rung, group in by_rung.items()} == {10: 4, 20: 2, 40: 1, 80: 1}
    for rung in (10, 20, 40):  # everyone stopped at a rung did worse there than those kept

        def at(row, step=rung):
            records = read_jsonl(tmp_path / row["run"] / "metrics.jsonl")
            return next(r["eval/loss"] for r in records if r["step"] == step)

        later = [row for row in rows if row["step"] > rung]
        assert max(at(row) for row in later) <= min(at(row) for row in by_rung[rung])
        assert all(f"(step {rung}): eval/loss=" in row["error"] for row in by_rung[rung])
    spent = sum(row["step"] for row in rows)
    assert spent == 8 * 10 + 4 * 10 + 2 * 20 + 1 * 40  # 200 trial-steps, not the grid's 640
    (winner,) = by_rung[80]
    assert (
        f"best: {winner['run']} (eval/loss={winner['eval/loss']:.6g}): "
        f"--config.optimizer.learning_rate={winner['optimizer.learning_rate']}"
    ) in report(str(tmp_path)).splitlines()


def test_settings_the_runs_cannot_honour_are_one_line(tmp_path):
    for extra, message in [
        (["--min-steps", "15"], "--min-steps 15 must be below config.train.steps=80 and a "
                                "multiple of 10, where eval/loss is recorded"),
        (["--min-steps", "10", "--reduction", "1"], "--reduction must be at least 2, got 1"),
        (["--min-steps", "10", "--metric", "loss"],
         "--metric 'loss': compare runs by a train/ or eval/ metric"),
    ]:  # fmt: skip
        result = jaxlab_cli("sweep", *BASE, *extra, "--workdir", str(tmp_path / "bad"))
        assert result.returncode == 2, result.stderr
        (line,) = without_progress(result.stderr)
        assert line.startswith("jaxlab: error: ") and message in line, line
    lengths = axis("config.train.steps", [40, 80])
    with pytest.raises(UserError, match="config.train.steps must be equal, got 40, 80"):
        jaxlab.sweep("mlp_moons:smoke", lengths, tmp_path / "l",
                     scheduler=Halving(10, 2, "eval/loss"))  # fmt: skip
    assert not any((tmp_path / name).exists() for name in ("bad", "l"))


@pytest.mark.slow
def test_a_search_killed_three_times_takes_the_same_decisions(tmp_path):
    reference, cache = tmp_path / "reference", tmp_path / "cache"
    status, err = finish(launch_sweep(SEARCH, reference, cache), reference)
    assert status == 0, err
    workdir = tmp_path / "search"
    kills = [signal.SIGKILL] * 3  # at moments spread over the rungs
    interrupt_at_random_moments(SEARCH, workdir, cache, random.Random(5), kills, range(10, 60, 10))
    status, err = finish(launch_sweep(SEARCH, workdir, cache), workdir)
    assert status == 0, err
    assert table(workdir) == table(reference)
    (winner,) = [name for name, row in table(reference).items() if row["status"] == "done"]
    assert read_jsonl(workdir / winner / "metrics.jsonl") == read_jsonl(
        reference / winner / "metrics.jsonl"
    )


@pytest.mark.slow  # 30 s: seven worker processes, then the same search vmapped
def test_process_workers_stop_at_the_rungs_and_decide_as_the_vmapped_search(tmp_path):
    rates = axis("config.optimizer.learning_rate", [1e-4, 1e-3, 1e-2, 1e-1])
    halving = Halving(min_steps=20, reduction=2, metric="eval/loss")
    fixed = {**FIXED, "train.eval_every": 20, "train.checkpoint_every": 20}
    outcomes = {}
    for vmap in (False, True):
        rows = jaxlab.sweep("mlp_moons:smoke", rates, tmp_path / str(vmap), vmap=vmap,
                            parallel=2, fixed_overrides=fixed, scheduler=halving)  # fmt: skip
        outcomes[vmap] = {row["run"]: (row["status"], row["step"]) for row in rows}
    assert outcomes[False] == outcomes[True]
    assert sorted(outcomes[False].values()) == [
        ("done", 80),
        ("stopped", 20),
        ("stopped", 20),
        ("stopped", 40),
    ]


@pytest.mark.slow  # 60 s: a local Ray cluster started for each of the three rungs
def test_ray_tasks_stop_at_the_rungs_and_decide_as_the_vmapped_search(tmp_path):
    pytest.importorskip("ray")
    rates = axis("config.optimizer.learning_rate", [1e-4, 1e-3, 1e-2, 1e-1])
    halving = Halving(min_steps=20, reduction=2, metric="eval/loss")
    fixed = {**FIXED, "train.eval_every": 20, "train.checkpoint_every": 20}
    outcomes = {}
    for backend, vmap in (("ray", False), ("local", True)):
        rows = jaxlab.sweep("mlp_moons:smoke", rates, tmp_path / backend, vmap=vmap,
                            backend=backend, parallel=2, fixed_overrides=fixed,
                            scheduler=halving)  # fmt: skip
        outcomes[backend] = {row["run"]: (row["status"], row["step"]) for row in rows}
    assert outcomes["ray"] == outcomes["local"]
    assert sorted(outcomes["ray"].values()) == [
        ("done", 80),
        ("stopped", 20),
        ("stopped", 20),
        ("stopped", 40),
    ]
