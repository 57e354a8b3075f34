"""Batches as a pure function of (key, step): epochs of random permutations, sampled on device.

`batch_indices` gives a step's example indices and `sample_batch` its batch; `permute` is the
keyed permutation of an epoch (a Feistel network, no sort).
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlab.errors import UserError

FEISTEL_ROUNDS = 6
MAX_EXAMPLES = 2**31 - 1  # indices are int32


def _mix(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash (the MurmurHash3 finaliser): every input bit flips each output bit
    with probability ~1/2."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _half_bits(num_examples: int) -> int:
    """Bits per Feistel half: the domain 0 .. 4**h - 1 holds num_examples with h >= 1."""
    return max(1, ((num_examples - 1).bit_length() + 1) // 2)


def permute(round_keys: jax.Array, positions: jax.Array, num_examples: int) -> jax.Array:
    """The permutation of ``0 .. num_examples-1`` given by ``round_keys`` (FEISTEL_ROUNDS,), or
    one row of them per position (n, FEISTEL_ROUNDS), applied to ``positions`` (n,), each
    < num_examples."""
    half = _half_bits(num_examples)
    mask = jnp.uint32((1 << half) - 1)

    def feistel(x):
        left, right = x >> half, x & mask
        for r in range(FEISTEL_ROUNDS):
            left, right = right, left ^ (_mix(right ^ round_keys[..., r]) & mask)
        return (left << half) | right

    limit = jnp.uint32(num_examples)
    x = feistel(positions.astype(jnp.uint32))
    x = jax.lax.while_loop(
        lambda x: jnp.any(x >= limit), lambda x: jnp.where(x >= limit, feistel(x), x), x
    )
    return x.astype(jnp.int32)


def epoch_and_offset(
    step: ArrayLike, batch_size: int, num_examples: int
) -> tuple[jax.Array, jax.Array]:
    """``(epoch, offset)`` with ``step * batch_size == epoch * num_examples + offset`` and
    ``0 <= offset < num_examples``, exact in 32-bit arithmetic for every int32 ``step``.

    ``step = whole * num_examples + part``, and ``part * batch_size`` (``part <
    num_examples``) is divided by ``num_examples`` in uint32 when it fits there (ImageNet in
    batches of 2,048 does), else reduced modulo ``num_examples`` one bit of ``batch_size`` at a
    time (each partial value stays below ``2 * num_examples <= 2**32``).
    """
    n = jnp.uint32(num_examples)
    step = jnp.asarray(step, jnp.int32).astype(jnp.uint32)
    whole, part = step // n, step % n
    if (num_examples - 1) * batch_size < 2**32:  # known when tracing: the product fits
        product = part * jnp.uint32(batch_size)
        quotient, remainder = product // n, product % n
    else:
        quotient, remainder = jnp.uint32(0), jnp.uint32(0)

        def reduce(q, r):
            over = r >= n
            return q + over.astype(jnp.uint32), jnp.where(over, r - n, r)

        for bit in bin(batch_size)[2:]:
            quotient, remainder = reduce(2 * quotient, 2 * remainder)
            if bit == "1":
                quotient, remainder = reduce(quotient, remainder + part)
    epoch = whole * jnp.uint32(batch_size) + quotient  # <= step, since batch_size <= num_examples
    return epoch.astype(jnp.int32), remainder


def batch_indices(key: jax.Array, step: ArrayLike, batch_size: int, num_examples: int) -> jax.Array:
    """Indices (batch_size,) into the training set for ``step``: positions ``step * batch_size``
    onwards of the stream (`epoch_and_offset`), exact for any int32 step; needs ``batch_size <=
    num_examples < 2**31``. A batch spans at most two epochs."""
    if not 0 < batch_size <= num_examples <= MAX_EXAMPLES:
        raise UserError(
            f"batches of {batch_size} from {num_examples} examples: the sampler "
            f"needs 0 < batch size <= examples <= {MAX_EXAMPLES}"
        )
    epoch, offset = epoch_and_offset(step, batch_size, num_examples)
    offsets = offset + jnp.arange(batch_size, dtype=jnp.uint32)  # < 2 * num_examples <= 2**32
    wrapped = offsets >= jnp.uint32(num_examples)
    round_keys = jax.vmap(
        lambda e: jax.random.bits(jax.random.fold_in(key, e), (FEISTEL_ROUNDS,), jnp.uint32)
    )(epoch + jnp.arange(2))
    keys = jnp.where(wrapped[:, None], round_keys[1], round_keys[0])
    return permute(
        keys, jnp.where(wrapped, offsets - jnp.uint32(num_examples), offsets), num_examples
    )


def sample_batch(
    arrays: Mapping[str, jax.Array | np.ndarray], key: jax.Array, step: ArrayLike, batch_size: int
) -> dict[str, jax.Array]:
    """The batch of ``step``: the same rows of every array in ``arrays``."""
    num_examples = next(iter(arrays.values())).shape[0]
    idx = batch_indices(key, step, batch_size, num_examples)
    return {name: jnp.asarray(value)[idx] for name, value in arrays.items()}
