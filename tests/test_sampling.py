"""Batches are a pure function of (key, step) and walk through epochs of permutations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data import batch_indices
from jaxlab.data.sampling import FEISTEL_ROUNDS, permute


def test_each_epoch_visits_every_example_once():
    key, n, b = jax.random.PRNGKey(3), 10, 4
    stream = np.concatenate([np.asarray(batch_indices(key, s, b, n)) for s in range(5)])  # 2 epochs
    assert sorted(stream[:n]) == list(range(n))
    assert sorted(stream[n:2 * n]) == list(range(n))
    assert not np.array_equal(stream[:n], stream[n:2 * n])  # a fresh permutation per epoch


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
