"""``--search optuna``: Optuna asks for the runs from the sampled spaces by ask-and-tell, the
sweep trains them (vmapped here) and tells back their metric; the search resumes from its
storage in the sweep directory, asking what an uninterrupted search would."""

import csv
import json
import sqlite3
import subprocess
import sys

import pytest

import jaxlab
from jaxlab.sweep import LogUniform, plan
from jaxlab.sweep.halving import Halving
from jaxlab.sweep.optuna_search import STORAGE_FILE, search
from tests.conftest import read_jsonl, without_progress
from tests.test_cli import jaxlab_cli

pytest.importorskip("optuna")
SPACE = {"config.optimizer.learning_rate": LogUniform(1e-4, 3e-1)}
SPEC = "mlp_moons:smoke"


def run_search(directory, samples, train=None):
    def sweep_of(points):
        return jaxlab.sweep(SPEC, points, directory, vmap=True)

    return search(SPACE, directory, train or sweep_of, samples=samples, batch=3,
                  metric="eval/loss", mode="min", seed=0,
                  run_name=lambda point: plan(SPEC, [point])[0].name)  # fmt: skip


def told(directory):
    """(number, state, value, learning rate) of every trial in the study's storage."""
    with sqlite3.connect(directory / STORAGE_FILE) as db:
        trials = db.execute(
            "SELECT t.number, t.state, v.value, p.param_value FROM trials t "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
            "JOIN trial_params p ON p.trial_id = t.trial_id ORDER BY t.number"
        ).fetchall()
    return trials


def test_optuna_asks_the_sweep_trains_and_the_metric_is_told(tmp_path):
    rows = run_search(tmp_path / "whole", samples=6)
    assert len(rows) == 6 and {row["status"] for row in rows} == {"done"}
    trials = told(tmp_path / "whole")
    assert [(number, state) for number, state, _, _ in trials] == [
        (i, "COMPLETE") for i in range(6)
    ]
    by_rate = {row["optimizer.learning_rate"]: row["eval/loss"] for row in rows}
    for _, _, value, rate in trials:  # each told value is its run's final eval/loss
        assert value == pytest.approx(by_rate[float(f"{rate:.6g}")])


@pytest.mark.slow  # 15 s: two searches of six runs
def test_a_resumed_search_asks_what_an_uninterrupted_one_would(tmp_path):
    whole = run_search(tmp_path / "whole", samples=6)

    def interrupted(points):  # the second batch asked, then stopped before it trained
        if len(points) > 3:
            raise jaxlab.Interrupted("stopped", step=None, reason="SIGTERM")
        return jaxlab.sweep(SPEC, points, tmp_path / "split", vmap=True)

    run_search(tmp_path / "split", samples=3)
    with pytest.raises(jaxlab.Interrupted):
        run_search(tmp_path / "split", samples=6, train=interrupted)
    assert [state for _, state, _, _ in told(tmp_path / "split")][3:] == ["RUNNING"] * 3
    resumed = run_search(tmp_path / "split", samples=6)
    key = lambda rows: sorted((r["run"], r["status"], r["eval/loss"]) for r in rows)  # noqa: E731
    assert key(resumed) == key(whole)
    assert told(tmp_path / "split") == told(tmp_path / "whole")


def test_bad_search_settings_are_one_line(tmp_path):
    for extra, message in [
        (["--sweep", "config.seed=0,1"], "--search optuna takes sampled spaces only"),
        (["--sweep", "config.optimizer.learning_rate=uniform(0.1,0.2)", "--sampler", "cma"],
         "--sampler must be one of tpe, random, got 'cma'"),
    ]:  # fmt: skip
        result = jaxlab_cli("sweep", SPEC, "--search", "optuna", "--samples", "2", *extra,
                            "--workdir", str(tmp_path / "bad"))  # fmt: skip
        assert result.returncode == 2
        (line,) = without_progress(result.stderr)
        assert line.startswith("jaxlab: error: ") and message in line, line
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # 19 s: two batches of three runs, rung by rung
def test_runs_stopped_at_a_rung_are_pruned_and_compared_with_earlier_batches(tmp_path):
    fixed = {"train.steps": 40, "train.log_every": 10, "train.eval_every": 10}
    halving = Halving(min_steps=10, reduction=2, metric="eval/loss")

    def sweep_of(points):
        return jaxlab.sweep(SPEC, points, tmp_path, vmap=True, fixed_overrides=fixed,
                            scheduler=halving)  # fmt: skip

    rows = search(SPACE, tmp_path, sweep_of, samples=6, batch=3, metric="eval/loss", mode="min",
                  seed=0, run_name=lambda point: plan(SPEC, [point], fixed)[0].name,
                  rungs=halving.rungs(40))  # fmt: skip
    trials = {number: state for number, state, _, _ in told(tmp_path)}
    statuses = [row["status"] for row in rows]
    assert [trials[i] for i in range(6)] == [
        {"done": "COMPLETE", "stopped": "PRUNED"}[status] for status in statuses
    ]
    assert "stopped" in statuses and "done" in statuses
    with sqlite3.connect(tmp_path / STORAGE_FILE) as db:
        reported = db.execute(
            "SELECT t.number, v.step, v.intermediate_value FROM trial_intermediate_values v "
            "JOIN trials t ON t.trial_id = v.trial_id ORDER BY t.number, v.step"
        ).fetchall()
    values = {}  # each run's eval/loss at the rungs it reached, as reported
    for number, step, value in reported:
        values.setdefault(number, {})[step] = value
    for number, row in enumerate(rows):
        records = read_jsonl(tmp_path / row["run"] / "metrics.jsonl")
        assert values[number] == {
            r["step"]: pytest.approx(r["eval/loss"]) for r in records if r["step"] in (10, 20, 40)
        }
    # The second batch's runs went on from a rung only among the best half of all six there.
    for number in (3, 4, 5):
        for rung in (10, 20):
            if rung * 2 in values[number]:
                at_rung = sorted(v[rung] for v in values.values() if rung in v)
                assert values[number][rung] <= at_rung[len(at_rung) // 2 - 1]


@pytest.mark.slow  # 40 s: two searches at once, each its own processes
def test_two_searches_share_one_study_each_training_and_telling_its_own(tmp_path):
    study = tmp_path / "study.db"
    command = [sys.executable, "-m", "jaxlab.cli", "sweep", SPEC, "--search", "optuna",
               "--samples", "6", "--batch", "2", "--vmap", "--study", str(study),
               "--sweep", "config.optimizer.learning_rate=loguniform(1e-4,3e-1)"]  # fmt: skip
    searches = [
        subprocess.Popen(
            [*command, "--workdir", str(tmp_path / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for name in ("a", "b")
    ]
    for search_ in searches:
        output, _ = search_.communicate(timeout=600)
        assert search_.returncode == 0, output
    with sqlite3.connect(study) as db:
        trials = db.execute(
            "SELECT t.number, t.state, a.value_json FROM trials t JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id WHERE a.key = 'jaxlab_sweep' ORDER BY t.number"
        ).fetchall()
    assert 6 <= len(trials) <= 7  # the budget, and at most one asked as the other finished
    assert {state for _, state, _ in trials} == {"COMPLETE"}
    owners = [json.loads(owner) for _, _, owner in trials]
    for name in ("a", "b"):  # each trained the trials it asked for, and only those
        mine = owners.count(str((tmp_path / name).resolve()))
        assert mine >= 2
        with open(tmp_path / name / "results.csv") as file:
            assert len(list(csv.DictReader(file))) == mine
