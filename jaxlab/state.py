"""The train state: ``{step, params, task_state, opt_state, rng}``, a dict Orbax saves whole."""
import jax
import jax.numpy as jnp
import optax

from jaxlab.data import sample_batch
from jaxlab.tasks import Task

# Streams of randomness derived from the run's root key: one for data order, one for step keys.
DATA_STREAM, STEP_STREAM = 0, 1


def init_state(task: Task, tx: optax.GradientTransformation, seed: int, batch_size: int) -> dict:
    """The train state at step 0; ``rng`` is the run's root key."""
    rng = jax.random.PRNGKey(seed)
    init_key, root = jax.random.split(rng)
    example = sample_batch(task.data.train, jax.random.fold_in(root, DATA_STREAM), 0, batch_size)
    params, task_state = task.init(init_key, example)
    return {"step": jnp.zeros((), jnp.int32), "params": params, "task_state": task_state,
            "opt_state": tx.init(params), "rng": root}
