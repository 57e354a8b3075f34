"""Batches are a pure function of (key, step) and walk through epochs of permutations."""
import jax
import numpy as np

from jaxlab.data import batch_indices, chunk_indices


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
    # a large step does not overflow int32 (step * batch_size > 2**31)
    big = np.asarray(batch_indices(key, 2**28, 64, 1437))
    assert big.min() >= 0 and big.max() < 1437 and len(set(big)) == 64


def test_chunk_indices_equal_the_steps_batch_indices():
    key = jax.random.PRNGKey(7)
    for first, length, b, n in [(0, 5, 4, 10), (13, 7, 3, 10), (2**20 + 3, 4, 64, 1437),
                                (5, 100, 128, 1437)]:
        chunk = np.asarray(jax.jit(chunk_indices, static_argnums=(2, 3, 4))(key, first, length, b, n))
        steps = np.stack([np.asarray(batch_indices(key, first + i, b, n)) for i in range(length)])
        np.testing.assert_array_equal(chunk, steps)
