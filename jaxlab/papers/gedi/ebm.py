"""Sampling an energy-based model: SGLD chains persisted in a replay buffer.

Stochastic-gradient Langevin dynamics as used to train JEM (Grathwohl et al., "Your classifier is
secretly an energy based model", ICLR 2020, Sec. 4) and GEDI (Sansone & Manhaeve, arXiv 2401.00873,
Algorithm 1): each train step draws a batch of chain states from the buffer (each restarted from
uniform noise with probability ``reinit_prob``), runs

    x_{t+1} = clip(x_t - step_size * dE/dx(x_t) + noise_std * eps_t),   eps_t ~ N(0, I),

for ``steps`` steps inside the compiled step (``lax.fori_loop``), and writes the states back.
``step_size`` and ``noise_std`` are separate settings, as in JEM (which uses a small noise
independent of the step); the ``gedi`` experiment sets the Langevin relation
noise_std = sqrt(2 step_size).
Chains are clipped to the box [low, high] the uniform restarts are drawn from.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def uniform_in_box(key: jax.Array, num: int, low: jax.Array, high: jax.Array) -> jax.Array:
    """``num`` points uniform in the box [low, high] (low, high of the shape of one point)."""
    return jax.random.uniform(key, (num, *low.shape), minval=low, maxval=high)


def draw_chains(
    buffer: jax.Array, key: jax.Array, num: int, reinit_prob: float, low: jax.Array, high: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(indices (num,), starting states) of ``num`` distinct buffer chains, some restarted."""
    pick_key, restart_key, noise_key = jax.random.split(key, 3)
    idx = jax.random.choice(pick_key, buffer.shape[0], (num,), replace=False)
    restart = jax.random.bernoulli(restart_key, reinit_prob, (num,))
    fresh = uniform_in_box(noise_key, num, low, high)
    mask = restart.reshape((num,) + (1,) * (buffer.ndim - 1))
    return idx, jnp.where(mask, fresh, buffer[idx])


def sgld(
    energy_fn: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    key: jax.Array,
    steps: int,
    step_size: float,
    noise_std: float,
    low: jax.Array,
    high: jax.Array,
) -> jax.Array:
    """Runs ``steps`` SGLD steps from ``x0`` on ``energy_fn`` (batch -> per-example energies)."""
    grad_energy = jax.grad(lambda x: energy_fn(x).sum())

    def step(t, x):
        eps = jax.random.normal(jax.random.fold_in(key, t), x.shape, x.dtype)
        return jnp.clip(x - step_size * grad_energy(x) + noise_std * eps, low, high)

    return jax.lax.fori_loop(0, steps, step, x0)
