"""Batches as a pure function of (key, step): epochs of random permutations, sampled on device.

Step ``s`` takes the examples at positions ``s*B .. s*B+B-1`` of an endless stream made of one
permutation of the training set per epoch (epoch ``e`` uses ``fold_in(key, e)``). So the order of
data is reproducible, every example is seen once per epoch, and a resumed run sees exactly the
batches an uninterrupted one would.
"""
import jax
import jax.numpy as jnp


def batch_indices(key: jax.Array, step: jax.Array, batch_size: int, num_examples: int) -> jax.Array:
    """Indices (batch_size,) into the training set for ``step``; needs batch_size <= num_examples.

    ``step * batch_size`` is written as ``epoch * num_examples + offset`` without forming the
    product, so int32 does not overflow on long runs.
    """
    step = jnp.asarray(step, jnp.int32)
    whole, part = step // num_examples, step % num_examples
    epoch = whole * batch_size + (part * batch_size) // num_examples
    offsets = (part * batch_size) % num_examples + jnp.arange(batch_size)
    this_epoch = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    next_epoch = jax.random.permutation(jax.random.fold_in(key, epoch + 1), num_examples)
    wrapped = offsets >= num_examples
    return jnp.where(wrapped, next_epoch[offsets % num_examples], this_epoch[offsets % num_examples])


def chunk_indices(key: jax.Array, first_step: jax.Array, length: int, batch_size: int,
                  num_examples: int) -> jax.Array:
    """Indices (length, batch_size) of steps ``first_step .. first_step+length-1``.

    Equal to stacking `batch_indices` of those steps, but each epoch's permutation is drawn once
    for the whole chunk instead of twice per step (a permutation is a sort of the training set).
    """
    step = jnp.asarray(first_step, jnp.int32)
    whole, part = step // num_examples, step % num_examples
    first_epoch = whole * batch_size + (part * batch_size) // num_examples
    offsets = (part * batch_size) % num_examples + jnp.arange(length * batch_size)
    num_epochs = (length * batch_size) // num_examples + 2  # static bound on epochs touched
    permutations = jax.vmap(
        lambda e: jax.random.permutation(jax.random.fold_in(key, first_epoch + e), num_examples)
    )(jnp.arange(num_epochs))
    indices = permutations[offsets // num_examples, offsets % num_examples]
    return indices.reshape(length, batch_size)


def sample_batch(arrays: dict[str, jax.Array], key: jax.Array, step: jax.Array,
                 batch_size: int) -> dict[str, jax.Array]:
    """The batch of ``step``: the same rows of every array in ``arrays``."""
    num_examples = next(iter(arrays.values())).shape[0]
    idx = batch_indices(key, step, batch_size, num_examples)
    return {name: jnp.asarray(value)[idx] for name, value in arrays.items()}
