"""Population-based training of a vmapped sweep: at each interval the worst runs take the state
of the best and perturbed values, on the device; each run's lineage and records show its
schedule; bad settings are one error line; a population left at different steps by a kill, or
killed at random moments, resumes to the same decisions and table as one that was not."""

import dataclasses
import math
import random
import shutil
import signal

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab.config import registry
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare
from jaxlab.report import report
from jaxlab.sweep import axis, product
from jaxlab.sweep.pbt import PopulationBasedTraining, read_lineage
from jaxlab.sweep.trials import TrialGroup, TrialProgram
from tests.conftest import read_jsonl, without_progress
from tests.test_cli import jaxlab_cli
from tests.test_faults import finish
from tests.test_halving import table
from tests.test_sweep_faults import interrupt_at_random_moments, launch_sweep

FIXED = {"train.steps": 60, "train.log_every": 10, "train.eval_every": 10,
         "train.checkpoint_every": 10, "train.keep_checkpoints": 10}  # fmt: skip
RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
PBT = PopulationBasedTraining(interval=20, metric="eval/loss", fraction=0.25, seed=3)


def lineages(workdir, rows):
    return {row["run"]: read_lineage(workdir / row["run"]) for row in rows}


def population(workdir):
    return jaxlab.sweep(
        "mlp_moons:smoke", axis("config.optimizer.learning_rate", RATES), workdir,
        vmap=True, fixed_overrides=FIXED, scheduler=PBT,
    )  # fmt: skip


def test_the_worst_take_the_state_of_the_best_and_perturbed_values(tmp_path):
    rows = population(tmp_path)
    assert [row["status"] for row in rows] == ["done"] * 8
    lineage = lineages(tmp_path, rows)
    records = {name: read_jsonl(tmp_path / name / "metrics.jsonl") for name in lineage}
    in_force = {name: entries[0]["values"]["optimizer.learning_rate"]
                for name, entries in lineage.items()}  # fmt: skip
    assert list(in_force.values()) == RATES
    copies = 0
    for index, step in enumerate([20, 40], start=1):
        loss = {name: next(r["eval/loss"] for r in records[name] if r["step"] == step)
                for name in lineage}  # fmt: skip
        ranked = sorted(lineage, key=lambda name: loss[name])
        for name, entries in lineage.items():
            entry = entries[index]
            assert entry["step"] == step and entry["eval/loss"] == pytest.approx(loss[name])
            value = entry["values"]["optimizer.learning_rate"]
            if name in ranked[-2:]:  # the worst quarter: a parent among the best quarter
                assert entry["parent"] in ranked[:2]
                assert any(
                    value == float(f"{in_force[entry['parent']] * f:.6g}") for f in (0.8, 1.2)
                )
                copies += 1
            else:
                assert entry["parent"] is None and value == in_force[name]
        in_force = {name: entries[index]["values"]["optimizer.learning_rate"]
                    for name, entries in lineage.items()}  # fmt: skip
        for name in lineage:  # the records show the learning rate in force
            after = next(r for r in records[name] if r["step"] == step + 10)
            assert after["train/learning_rate"] == pytest.approx(in_force[name], rel=1e-6)
    assert copies == 4
    for row in rows:  # the table shows each run's start and its values at the end
        assert row["pbt/optimizer.learning_rate"] == in_force[row["run"]]
    text = report(str(tmp_path))
    assert "its schedule (population-based training): step 0: optimizer.learning_rate=" in text
    assert (tmp_path / "sweep_lineage.png").stat().st_size > 10_000


def test_a_copy_takes_the_whole_state_but_its_random_key():
    configs = [
        registry.load_config("mlp_moons:smoke", {"optimizer.learning_rate": rate, "seed": seed})
        for rate, seed in [(1e-3, 0), (1e-2, 1), (1e-1, 2), (3e-1, 3)]
    ]
    group = TrialGroup.of(configs)
    setup = prepare(group.base, runs=group.size)
    program = TrialProgram(group, setup.task, setup.mesh)
    before = jax.device_get(program.init())
    after = jax.device_get(program.regroup(program.init(), np.array([0, 0, 3, 3])))
    for name in before:
        for old, new in zip(jax.tree.leaves(before[name]), jax.tree.leaves(after[name])):
            rows = [0, 1, 2, 3] if name == "rng" else [0, 0, 3, 3]
            np.testing.assert_array_equal(new, old[rows])
    program.set_values({"optimizer.learning_rate": np.array([1.0, 2.0, 3.0, 4.0])})
    assert program.values["optimizer.learning_rate"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert program.values["seed"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "kept",
    [
        [30, 40, 30, 40, 30, 40, 40, 30],
        pytest.param([20, 30, 20, 30, 30, 20, 30, 20], marks=pytest.mark.slow),
    ],
    ids=["some-saved-after-the-exploit-at-40", "between-two-exploits"],
)
def test_a_population_left_at_different_steps_resumes_to_the_same_end(tmp_path, kept):
    reference = tmp_path / "reference"
    rows = population(reference)
    # What a kill leaves: no outcomes, and each run's newest checkpoint where a kill can leave
    # it (the runs never straddle an exploit step), its records and lineage running ahead.
    killed = tmp_path / "killed"
    shutil.copytree(reference, killed)
    for row, step in zip(rows, kept):
        (killed / row["run"] / "sweep_result.json").unlink()
        for checkpoint in (killed / row["run"] / "checkpoints").iterdir():
            if checkpoint.name.isdigit() and int(checkpoint.name) > step:
                shutil.rmtree(checkpoint)
    population(killed)
    assert table(killed) == table(reference)
    assert lineages(killed, rows) == lineages(reference, rows)


def test_settings_the_population_cannot_honour_are_one_line(tmp_path):
    rates = "--sweep", "config.optimizer.learning_rate=1e-3,1e-2,1e-1"
    base = ["mlp_moons:smoke", "--scheduler", "pbt", *rates, "--config.train.steps=60"]
    for extra, message in [
        (["--interval", "20"], "--scheduler pbt trains the population as one vmapped program: "
                               "add --vmap"),
        (["--vmap", "--interval", "15"], "--interval 15 must be below config.train.steps=60 "
                                         "and a multiple of"),
    ]:  # fmt: skip
        result = jaxlab_cli("sweep", *base, *extra, "--workdir", str(tmp_path / "bad"))
        assert result.returncode == 2, result.stderr
        (line,) = without_progress(result.stderr)
        assert line.startswith("jaxlab: error: ") and message in line, line
    rates = axis("config.optimizer.learning_rate", [1e-3, 1e-2])
    for points, settings, message in [
        (rates, {"interval": 60}, "--interval 60 must be below"),
        (rates, {"fraction": 0.6}, r"--fraction must be in \(0, 0.5\]"),
        (rates, {"mode": "up"}, "--mode must be min or max"),
        (rates, {"metric": "loss"}, "--metric 'loss': compare runs"),
        (axis("config.seed", [0]), {}, "a population of 2 runs or more, got 1"),
        (axis("config.model.dropout", [0.0, 0.1]), {}, "differ in config.model.dropout, which"),
    ]:
        pbt = dataclasses.replace(PBT, **settings)
        with pytest.raises(UserError, match=message):
            jaxlab.sweep("mlp_moons:smoke", points, tmp_path / "bad", vmap=True,
                         fixed_overrides=FIXED, scheduler=pbt)  # fmt: skip
    assert not (tmp_path / "bad").exists()


SEARCH = ["mlp_moons:smoke", "--vmap", "--scheduler", "pbt", "--interval", "20",
          "--fraction", "0.25", "--search-seed", "3",
          "--sweep", "config.optimizer.learning_rate=loguniform(1e-4,3e-1)", "--samples", "8",
          *(f"--config.{k}={v}" for k, v in {**FIXED, "train.steps": 120}.items())]  # fmt: skip


@pytest.mark.slow
def test_a_population_killed_three_times_and_stopped_ends_as_one_that_was_not(tmp_path):
    reference, cache = tmp_path / "reference", tmp_path / "cache"
    status, err = finish(launch_sweep(SEARCH, reference, cache), reference)
    assert status == 0, err
    workdir = tmp_path / "search"
    stops = [signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGTERM]
    interrupt_at_random_moments(SEARCH, workdir, cache, random.Random(7), stops, range(40, 200, 10))
    status, err = finish(launch_sweep(SEARCH, workdir, cache), workdir)
    assert status == 0, err
    assert table(workdir) == table(reference)
    names = list(table(reference))
    assert {n: read_lineage(workdir / n) for n in names} == {
        n: read_lineage(reference / n) for n in names
    }
    assert not math.isnan(float(table(workdir)[names[0]]["eval/loss"]))


def test_the_seed_is_not_perturbed_each_run_keeps_its_own(tmp_path):
    points = product(axis("config.optimizer.learning_rate", [1e-3, 1e-1]), axis("seed", [0, 1]))
    rows = jaxlab.sweep("mlp_moons:smoke", points, tmp_path, vmap=True,
                        fixed_overrides={**FIXED, "train.steps": 40}, scheduler=PBT)  # fmt: skip
    for row in rows:  # the seed is not perturbed: each run keeps its own
        assert list(read_lineage(tmp_path / row["run"])[0]["values"]) == ["optimizer.learning_rate"]
