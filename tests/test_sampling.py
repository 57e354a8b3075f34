"""Batches are a pure function of (key, step) and walk through epochs of permutations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab
from jaxlab.data import batch_indices
from jaxlab.data.sampling import FEISTEL_ROUNDS, permute


def test_each_epoch_visits_every_example_once():
    key, n, b = jax.random.PRNGKey(3), 10, 4
    stream = np.concatenate([np.asarray(batch_indices(key, s, b, n)) for s in range(5)])  # 2 epochs
    assert sorted(stream[:n]) == list(range(n))
    assert sorted(stream[n : 2 * n]) == list(range(n))
    assert not np.array_equal(stream[:n], stream[n : 2 * n])  # a fresh permutation per epoch


def test_batches_depend_only_on_key_and_step():
    key = jax.random.PRNGKey(0)
    a = batch_indices(key, 123456, 32, 1437)
    assert np.array_equal(a, batch_indices(key, 123456, 32, 1437))
    assert not np.array_equal(a, batch_indices(key, 123457, 32, 1437))
    assert not np.array_equal(a, batch_indices(jax.random.PRNGKey(1), 123456, 32, 1437))
    # a large step does not overflow int32 (step * batch_size > 2**31)
    big = np.asarray(batch_indices(key, 2**28, 64, 1437))
    assert big.min() >= 0 and big.max() < 1437 and len(set(big)) == 64


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1437, 4096, 4097, 60000])
def test_permute_is_a_bijection_of_the_training_set(n):
    keys = jax.random.bits(jax.random.PRNGKey(n), (FEISTEL_ROUNDS,), jnp.uint32)
    image = np.asarray(jax.jit(permute, static_argnums=2)(keys, jnp.arange(n), n))
    np.testing.assert_array_equal(np.sort(image), np.arange(n))


def test_each_position_goes_anywhere_with_equal_probability():
    n, draws = 10, 5000
    keys = jax.random.bits(jax.random.PRNGKey(0), (draws, FEISTEL_ROUNDS), jnp.uint32)
    images = np.asarray(jax.vmap(lambda k: permute(k, jnp.arange(n), n))(keys))  # (draws, n)
    counts = np.stack([np.bincount(images[:, i], minlength=n) for i in range(n)])
    # expected 500 per cell, binomial std ~21: a biased shuffle is far outside +-20%
    assert counts.min() > 400 and counts.max() < 600, counts


def reference_indices(key, step, batch_size, num_examples):
    """The batch of ``step`` computed with Python's unbounded integers: the epoch and position of
    each of the stream's positions ``step*B .. step*B+B-1``, each permuted by its epoch's keys."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=object)
    epochs, offsets = positions // num_examples, positions % num_examples
    out = np.empty(batch_size, np.int64)
    for epoch in set(epochs):
        keys = jax.random.bits(jax.random.fold_in(key, int(epoch)), (FEISTEL_ROUNDS,), jnp.uint32)
        chosen = epochs == epoch
        out[chosen] = permute(
            keys, jnp.asarray(offsets[chosen].astype(np.int64), jnp.uint32), num_examples
        )
    return out


@pytest.mark.parametrize(
    "num_examples, batch_size, step",
    [
        (1_281_167, 2048, 1_200_000),  # ImageNet: part * batch_size is past 2**31
        (1_281_167, 4096, 2_000_000_000),  # a long run
        (1_281_167, 2048, 1_281_166),  # the last step before the step count wraps an epoch
        (1_281_167, 1_281_167, 123),  # a batch of the whole set
        (2**31 - 1, 4096, 2**31 - 1),  # the largest set and step the int32 indices allow
        (60_000, 3, 59_999),  # a batch across two epochs
    ],
)
def test_batches_are_exact_at_imagenet_sizes(num_examples, batch_size, step):
    key = jax.random.PRNGKey(7)
    got = np.asarray(batch_indices(key, step, batch_size, num_examples))
    np.testing.assert_array_equal(got, reference_indices(key, step, batch_size, num_examples))
    assert got.min() >= 0 and got.max() < num_examples


def test_every_example_once_per_epoch_at_imagenet_size():
    """One whole epoch of 1,281,167 examples in batches of 2048, from a step whose product with
    the batch size is past 2**31: each example once (positions e*N .. e*N+N-1)."""
    num_examples, batch_size = 1_281_167, 2048
    first = 1_100_000  # step * batch_size = 1,758 epochs and an offset
    skip = -(first * batch_size) % num_examples  # positions before the next epoch starts
    steps = first + np.arange((skip + num_examples) // batch_size + 1)
    indices = jax.jit(
        jax.vmap(lambda s: batch_indices(jax.random.PRNGKey(0), s, batch_size, num_examples))
    )(steps)
    stream = np.asarray(indices).reshape(-1)
    epoch = stream[skip : skip + num_examples]
    assert len(epoch) == num_examples
    np.testing.assert_array_equal(np.bincount(epoch, minlength=num_examples), 1)


def test_a_training_set_past_int32_indices_is_refused():
    with pytest.raises(jaxlab.UserError, match="examples"):
        batch_indices(jax.random.PRNGKey(0), 0, 32, 2**31)
