"""The train state: ``{step, params, task_state, opt_state, rng}``, and ``ema_params`` when
``config.train.ema_decay`` is set; a dict Orbax saves whole."""

import jax
import jax.numpy as jnp
import optax

from jaxlab.data import sample_batch
from jaxlab.tasks import Task

# Streams of randomness derived from the run's root key: one for data order, one for step keys.
DATA_STREAM, STEP_STREAM = 0, 1
EMA = "ema_params"  # ema <- decay * ema + (1 - decay) * params after each applied step


def keys_of(seed) -> tuple[jax.Array, jax.Array]:
    """(init key, the run's root key) of ``seed``: ``PRNGKey(seed)`` split in two."""
    init_key, root = jax.random.split(jax.random.PRNGKey(seed))
    return init_key, root


def data_key(seed) -> jax.Array:
    """The key of the run's data order (`jaxlab.data.batch_indices`)."""
    return jax.random.fold_in(keys_of(seed)[1], DATA_STREAM)


def init_state(
    task: Task,
    tx: optax.GradientTransformation,
    seed: int,
    batch_size: int,
    example: dict | None = None,
    ema: bool = False,
) -> dict:
    """The train state at step 0; ``rng`` is the run's root key. The model is initialised on
    ``example``, or, when it is None, on the batch of step 0 drawn from the training arrays.
    With ``ema`` the state also holds ``ema_params``, the parameters' moving average (`EMA`),
    starting at the initial parameters (and sharded as they are: it carries their names)."""
    init_key, root = keys_of(seed)
    if example is None:
        example = sample_batch(
            task.data.train, jax.random.fold_in(root, DATA_STREAM), 0, batch_size
        )
    params, task_state = task.init(init_key, example)  # params may carry logical axis names
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "task_state": task_state,
        "opt_state": tx.init(params),
        "rng": root,
    }
    if ema:
        state[EMA] = params
    return state
