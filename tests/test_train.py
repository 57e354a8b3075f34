"""The training loop: outputs, data parallelism, and exact resumption."""

import shutil

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare
from jaxlab.rundir.checkpoint import Checkpoints
from tests.conftest import read_jsonl


def test_python_api_run_writes_outputs(smoke_config, tmp_path):
    final = jaxlab.train(smoke_config, tmp_path, quiet=True)
    assert final["step"] == 20
    assert 0.0 <= final["eval/accuracy"] <= 1.0 and np.isfinite(final["train/loss"])
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert {"train/loss", "train/accuracy", "eval/accuracy", "eval/loss"} <= records[-1].keys()
    assert "eval/accuracy" in records[1] and "eval/accuracy" not in records[0]
    assert (tmp_path / "config.json").exists()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]


def test_training_learns(tmp_path):
    config = jaxlab.load_config(
        "minimal_transformer:smoke",
        {"train.steps": 200, "train.eval_every": 50, "optimizer.learning_rate": 1e-2},
    )
    final = jaxlab.train(config, tmp_path, quiet=True)
    assert final["eval/accuracy"] > 0.7  # 10 classes: chance is 0.1


def test_one_device_and_eight_devices_give_the_same_losses(tmp_path):
    config = jaxlab.load_config("minimal_transformer:smoke", {"train.log_every": 1})
    assert len(jax.devices()) == 8
    jaxlab.train(config, tmp_path / "one", quiet=True, devices=jax.devices()[:1])
    jaxlab.train(config, tmp_path / "eight", quiet=True)
    one = [r["train/loss"] for r in read_jsonl(tmp_path / "one" / "metrics.jsonl")]
    eight = [r["train/loss"] for r in read_jsonl(tmp_path / "eight" / "metrics.jsonl")]
    assert len(one) == len(eight) == 20
    np.testing.assert_allclose(one, eight, rtol=1e-5, atol=1e-5)


def _final_params(config, workdir):
    setup = prepare(config)
    checkpoints = Checkpoints(workdir / "checkpoints", keep=config.train.keep_checkpoints)
    state = checkpoints.restore(checkpoints.latest_step(), setup.state)
    checkpoints.close()
    return state


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    config = jaxlab.load_config(
        "minimal_transformer:smoke", {"train.checkpoint_every": 5, "train.keep_checkpoints": 10}
    )
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    jaxlab.train(config, full, quiet=True)
    # The resumed workdir is the full one as it stood when stopped after the step-10 checkpoint
    # (metrics of later steps included: resuming must drop them, not duplicate them).
    shutil.copytree(full, resumed)
    for step in (15, 20):
        shutil.rmtree(resumed / "checkpoints" / str(step))
    final = jaxlab.train(config, resumed, quiet=True)
    assert final["step"] == 20
    assert read_jsonl(resumed / "metrics.jsonl") == read_jsonl(full / "metrics.jsonl")
    a, b = _final_params(config, full), _final_params(config, resumed)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_batch_not_divisible_by_devices_is_refused(tmp_path):
    config = jaxlab.load_config("minimal_transformer:smoke", {"train.batch_size": 12})
    with pytest.raises(
        UserError, match="not divisible by the 8 parts the mesh splits a batch into"
    ):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_workdir_of_another_config_is_refused(smoke_config, tmp_path):
    jaxlab.train(smoke_config, tmp_path, quiet=True)
    other = jaxlab.load_config("minimal_transformer:smoke", {"optimizer.learning_rate": 0.5})
    with pytest.raises(UserError, match="optimizer.learning_rate: 0.001 in the workdir, 0.5 now"):
        jaxlab.train(other, tmp_path, quiet=True)


def test_mlp_classifier_on_moons(tmp_path):
    config = jaxlab.load_config(
        "mlp_moons:smoke",
        {
            "train.steps": 300,
            "train.eval_every": 100,
            "train.log_every": 100,
            "train.checkpoint_every": 300,
        },
    )
    final = jaxlab.train(config, tmp_path, quiet=True)
    assert final["eval/accuracy"] > 0.95  # two classes, 1,024 held-out points


def test_data_arguments_the_loader_does_not_take_are_refused(tmp_path):
    config = jaxlab.load_config("mlp_moons:smoke", {"data.loader": "jaxlab.data.digits:load"})
    with pytest.raises(
        UserError,
        match="jaxlab.data.digits:load does not take config.data.factor, config.data.noise",
    ):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("pipeline", ["device", "grain"])
def test_nothing_is_compiled_twice_across_chunks_evaluations_and_checkpoints(tmp_path, pipeline):
    """JAX's compilation log over a run of 10 chunks, 5 evaluations and 5 checkpoints: every
    program (with its shapes and shardings) is compiled once, the training chunk included, and a
    checkpoint compiles nothing (Orbax's replica-parallel writes compiled a slicing program per
    array shape of the replicated state)."""
    import collections
    import logging

    compiled = collections.Counter()

    class Compilations(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Compiling "):
                compiled[record.getMessage()] += 1

    handler, logger = Compilations(), logging.getLogger("jax")
    config = jaxlab.load_config(
        "minimal_transformer:smoke",
        {
            "train.log_every": 2,
            "train.eval_every": 4,
            "train.checkpoint_every": 4,
            "train.keep_checkpoints": 10,
            "train.data_pipeline": pipeline,
        },
    )
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            jaxlab.train(config, tmp_path, quiet=True)
    finally:
        logger.removeHandler(handler)
    chunks = [message for message in compiled if message.startswith("Compiling jit(chunk)")]
    assert len(chunks) == 1, chunks
    assert max(compiled.values()) == 1, [m for m, n in compiled.items() if n > 1]
    assert not [m for m in compiled if m.startswith("Compiling jit(slice)")]
