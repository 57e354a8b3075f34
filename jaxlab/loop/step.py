"""The compiled training chunk: ``length`` train steps inside one ``lax.scan``.

A batch is a pure function of (the run's root key, step): drawn on the device from the training
arrays it holds, or, on the Grain input path, read on the host with the same indices
(`jaxlab.data.stream`) and passed in, one batch per step of the chunk. A step's randomness is
``fold_in(fold_in(root, STEP_STREAM), step)``. A step whose loss or gradient norm is NaN or Inf is
not applied (see `make_train_chunk`).
"""

import jax
import jax.numpy as jnp
import optax

from jaxlab.data import sample_batch
from jaxlab.loop.state import DATA_STREAM, EMA, STEP_STREAM
from jaxlab.tasks import Task


def make_train_chunk(
    task: Task,
    tx: optax.GradientTransformation,
    batch_size: int,
    length: int,
    batch_sharding: jax.sharding.NamedSharding,
    *,
    skip_nonfinite: bool = False,
    batches_given: bool = False,
    grad_accum_steps: int = 1,
    ema_decay: float | None = None,
):
    """(state, data) -> (state after ``length`` steps, mean train metrics of those steps).

    ``data`` is the training arrays, from which each step samples its batch on the device, or
    with ``batches_given`` the chunk's batches themselves (each array (length, batch, ...)).

    A step whose loss or gradient norm is NaN or Inf (a NaN/Inf in any gradient makes the norm so)
    is not applied. By default the state then stays frozen for the rest of the chunk, so
    ``state["step"]`` is the last good step and the host can stop there. With ``skip_nonfinite``
    only that step is dropped: the step counter moves on, metrics are averaged over the applied
    steps and ``skipped_steps`` counts the dropped ones.

    With ``grad_accum_steps`` k > 1 each step's batch is split into k micro-batches (example i
    goes to micro-batch i mod k, so each device keeps its own examples), whose gradients are
    summed one after another in a ``lax.scan`` and averaged: the update of the whole batch, with
    the activations of one micro-batch in memory. Micro-batch i's key is ``fold_in(step key, i)``.

    With ``ema_decay`` d the state's ``ema_params`` become ``d * ema + (1 - d) * params`` after
    each applied step (the new parameters; a dropped step leaves them as they were).
    """

    def sampled(state, train_arrays):
        data_key = jax.random.fold_in(state["rng"], DATA_STREAM)
        return sample_batch(train_arrays, data_key, state["step"], batch_size)

    loss_and_grads = jax.value_and_grad(task.loss, has_aux=True)

    def accumulated(params, task_state, batch, step_key):
        """`loss_and_grads` of ``batch`` as the mean over its micro-batches."""
        k = grad_accum_steps
        micro = jax.tree.map(
            lambda x: jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1), batch
        )
        micro = jax.lax.with_sharding_constraint(micro, micro_sharding)

        def one(carry, xs):
            grads_sum, task_state = carry
            micro_batch, i = xs
            (loss, (metrics, task_state)), grads = loss_and_grads(
                params, task_state, micro_batch, jax.random.fold_in(step_key, i)
            )
            return (jax.tree.map(jnp.add, grads_sum, grads), task_state), (loss, metrics)

        zeros = jax.tree.map(jnp.zeros_like, params)
        (grads, task_state), (losses, metrics) = jax.lax.scan(
            one, (zeros, task_state), (micro, jnp.arange(k))
        )
        means = jax.tree.map(lambda m: m.mean(0), metrics)
        return (losses.mean(), (means, task_state)), jax.tree.map(lambda g: g / k, grads)

    gradients = loss_and_grads if grad_accum_steps == 1 else accumulated
    micro_sharding = jax.sharding.NamedSharding(
        batch_sharding.mesh, jax.sharding.PartitionSpec(None, *batch_sharding.spec)
    )

    def train_step(state, batch):
        step, params = state["step"], state["params"]
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        step_key = jax.random.fold_in(jax.random.fold_in(state["rng"], STEP_STREAM), step)
        (loss, (metrics, task_state)), grads = gradients(
            params, state["task_state"], batch, step_key
        )
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_state = {
            "step": step + 1,
            "params": optax.apply_updates(params, updates),
            "task_state": task_state,
            "opt_state": opt_state,
            "rng": state["rng"],
        }
        if ema_decay is not None:
            new_state[EMA] = jax.tree.map(
                lambda average, new: ema_decay * average + (1 - ema_decay) * new,
                state[EMA],
                new_state["params"],
            )
        metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    def guarded_step(carry, batch):
        state, halted = carry
        new_state, metrics = train_step(state, batch)
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
        if skip_nonfinite:
            unchanged = {**state, "step": new_state["step"]}
            return (select(finite, new_state, unchanged), halted), (metrics, finite)
        return (select(finite & ~halted, new_state, state), halted | ~finite), (metrics, finite)

    def chunk(state, data):
        if batches_given:
            step_fn, xs = guarded_step, data
        else:
            step_fn = lambda carry, _: guarded_step(carry, sampled(carry[0], data))  # noqa: E731
            xs = None
        (state, _), (metrics, finite) = jax.lax.scan(
            step_fn, (state, jnp.zeros((), bool)), xs, length=length
        )
        if not skip_nonfinite:
            return state, jax.tree.map(jnp.mean, metrics)
        applied = finite.sum()
        means = jax.tree.map(lambda m: jnp.where(finite, m, 0).sum() / applied, metrics)
        return state, {**means, "skipped_steps": length - applied}

    return chunk


def select(condition: jax.Array, if_true, if_false):
    """``if_true`` where ``condition`` holds, else ``if_false``, leaf by leaf (pytrees alike)."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)
