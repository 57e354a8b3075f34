"""What a user does with a trained run: evaluate any kept checkpoint, on the run's test split or
on other data given by overrides of the data section, from the CLI and from Python."""

import json

import ml_collections
import numpy as np
import pytest

import jaxlab
from jaxlab.errors import UserError
from tests.conftest import read_jsonl, without_progress
from tests.test_cli import jaxlab_cli


def blobs(seed: int, count: int = 600):
    """Points around 3 fixed centres with their labels."""
    centres = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]], np.float32)
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, size=count)
    x = (centres[label] + rng.normal(size=(count, 2))).astype(np.float32)
    return x, label


def blobs_config(train: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "jaxlab.tasks.classification:make_task"
    config.data = dict(
        loader="jaxlab.data.arrays:load", train=train, test="", test_fraction=0.2,
        split_seed=0, keys=(),
    )  # fmt: skip
    config.model = dict(constructor="jaxlab.models.mlp:MLPClassifier", hidden_sizes=(16,))
    config.optimizer = dict(
        name="adam", learning_rate=1e-2, weight_decay=0.0, warmup_steps=0,
        schedule="constant", grad_clip_norm=0.0,
    )  # fmt: skip
    config.train = dict(
        steps=100, batch_size=32, log_every=50, eval_every=50, checkpoint_every=50,
        keep_checkpoints=2,
    )  # fmt: skip
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run on data/blobs.npz, and two other test sets: fresh points, and the same points with
    every label shifted by one (which a model that reads its data must get wrong)."""
    root = tmp_path_factory.mktemp("after")
    (root / "data").mkdir()
    x, label = blobs(0)
    np.savez(root / "data" / "blobs.npz", x=x, label=label)
    fresh_x, fresh_label = blobs(1, 300)
    np.savez(root / "data" / "fresh.npz", x=fresh_x, label=fresh_label)
    np.savez(root / "data" / "shifted.npz", x=fresh_x, label=(fresh_label + 1) % 3)
    jaxlab.train(blobs_config(str(root / "data" / "blobs.npz")), root / "run", quiet=True)
    return root


def test_eval_of_a_kept_step_equals_what_the_run_recorded_then(trained, tmp_path):
    output = tmp_path / "step50.json"
    result = jaxlab_cli("eval", str(trained / "run"), "--step", "50", "--output", str(output))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert json.loads(output.read_text()) == printed
    (recorded,) = [r for r in read_jsonl(trained / "run" / "metrics.jsonl") if r["step"] == 50]
    assert printed["step"] == 50
    for name in ("eval/accuracy", "eval/loss"):
        assert printed[name] == pytest.approx(recorded[name], rel=1e-6)


def test_eval_on_other_data_given_by_data_overrides(trained):
    data = {"data.test_fraction": 0.0}
    fresh = jaxlab.evaluate(
        trained / "run", overrides={**data, "data.test": str(trained / "data" / "fresh.npz")}
    )
    assert fresh["step"] == 100 and fresh["eval/accuracy"] > 0.95
    result = jaxlab_cli(
        "eval", str(trained / "run"), "--config.data.test_fraction=0.0",
        "--config.data.test=data/shifted.npz", cwd=trained,  # a path relative to the directory
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shifted = json.loads(result.stdout)
    assert shifted["eval/accuracy"] < 0.05  # the labels it was given, not the run's test split
    assert shifted["eval/loss"] > fresh["eval/loss"] + 1


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--config.train.steps=5"],
            "a restored run takes overrides of config.data only (the data it is evaluated on), "
            "got train.steps",
        ),
        (["--step", "7"], "no checkpoint of step 7 in {checkpoints}; the kept steps are 50, 100"),
        (["--config.data.tset=x.npz"], "unknown config key 'data.tset'; did you mean data.test"),
    ],
)
def test_eval_refuses_what_it_cannot_do_in_one_line(trained, args, message, tmp_path):
    output = tmp_path / "out.json"
    result = jaxlab_cli("eval", str(trained / "run"), *args, "--output", str(output))
    assert result.returncode == 2
    (line,) = without_progress(result.stderr)
    assert line.startswith(
        "jaxlab: error: " + message.format(checkpoints=trained / "run" / "checkpoints")
    )
    assert not output.exists()


def test_restore_from_python_takes_a_step(trained):
    _, _, state = jaxlab.restore(trained / "run", step=50)
    assert int(state["step"]) == 50
    with pytest.raises(UserError, match="the kept steps are 50, 100"):
        jaxlab.restore(trained / "run", step=60)
