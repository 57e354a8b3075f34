"""The one training loop: ``train(config, workdir) -> final metrics``, for every task.

mesh -> task (data, pure functions) -> state (replicated) -> restore-or-init -> loop of compiled
chunks. A chunk is ``config.train.log_every`` steps inside one ``lax.scan``: batches are sampled on
device as a pure function of (seed, step), and the host reads metrics once per chunk. Evaluation
and (asynchronous) checkpoints happen at chunk boundaries.
"""
import contextlib
import dataclasses
import math
import os
import pathlib
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from etils import epath

from jaxlab import parallel, paths, references, registry, tasks
from jaxlab import workdir as workdir_lib
from jaxlab.checkpoint import Checkpoints
from jaxlab.data import batch_indices
from jaxlab.errors import Interrupted, NonFiniteError, UserError
from jaxlab.metrics_log import MetricsLog
from jaxlab.optim import make_optimizer
from jaxlab.preemption import StopRequests
from jaxlab.state import DATA_STREAM, STEP_STREAM, init_state
from jaxlab.tasks import Task
from jaxlab.workdir import CHECKPOINT_DIR


def make_train_chunk(task: Task, tx: optax.GradientTransformation, batch_size: int,
                     length: int, batch_sharding: jax.sharding.Sharding, *,
                     skip_nonfinite: bool = False):
    """(state, train_arrays) -> (state after ``length`` steps, mean train metrics of those steps).

    A step whose loss or gradient norm is NaN or Inf (a NaN/Inf in any gradient makes the norm so)
    is not applied. By default the state then stays frozen for the rest of the chunk, so
    ``state["step"]`` is the last good step and the host can stop there. With ``skip_nonfinite``
    only that step is dropped: the step counter moves on, metrics are averaged over the applied
    steps and ``skipped_steps`` counts the dropped ones.
    """

    def train_step(state, train_arrays):
        step, params = state["step"], state["params"]
        num_examples = next(iter(train_arrays.values())).shape[0]
        indices = batch_indices(jax.random.fold_in(state["rng"], DATA_STREAM), step, batch_size,
                                num_examples)
        batch = {name: value[indices] for name, value in train_arrays.items()}
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        step_key = jax.random.fold_in(jax.random.fold_in(state["rng"], STEP_STREAM), step)
        (loss, (metrics, task_state)), grads = jax.value_and_grad(task.loss, has_aux=True)(
            params, state["task_state"], batch, step_key)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_state = {"step": step + 1, "params": optax.apply_updates(params, updates),
                     "task_state": task_state, "opt_state": opt_state, "rng": state["rng"]}
        metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    def guarded_step(carry, train_arrays):
        state, halted = carry
        new_state, metrics = train_step(state, train_arrays)
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
        if skip_nonfinite:
            unchanged = {**state, "step": new_state["step"]}
            return (_select(finite, new_state, unchanged), halted), (metrics, finite)
        return (_select(finite & ~halted, new_state, state), halted | ~finite), (metrics, finite)

    def chunk(state, train_arrays):
        (state, _), (metrics, finite) = jax.lax.scan(
            lambda carry, _: guarded_step(carry, train_arrays), (state, jnp.zeros((), bool)),
            length=length)
        if not skip_nonfinite:
            return state, jax.tree.map(jnp.mean, metrics)
        applied = finite.sum()
        means = jax.tree.map(lambda m: jnp.where(finite, m, 0).sum() / applied, metrics)
        return state, {**means, "skipped_steps": length - applied}

    return chunk


def _select(condition: jax.Array, if_true: dict, if_false: dict) -> dict:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


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
    task = tasks.build(config)
    if tc.batch_size > task.data.num_train:
        raise UserError(f"config.train.batch_size={tc.batch_size} is larger than the training set "
                        f"({task.data.num_train} examples)")
    tx = make_optimizer(config.optimizer, tc.steps)
    state = jax.jit(lambda: init_state(task, tx, config.seed, tc.batch_size),
                    out_shardings=parallel.replicated(mesh))()
    return Setup(mesh, task, tx, state)


def jit_train_chunk(setup: Setup, batch_size: int, length: int, *,
                    skip_nonfinite: bool = False):
    """The training loop's compiled chunk on ``setup``'s mesh: `make_train_chunk`, jitted with the
    state donated and the new state and metrics replicated."""
    replicated = parallel.replicated(setup.mesh)
    return jax.jit(make_train_chunk(setup.task, setup.tx, batch_size, length,
                                    parallel.batch_sharded(setup.mesh),
                                    skip_nonfinite=skip_nonfinite),
                   donate_argnums=0, out_shardings=(replicated, replicated))


def restore(workdir: str | os.PathLike, devices: Sequence[jax.Device] | None = None
            ) -> tuple[ml_collections.ConfigDict, Setup, dict]:
    """(config, setup, train state) of the newest checkpoint of ``workdir``, placed on ``devices``."""
    workdir = paths.path(workdir, "workdir")
    config = registry.validate(workdir_lib.read_config(workdir))
    setup = prepare(config, devices)
    if not (workdir / CHECKPOINT_DIR).is_dir():
        raise UserError(f"workdir {workdir} holds no checkpoints ({workdir / CHECKPOINT_DIR})")
    checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, keep=config.train.keep_checkpoints)
    try:
        restored = checkpoints.restore_latest(setup.state)
    finally:
        checkpoints.close()
    if restored is None:
        raise UserError(f"workdir {workdir} holds no checkpoint in {workdir / CHECKPOINT_DIR}")
    return config, setup, restored[1]


def evaluate_workdir(workdir: str | os.PathLike,
                     devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
    """Restores the newest readable checkpoint of ``workdir`` and evaluates it on the test split."""
    _, setup, state = restore(workdir, devices)
    test_arrays = jax.device_put(setup.task.data.test, parallel.replicated(setup.mesh))
    metrics = setup.task.evaluate(state["params"], state["task_state"], test_arrays)
    metrics = jax.device_get(metrics)
    return {"step": int(state["step"]),
            **{f"eval/{k}": np.asarray(v).tolist() for k, v in metrics.items()}}


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, quiet: bool = False,
          devices: Sequence[jax.Device] | None = None,
          allow_config_change: bool = False) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its newest checkpoint); returns final metrics.

    Everything that can be wrong with the input is checked before anything is written to
    ``workdir``: a `UserError` leaves it untouched. A workdir holding a run of another config is
    refused unless ``allow_config_change``; one in use by another process is refused.
    Raises `NonFiniteError` when the loss or gradients become NaN/Inf (unless
    ``config.train.skip_nonfinite_steps``), and `Interrupted` after SIGTERM/SIGINT, once a
    checkpoint of the step reached is committed.
    """
    start_time = time.time()
    workdir = paths.path(workdir, "workdir")
    config = ml_collections.ConfigDict(
        references.absolute_file_references(config.to_dict(), pathlib.Path.cwd()))
    config = registry.validate(registry.with_framework_defaults(config))
    setup = prepare(config, devices)
    with workdir_lib.claim(workdir, config, allow_config_change):
        final = _train_loop(config, setup, workdir, quiet)
    final["wall_time_s"] = round(time.time() - start_time, 2)
    if not quiet and jax.process_index() == 0:
        print(summary_line(config.experiment, final), flush=True)
    return final


def _train_loop(config: ml_collections.ConfigDict, setup: Setup, workdir: epath.Path,
                quiet: bool) -> dict[str, Any]:
    """Restore-or-init, then chunks until ``config.train.steps``; returns the final metrics."""
    tc, task = config.train, setup.task
    skip_nonfinite = tc.get("skip_nonfinite_steps", False)
    replicated = parallel.replicated(setup.mesh)
    train_arrays = jax.device_put(task.data.train, replicated)
    test_arrays = jax.device_put(task.data.test, replicated)
    with contextlib.ExitStack() as stack:  # closed in reverse: checkpoints last, committed
        checkpoints = stack.enter_context(
            Checkpoints(workdir / CHECKPOINT_DIR, keep=tc.keep_checkpoints, owner=True))
        restored = checkpoints.restore_latest(setup.state)
        workdir_lib.write_config(workdir, config)
        step, state = restored or (0, setup.state)
        saved_step = step if restored else None
        log = stack.enter_context(contextlib.closing(MetricsLog(workdir, resume_step=step)))
        progress = stack.enter_context(tqdm.tqdm(
            total=tc.steps, initial=step, unit="step", file=sys.stderr,
            disable=quiet or not sys.stderr.isatty() or jax.process_index() > 0,
            dynamic_ncols=True))
        stop_requests = stack.enter_context(StopRequests(checkpoints.reached_preemption))
        chunks = {}  # chunk length -> compiled chunk; the last chunk may be shorter

        def log_chunk(start: int, length: int, metrics: dict, evaluate: bool) -> None:
            """Waits for the chunk from step ``start``, checks it, writes its record."""
            metrics = jax.device_get(metrics)
            _check_finite(setup, config, state, start, length, metrics, train_arrays, saved_step)
            record = {f"train/{k}": v for k, v in metrics.items()}
            if evaluate:
                evaluated = jax.device_get(
                    task.evaluate(state["params"], state["task_state"], test_arrays))
                record.update({f"eval/{k}": v for k, v in evaluated.items()})
            log.write(start + length, record)
            progress.update(length)
            progress.set_postfix(loss=f"{float(record['train/loss']):.4g}")

        # The host logs chunk k while the device runs chunk k+1; evaluation and checkpoints need
        # the state at their step, so the loop waits for the device there.
        pending = None  # (first step, length, metrics) of a dispatched chunk not yet logged
        chunk_index = 0
        while step < tc.steps:
            length = min(tc.log_every, tc.steps - step)
            if length not in chunks:
                chunks[length] = jit_train_chunk(setup, tc.batch_size, length,
                                                 skip_nonfinite=skip_nonfinite)
            state, metrics = chunks[length](state, train_arrays)
            if pending:
                log_chunk(*pending, evaluate=False)
            pending = (step, length, metrics)
            step += length
            stop_reason = stop_requests.reason(chunk_index)
            chunk_index += 1
            evaluate = step % tc.eval_every == 0 or step == tc.steps
            save = step % tc.checkpoint_every == 0 or step == tc.steps or stop_reason
            if evaluate or save:
                log_chunk(*pending, evaluate=evaluate)
                pending = None
            if save:
                checkpoints.save(step, state)
                saved_step = step
            if stop_reason and step < tc.steps:
                checkpoints.wait_until_committed()
                raise Interrupted(f"stopped by {stop_reason} at step {step}: its checkpoint is "
                                  f"committed in {checkpoints.directory}; run the same command "
                                  f"again to resume", step=step, reason=stop_reason)
    if task.plot is not None and jax.process_index() == 0:
        task.plot(state["params"], state["task_state"], test_arrays, workdir)
    return {**log.latest, "step": step}


def _check_finite(setup: Setup, config: ml_collections.ConfigDict, state: dict, start: int,
                  length: int, metrics: dict, train_arrays: dict, saved_step: int | None) -> None:
    """Raises `NonFiniteError` if the chunk from step ``start`` met a NaN/Inf it did not skip."""
    kept = f"checkpoints up to step {saved_step} are untouched" if saved_step else \
        "no checkpoint was written"
    if config.train.get("skip_nonfinite_steps", False):
        if metrics["skipped_steps"] == length:
            raise NonFiniteError(
                f"every step from {start + 1} to {start + length} had a non-finite loss or "
                f"gradient norm (skipped); stopped: the run has diverged; {kept}",
                step=start + 1, metrics=metrics)
        return
    if math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"]):
        return  # a chunk's mean is finite only if every step's value was
    # The state is frozen just before the bad step (a chunk dispatched after this one froze at
    # the same step): run that step alone to show its metrics.
    reached = int(state["step"])
    probe = jax.jit(make_train_chunk(setup.task, setup.tx, config.train.batch_size, 1,
                                     parallel.batch_sharded(setup.mesh)))
    probed = jax.device_get(probe(state, train_arrays)[1])
    values = {f"train/{k}": float(probed[k]) for k in ["loss", *sorted(probed.keys() - {"loss"})]}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)} or values
    shown = ", ".join(f"{k}={v}" for k, v in bad.items())
    raise NonFiniteError(
        f"non-finite {shown} at step {reached + 1}; stopped without saving it ({kept}). Lower the "
        f"learning rate, or set config.train.skip_nonfinite_steps=True to skip such steps",
        step=reached + 1, metrics=values)


def summary_line(experiment: str, final: dict[str, Any]) -> str:
    shown = " ".join(f"{k}={v:.4g}" for k, v in final.items()
                     if isinstance(v, float) and k != "wall_time_s")
    return f"jaxlab: {experiment} step={final['step']} {shown} wall_time={final['wall_time_s']:.1f}s"
