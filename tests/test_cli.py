"""The `jaxlab` command, run as a user runs it: in a subprocess."""

import json
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import read_jsonl


def jaxlab_cli(*args, cwd=None):
    """``jaxlab ARGS`` in a subprocess, by default from a directory outside the repository (the
    installed package, not the checkout, answers)."""
    return subprocess.run(
        [sys.executable, "-m", "jaxlab.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or tempfile.gettempdir(),
        timeout=300,
    )


def test_list_shows_experiments_and_presets():
    result = jaxlab_cli("list")
    assert result.returncode == 0, result.stderr
    assert "minimal_transformer" in result.stdout and "preset: mlp=True" in result.stdout


def test_train_eval_report_end_to_end(tmp_path):
    workdir = tmp_path / "run"
    result = jaxlab_cli(
        "train",
        "minimal_transformer:smoke",
        "--workdir",
        str(workdir),
        "--config.train.steps=10",
        "--config.seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert (
        summary.startswith("jaxlab: minimal_transformer:smoke step=10")
        and "eval/accuracy=" in summary
    )
    config = json.loads((workdir / "config.json").read_text())
    assert (config["train"]["steps"], config["seed"]) == (10, 3)
    last = read_jsonl(workdir / "metrics.jsonl")[-1]

    evaluated = jaxlab_cli("eval", str(workdir))
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout) == {
        "step": 10,
        "eval/accuracy": last["eval/accuracy"],
        "eval/loss": last["eval/loss"],
    }
    reported = jaxlab_cli("report", str(workdir))
    assert reported.returncode == 0, reported.stderr
    assert "| eval/accuracy | 10 |" in reported.stdout
    assert (workdir / "metrics.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope"], "unknown experiment 'nope'"),
        (["minimal_transformer:depth"], "malformed preset item 'depth'"),
        (["minimal_transformer:colour=red"], "unknown preset key 'colour'"),
        (["minimal_transformer:smoke", "--config.train.stepz=5"], "did you mean train.steps"),
        (["minimal_transformer:smoke", "--config.train.steps=many"], "expects an int"),
        (["minimal_transformer:smoke", "--config.train.steps=0"], "must be positive"),
        (["minimal_transformer:smoke", "--config.train.batch_size=12"], "not divisible"),
        (["minimal_transformer:smoke", "--steps=5"], "unrecognised argument '--steps=5'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    workdir = tmp_path / "run"
    result = jaxlab_cli("train", *args, "--workdir", str(workdir))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not workdir.exists()
