"""``config.train.ema_decay``: a moving average of the parameters kept in the train state,
checkpointed and resumed exactly, sharded like the parameters, evaluated as ``eval/ema/...``."""

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare
from tests.conftest import read_jsonl

RUN = {
    "train.steps": 20,
    "train.log_every": 5,
    "train.eval_every": 10,
    "train.checkpoint_every": 10,
}


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_decay_zero_is_the_parameters_and_is_evaluated_alongside(tmp_path):
    config = jaxlab.load_config("mlp_moons:smoke", {**RUN, "train.ema_decay": 0.0})
    final = jaxlab.train(config, tmp_path, quiet=True)
    _, _, state = jaxlab.restore(tmp_path)
    for average, params in zip(leaves(state["ema_params"]), leaves(state["params"])):
        np.testing.assert_array_equal(average, params)
    assert final["eval/ema/accuracy"] == final["eval/accuracy"]
    assert final["eval/ema/loss"] == final["eval/loss"]
    evaluated = jaxlab.evaluate(tmp_path)
    assert evaluated["eval/ema/loss"] == pytest.approx(final["eval/ema/loss"], rel=1e-6)


def test_one_step_averages_the_initial_and_the_new_parameters(tmp_path):
    overrides = {"train.steps": 1, "train.log_every": 1, "train.eval_every": 1,
                 "train.checkpoint_every": 1, "train.ema_decay": 0.75}  # fmt: skip
    config = jaxlab.load_config("mlp_moons:smoke", overrides)
    initial = jax.device_get(prepare(config).state["params"])
    jaxlab.train(config, tmp_path, quiet=True)
    _, _, state = jaxlab.restore(tmp_path)
    for average, start, new in zip(
        leaves(state["ema_params"]), leaves(initial), leaves(state["params"])
    ):
        np.testing.assert_allclose(average, 0.75 * start + 0.25 * new, rtol=1e-6, atol=1e-7)
    assert not all(np.array_equal(a, p) for a, p in zip(leaves(state["ema_params"]),
                                                        leaves(state["params"])))  # fmt: skip


def test_a_resumed_run_keeps_the_average_bit_for_bit(tmp_path):
    config = jaxlab.load_config("mlp_moons:smoke", {**RUN, "train.ema_decay": 0.9})
    jaxlab.train(config, tmp_path / "whole", quiet=True)
    jaxlab.train(config, tmp_path / "resumed", quiet=True)
    (tmp_path / "resumed" / "checkpoints" / "20").rename(tmp_path / "lost")  # killed after 10
    jaxlab.train(config, tmp_path / "resumed", quiet=True)
    _, _, whole = jaxlab.restore(tmp_path / "whole")
    _, _, resumed = jaxlab.restore(tmp_path / "resumed")
    for a, b in zip(leaves(whole), leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    records = read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    assert records == read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    assert "eval/ema/accuracy" in records[-1]


def test_the_average_is_sharded_like_the_parameters():
    config = jaxlab.load_config(
        "minimal_transformer:smoke", {"train.ema_decay": 0.99, "mesh.data": 1, "mesh.fsdp": 8}
    )
    program = prepare(config).program
    assert program.state_specs["ema_params"] == program.state_specs["params"]
    assert any(spec != jax.sharding.PartitionSpec()
               for spec in jax.tree.leaves(program.state_specs["ema_params"]))  # fmt: skip


@pytest.mark.parametrize("decay", [1.0, -0.1, 2])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(UserError, match=r"config.train.ema_decay must be a number in \[0, 1\)"):
        jaxlab.load_config("mlp_moons:smoke", {"train.ema_decay": decay})
