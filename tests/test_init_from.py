"""``config.train.init_from``: a new run starts from another run's parameters (all, or those a
pattern selects, the rest initialised afresh), its own checkpoints take precedence once it has
some, and arrays of other shapes are one error line with nothing written."""

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare
from jaxlab.rundir import init_from
from tests.conftest import read_jsonl, without_progress
from tests.test_cli import jaxlab_cli

RUN = {
    "train.steps": 20,
    "train.log_every": 10,
    "train.eval_every": 10,
    "train.checkpoint_every": 10,
}


def arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The digits transformer trained on its first split."""
    workdir = tmp_path_factory.mktemp("pre") / "run"
    config = jaxlab.load_config("minimal_transformer:smoke", {**RUN, "train.keep_checkpoints": 2})
    jaxlab.train(config, workdir, quiet=True)
    return workdir


@pytest.mark.slow  # 20 s: a transformer pretrained, fine-tuned, trained from scratch, resumed
def test_fine_tuning_on_another_split_starts_from_the_pretrained_parameters(pretrained, tmp_path):
    overrides = {**RUN, "data.split_seed": 1, "train.init_from": f"{pretrained}:10"}
    config = jaxlab.load_config("minimal_transformer:smoke", overrides)
    setup = prepare(config)
    started = init_from.start_from(setup.state, config)
    _, _, at_10 = jaxlab.restore(pretrained, step=10)
    for a, b in zip(arrays(started["params"]), arrays(at_10["params"])):
        np.testing.assert_array_equal(a, b)
    fresh_moments = arrays(setup.state["opt_state"])
    assert all(np.array_equal(a, b) for a, b in zip(arrays(started["opt_state"]), fresh_moments))

    tuned = jaxlab.train(config, tmp_path / "tuned", quiet=True)
    scratch_config = jaxlab.load_config("minimal_transformer:smoke", {**RUN, "data.split_seed": 1})
    scratch = jaxlab.train(scratch_config, tmp_path / "scratch", quiet=True)
    first = read_jsonl(tmp_path / "tuned" / "metrics.jsonl")[0]["train/loss"]
    assert first < read_jsonl(tmp_path / "scratch" / "metrics.jsonl")[0]["train/loss"]
    assert tuned["eval/loss"] < scratch["eval/loss"]

    # Killed after its own checkpoint of step 10: it resumes from that, not from init_from.
    (tmp_path / "tuned" / "checkpoints" / "20").rename(tmp_path / "lost")
    again = jaxlab.train(config, tmp_path / "tuned", quiet=True)
    assert again["eval/loss"] == tuned["eval/loss"]


def test_a_pattern_takes_some_parameters_and_initialises_the_rest(tmp_path):
    jaxlab.train(jaxlab.load_config("mlp_moons:smoke", RUN), tmp_path / "pre", quiet=True)
    overrides = {**RUN, "seed": 3, "train.init_from": str(tmp_path / "pre"),
                 "train.init_from_paths": "hidden"}  # fmt: skip
    config = jaxlab.load_config("mlp_moons:smoke", overrides)
    setup = prepare(config)
    started = init_from.start_from(setup.state, config)["params"]["params"]
    _, _, pre = jaxlab.restore(tmp_path / "pre")
    for name in ("hidden0", "hidden1"):
        for a, b in zip(arrays(started[name]), arrays(pre["params"]["params"][name])):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(arrays(started["head"]), arrays(setup.state["params"]["params"]["head"])):
        np.testing.assert_array_equal(a, b)  # seed 3's fresh head

    config.train.init_from_paths = "x^"
    with pytest.raises(UserError, match="matches no parameter path; they look like params/"):
        init_from.check(setup.state, config)


def test_arrays_of_other_shapes_are_one_error_line_and_nothing_is_written(tmp_path):
    jaxlab.train(jaxlab.load_config("mlp_moons:smoke", RUN), tmp_path / "pre", quiet=True)
    result = jaxlab_cli(
        "train", "mlp_moons:smoke", "--workdir", str(tmp_path / "wide"),
        f"--config.train.init_from={tmp_path / 'pre'}", "--config.model.hidden_sizes=(32,32)",
    )  # fmt: skip
    assert result.returncode == 2
    lines = without_progress(result.stderr)
    assert lines[0] == (
        f"jaxlab: error: checkpoint {tmp_path / 'pre' / 'checkpoints' / '20'} does not hold the "
        f"arrays taken from it as this config builds them (5 differ):"
    )
    assert any("params/params/hidden0/kernel: (2, 64) float32 in the checkpoint, (2, 32) "
               "float32 now" in line for line in lines)  # fmt: skip
    assert not (tmp_path / "wide").exists()
    missing = jaxlab_cli(
        "train", "mlp_moons:smoke", "--workdir", str(tmp_path / "x"),
        f"--config.train.init_from={tmp_path / 'pre'}:15",
    )  # fmt: skip
    assert without_progress(missing.stderr) == [
        f"jaxlab: error: no checkpoint of step 15 in {tmp_path / 'pre' / 'checkpoints'}; the "
        f"kept steps are 10, 20"
    ]
