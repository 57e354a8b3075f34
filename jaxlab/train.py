"""The one training loop: ``train(config, workdir) -> final metrics``, for every task.

mesh -> task (data, pure functions) -> state (replicated) -> restore-or-init -> loop of compiled
chunks. A chunk is ``config.train.log_every`` steps inside one ``lax.scan``: batches are sampled on
device as a pure function of (seed, step), and the host reads metrics once per chunk. Evaluation
and (asynchronous) checkpoints happen at chunk boundaries.
"""
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax
import tqdm

from jaxlab import config as config_lib
from jaxlab import parallel, registry
from jaxlab.checkpoint import Checkpoints
from jaxlab.data import sample_batch
from jaxlab.errors import UserError
from jaxlab.metrics_log import MetricsLog
from jaxlab.optim import make_optimizer
from jaxlab.state import DATA_STREAM, STEP_STREAM, init_state
from jaxlab.tasks import Task, make_task

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def make_train_chunk(task: Task, tx: optax.GradientTransformation, batch_size: int,
                     length: int, batch_sharding: jax.sharding.Sharding):
    """(state, train_arrays) -> (state after ``length`` steps, mean train metrics of those steps)."""

    def train_step(state, train_arrays):
        step, params = state["step"], state["params"]
        data_key = jax.random.fold_in(state["rng"], DATA_STREAM)
        batch = sample_batch(train_arrays, data_key, step, batch_size)
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        step_key = jax.random.fold_in(jax.random.fold_in(state["rng"], STEP_STREAM), step)
        (loss, (metrics, task_state)), grads = jax.value_and_grad(task.loss, has_aux=True)(
            params, state["task_state"], batch, step_key)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_state = {"step": step + 1, "params": optax.apply_updates(params, updates),
                     "task_state": task_state, "opt_state": opt_state, "rng": state["rng"]}
        metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    def chunk(state, train_arrays):
        state, metrics = jax.lax.scan(lambda s, _: train_step(s, train_arrays), state, length=length)
        return state, jax.tree.map(jnp.mean, metrics)

    return chunk


@dataclasses.dataclass(frozen=True)
class Setup:
    mesh: jax.sharding.Mesh
    task: Task
    tx: optax.GradientTransformation
    state: dict  # the initial train state, replicated over the mesh


def prepare(config: ml_collections.ConfigDict,
            devices: Sequence[jax.Device] | None = None) -> Setup:
    """Mesh, task, optimizer and initial state of ``config``; raises `UserError` on bad input."""
    tc = config.train
    mesh = parallel.make_mesh(devices)
    parallel.check_batch_size(tc.batch_size, mesh)
    task = make_task(config)
    if tc.batch_size > task.data.num_train:
        raise UserError(f"config.train.batch_size={tc.batch_size} is larger than the training set "
                        f"({task.data.num_train} examples)")
    tx = make_optimizer(config.optimizer, tc.steps)
    state = jax.jit(lambda: init_state(task, tx, config.seed, tc.batch_size),
                    out_shardings=parallel.replicated(mesh))()
    return Setup(mesh, task, tx, state)


def restore(workdir: str | os.PathLike, devices: Sequence[jax.Device] | None = None
            ) -> tuple[ml_collections.ConfigDict, Setup, dict]:
    """(config, setup, train state) of the newest checkpoint of ``workdir``, placed on ``devices``."""
    workdir = pathlib.Path(workdir)
    config = load_workdir_config(workdir)
    setup = prepare(config, devices)
    if not (workdir / CHECKPOINT_DIR).is_dir():
        raise UserError(f"workdir {workdir} holds no checkpoints ({workdir / CHECKPOINT_DIR})")
    checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, keep=config.train.keep_checkpoints)
    try:
        step = checkpoints.latest_step()
        if step is None:
            raise UserError(f"workdir {workdir} holds no checkpoint in {workdir / CHECKPOINT_DIR}")
        state = checkpoints.restore(step, setup.state)
    finally:
        checkpoints.close()
    return config, setup, state


def evaluate_workdir(workdir: str | os.PathLike,
                     devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
    """Restores the newest checkpoint of ``workdir`` and evaluates it on the test split."""
    _, setup, state = restore(workdir, devices)
    test_arrays = jax.device_put(setup.task.data.test, parallel.replicated(setup.mesh))
    metrics = setup.task.evaluate(state["params"], state["task_state"], test_arrays)
    metrics = jax.device_get(metrics)
    return {"step": int(state["step"]), **{f"eval/{k}": v.tolist() for k, v in metrics.items()}}


def load_workdir_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote into ``workdir``."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{workdir} is not a jaxlab workdir: {path} does not exist")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, quiet: bool = False,
          devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its newest checkpoint); returns final metrics.

    Everything that can be wrong with the input is checked before anything is written to
    ``workdir``: a `UserError` leaves it untouched.
    """
    start_time = time.time()
    config = registry.validate(config)
    tc = config.train
    setup = prepare(config, devices)
    task, tx, state = setup.task, setup.tx, setup.state
    workdir = pathlib.Path(workdir)
    _check_workdir_config(workdir, config)
    replicated, batch_sharding = parallel.replicated(setup.mesh), parallel.batch_sharded(setup.mesh)
    train_arrays = jax.device_put(task.data.train, replicated)
    test_arrays = jax.device_put(task.data.test, replicated)

    workdir.mkdir(parents=True, exist_ok=True)
    _write_atomic(workdir / CONFIG_FILE, config_lib.to_json(config))
    checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, keep=tc.keep_checkpoints)
    latest = checkpoints.latest_step()
    if latest is not None:
        state = checkpoints.restore(latest, state)
    step = int(state["step"])
    log = MetricsLog(workdir, resume_step=step)

    chunks = {}  # chunk length -> compiled chunk; the last chunk may be shorter
    progress = tqdm.tqdm(total=tc.steps, initial=step, unit="step", file=sys.stderr,
                         disable=quiet or not sys.stderr.isatty() or jax.process_index() > 0,
                         dynamic_ncols=True)
    try:
        while step < tc.steps:
            length = min(tc.log_every, tc.steps - step)
            if length not in chunks:
                chunks[length] = jax.jit(
                    make_train_chunk(task, tx, tc.batch_size, length, batch_sharding),
                    donate_argnums=0, out_shardings=(replicated, replicated))
            state, metrics = chunks[length](state, train_arrays)
            step += length
            record = {f"train/{k}": v for k, v in jax.device_get(metrics).items()}
            if step % tc.eval_every == 0 or step == tc.steps:
                evaluated = jax.device_get(
                    task.evaluate(state["params"], state["task_state"], test_arrays))
                record.update({f"eval/{k}": v for k, v in evaluated.items()})
            log.write(step, record)
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                checkpoints.save(step, state)
            progress.update(length)
            progress.set_postfix(loss=f"{float(record['train/loss']):.4g}")
    finally:
        progress.close()
        checkpoints.close()
        log.close()
    if task.plot is not None and jax.process_index() == 0:
        task.plot(state["params"], state["task_state"], test_arrays, workdir)

    final = {**log.latest, "step": step}
    final["wall_time_s"] = round(time.time() - start_time, 2)
    if not quiet and jax.process_index() == 0:
        print(summary_line(config.experiment, final), flush=True)
    return final


def summary_line(experiment: str, final: dict[str, Any]) -> str:
    shown = " ".join(f"{k}={v:.4g}" for k, v in final.items()
                     if isinstance(v, float) and k != "wall_time_s")
    return f"jaxlab: {experiment} step={final['step']} {shown} wall_time={final['wall_time_s']:.1f}s"


def _check_workdir_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir that already holds a run of a different config."""
    path = workdir / CONFIG_FILE
    if not path.exists():
        return
    old = _flatten(json.loads(path.read_text()))
    new = _flatten(json.loads(config_lib.to_json(config)))
    differing = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if differing:
        lines = [f"  {k}: {old.get(k, '(absent)')!r} in the workdir, {new.get(k, '(absent)')!r} now"
                 for k in differing]
        raise UserError(f"workdir {workdir} holds a run with a different config:\n"
                        + "\n".join(lines) + "\nuse a new workdir")


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _write_atomic(path: pathlib.Path, text: str) -> None:
    if jax.process_index() != 0:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
