"""Sampled search spaces for sweeps: the same command draws the same runs (and so resumes them),
draws stay in their spaces, listed axes multiply the samples, and every malformed space is one
error line with nothing written."""

import json

import numpy as np
import pytest

from jaxlab.errors import UserError
from jaxlab.report import _log_scale
from jaxlab.sweep import Choice, IntUniform, LogUniform, Uniform, command_line_points, sampled
from jaxlab.sweep.space import parse
from tests.conftest import without_progress
from tests.test_cli import jaxlab_cli

LR = "config.optimizer.learning_rate=loguniform(1e-4,1e-1)"


def test_the_same_command_draws_the_same_runs_and_listed_axes_multiply_them():
    points = command_line_points([LR, "config.seed=0,1,2"], [], samples=8, seed=0)
    assert len(points) == 24
    assert points == command_line_points([LR, "config.seed=0,1,2"], [], samples=8, seed=0)
    rates = sorted({p["optimizer.learning_rate"] for p in points})
    assert len(rates) == 8 and all(1e-4 <= r <= 1e-1 for r in rates)
    assert {p["seed"] for p in points} == {"0", "1", "2"}
    other = command_line_points([LR], [], samples=8, seed=1)
    assert sorted(p["optimizer.learning_rate"] for p in other) != rates


def test_draws_stay_in_their_spaces():
    draws = sampled(
        {"a": Uniform(0.5, 1.5), "b": LogUniform(1e-6, 1.0), "c": IntUniform(1, 3),
         "d": Choice(("x", "y"))},
        samples=2000,
    )  # fmt: skip
    a, b = np.array([d["a"] for d in draws]), np.array([d["b"] for d in draws])
    assert 0.5 <= a.min() and a.max() <= 1.5 and abs(a.mean() - 1.0) < 0.03
    assert 1e-6 <= b.min() and b.max() <= 1.0
    assert abs(np.log10(b).mean() + 3) < 0.15  # uniform in the exponent: mean at 1e-3
    assert {d["c"] for d in draws} == {1, 2, 3} and {d["d"] for d in draws} == {"x", "y"}
    assert _log_scale([{"k": d["b"]} for d in draws[:8]], "k")  # plotted on a log axis


@pytest.mark.parametrize(
    "text, message",
    [
        ("loguniform(0,1)", "'loguniform(0,1)': a log-uniform space needs 0 < low, got low=0.0"),
        ("uniform(1,0.5)", "the bounds must be finite with low < high, got 1.0 and 0.5"),
        ("uniform(1)", "'uniform(1)': uniform takes two bounds, got 1"),
        ("intuniform(1.5,3)", "each bound of intuniform must be an integer"),
        ("gaussian(0,1)", "unknown search space 'gaussian' in 'gaussian(0,1)'"),
        ("choice()", "choice() needs at least one value"),
    ],
)
def test_a_malformed_space_is_refused(text, message):
    with pytest.raises(UserError) as error:
        parse(text)
    assert message in str(error.value)


def test_a_sampled_sweep_runs_resumes_and_refuses_bad_input_in_one_line(tmp_path):
    args = ["sweep", "mlp_moons:smoke", "--workdir", str(tmp_path / "search"), "--vmap",
            "--sweep", LR, "--samples", "3", "--search-seed", "7"]  # fmt: skip
    first = jaxlab_cli(*args)
    assert first.returncode == 0, first.stderr
    runs = json.loads((tmp_path / "search" / "sweep.json").read_text())
    assert len(runs) == 3
    records = {name: (tmp_path / "search" / name / "metrics.jsonl").read_text() for name in runs}
    again = jaxlab_cli(*args)  # the same draws: every run is found finished, none retrained
    assert again.returncode == 0 and "3 runs: 3 done" in again.stdout
    assert json.loads((tmp_path / "search" / "sweep.json").read_text()) == runs
    for name, text in records.items():  # a retrained run would have rewritten its times
        assert (tmp_path / "search" / name / "metrics.jsonl").read_text() == text

    for extra, line in [
        (["--sweep", "config.optimizer.learning_rate=choice(a,b)", "--samples", "2"],
         "config.optimizer.learning_rate expects a float, got '"),
        (["--sweep", LR], "config.optimizer.learning_rate: a sampled space needs --samples N"),
        (["--samples", "2"], "--samples draws from the spaces of --sweep; there is no --sweep"),
    ]:  # fmt: skip
        bad = jaxlab_cli("sweep", "mlp_moons:smoke", "--workdir", str(tmp_path / "bad"), *extra)
        assert bad.returncode == 2
        (error,) = without_progress(bad.stderr)
        assert error.startswith("jaxlab: error: ") and line in error
    assert not (tmp_path / "bad").exists()
