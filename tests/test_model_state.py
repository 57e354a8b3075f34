"""Mutable model state in the classification task: BatchNorm's running statistics are updated in
training, used in evaluation, checkpointed and resumed exactly."""

import jax
import numpy as np
import pytest

import jaxlab
from tests.conftest import read_jsonl

RUN = {
    "train.steps": 40,
    "train.log_every": 10,
    "train.eval_every": 20,
    "train.checkpoint_every": 20,
}


def batch_norm_config():
    config = jaxlab.load_config("mlp_moons:smoke", RUN)
    with config.model.unlocked():
        config.model.batch_norm = True
    return config


def test_batch_statistics_are_trained_evaluated_and_resumed_exactly(tmp_path):
    config = batch_norm_config()
    final = jaxlab.train(config, tmp_path / "whole", quiet=True)
    _, setup, state = jaxlab.restore(tmp_path / "whole")
    stats = state["task_state"]["batch_stats"]
    assert set(stats) == {"norm0", "norm1"} and set(stats["norm0"]) == {"mean", "var"}
    initial = setup.state["task_state"]["batch_stats"]["norm0"]["mean"]
    assert np.all(np.asarray(initial) == 0)  # flax's start, moved by training:
    assert np.abs(np.asarray(stats["norm0"]["mean"])).max() > 1e-2
    assert final["eval/accuracy"] > 0.8
    # Evaluation reads the running statistics: the same parameters with fresh ones differ.
    fresh = jax.tree.map(np.asarray, setup.state["task_state"])
    evaluated = setup.task.evaluate(state["params"], fresh, setup.task.data.test)
    assert abs(float(evaluated["loss"]) - final["eval/loss"]) > 1e-3
    kept = setup.task.evaluate(state["params"], state["task_state"], setup.task.data.test)
    assert float(kept["loss"]) == pytest.approx(final["eval/loss"], rel=1e-6)

    jaxlab.train(config, tmp_path / "resumed", quiet=True)
    (tmp_path / "resumed" / "checkpoints" / "40").rename(tmp_path / "lost")  # killed after 20
    jaxlab.train(config, tmp_path / "resumed", quiet=True)
    _, _, resumed = jaxlab.restore(tmp_path / "resumed")
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert read_jsonl(tmp_path / "resumed" / "metrics.jsonl") == read_jsonl(
        tmp_path / "whole" / "metrics.jsonl"
    )
