"""Gradient accumulation: k micro-batches inside the compiled step give the update of the whole
batch, with less activation memory, and resume exactly."""

import shutil

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab import parallel, tasks
from jaxlab.errors import UserError
from jaxlab.loop.program import Program
from jaxlab.loop.train import prepare
from jaxlab.rundir.checkpoint import Checkpoints
from tests.conftest import read_jsonl

SHORT = {"train.steps": 10, "train.log_every": 2, "train.eval_every": 10}


def _run(tmp_path, name, **overrides):
    config = jaxlab.load_config("minimal_transformer:smoke", {**SHORT, **overrides})
    jaxlab.train(config, tmp_path / name, quiet=True)
    setup = prepare(config)
    checkpoints = Checkpoints(tmp_path / name / "checkpoints", keep=config.train.keep_checkpoints)
    state = checkpoints.restore(checkpoints.latest_step(), setup.state)
    checkpoints.close()
    return read_jsonl(tmp_path / name / "metrics.jsonl"), state


def test_four_micro_batches_update_as_the_whole_batch_does(tmp_path):
    whole, whole_state = _run(tmp_path, "whole")
    micro, micro_state = _run(tmp_path, "micro", **{"train.grad_accum_steps": 4})
    assert [r["step"] for r in micro] == [r["step"] for r in whole] == [2, 4, 6, 8, 10]
    for key in ("train/loss", "train/accuracy", "train/grad_norm"):
        np.testing.assert_allclose([r[key] for r in micro], [r[key] for r in whole], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        micro_state["params"],
        whole_state["params"],
    )


def _temp_bytes(grad_accum_steps):
    config = jaxlab.load_config(
        "minimal_transformer:smoke",
        {"train.grad_accum_steps": grad_accum_steps, "train.batch_size": 256},
    )
    program = Program(config, tasks.build(config), parallel.make_mesh(None, config.mesh))
    arrays = jax.device_put(program.task.data.train, program.state_sharding["step"])
    step = jax.jit(program.step_function(1))
    compiled = step.lower(program.abstract_state(), arrays).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_micro_batches_need_less_activation_memory_in_the_compiled_step():
    whole, micro = _temp_bytes(1), _temp_bytes(8)
    assert micro < 0.5 * whole, (whole, micro)


@pytest.mark.slow
def test_a_run_with_micro_batches_resumes_exactly(tmp_path):
    overrides = {**SHORT, "train.grad_accum_steps": 2, "train.checkpoint_every": 4}
    config = jaxlab.load_config("minimal_transformer:smoke", overrides)
    jaxlab.train(config, tmp_path / "full", quiet=True)
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    for step in (8, 10):
        shutil.rmtree(tmp_path / "resumed" / "checkpoints" / str(step))
    jaxlab.train(config, tmp_path / "resumed", quiet=True)
    assert read_jsonl(tmp_path / "resumed" / "metrics.jsonl") == read_jsonl(
        tmp_path / "full" / "metrics.jsonl"
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.grad_accum_steps": 3}, "grad_accum_steps=3 must be a positive divisor"),
        ({"train.grad_accum_steps": 0}, "grad_accum_steps=0 must be a positive divisor"),
        ({"train.grad_accum_steps": 8}, "a micro-batch of .* = 4 examples does not split into"),
    ],
)
def test_micro_batches_that_do_not_split_are_one_line(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message):
        jaxlab.train(
            jaxlab.load_config("minimal_transformer:smoke", overrides), tmp_path, quiet=True
        )
    assert not any(tmp_path.iterdir())
