"""Simulated dynamical systems for Koopman learning (integrated with RK4 in JAX; no download).

Systems (``system=``):

* ``lorenz63``: σ = 10, ρ = 28, β = 8/3 (the paper's Eq. 52); state (x, y, z). Initial conditions
  are drawn in a box and run for 10 time units (RK4 steps of 0.01) so that every trajectory starts
  on the attractor.
* ``pendulum``: the undamped nonlinear pendulum θ'' = -sin θ; state (θ, ω). Initial conditions are
  drawn below the separatrix (energy ω²/2 - cos θ < 0.9), so θ never wraps around.
* ``burgers``: viscous Burgers u_t + u u_x = ν u_xx (ν = 0.1) on a periodic grid of 64 points over
  [0, 2π), derivatives by FFT; initial fields are random combinations of the first three Fourier
  modes. The 64-dimensional state is what the convolutional encoder is for.

``dt`` is the sampling interval of the stored trajectories; RK4 integrates each interval in
``ceil(dt / max_step)`` equal sub-steps. For Lorenz-63 ``max_step`` is 0.1: at the paper's
``dt = 0.1`` each sample is one RK4 step of 0.1, as its Appendix G.3.1 states ("integrated using
a fixed time step ∆t = 0.1 s with a fourth-order Runge–Kutta method"), and at ``dt = 0.01`` one
step of 0.01. (One RK4 step of 0.1 is stable on the attractor but not from every point of the
initial box, hence the burn-in at the finer step.)

Trajectories are split into train and test by initial condition, standardised with the training
trajectories' mean and std (per state dimension for the ODEs, one scalar for the field), and the
training trajectories are cut into overlapping windows ``(num_windows, window_len, state_dim)``:
a batch is a set of windows. The test split holds whole trajectories ``(num_test, length,
state_dim)`` for rollouts. ``noise`` adds Gaussian observation noise of ``noise`` times the data's
std to the training windows only (the paper's noisy setting is ``noise=0.1``); test trajectories
stay clean, so rollout errors measure the dynamics, not the noise.
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data.dataset import Dataset
from jaxlab.errors import UserError

BURGERS_GRID = 64
BURGERS_VISCOSITY = 0.1
BURN_IN_STEP = 0.01  # RK4 step of the burn-in that brings initial states onto the attractor


@dataclasses.dataclass(frozen=True)
class System:
    vector_field: Callable[[jax.Array], jax.Array]  # dx/dt of one state (D,)
    initial_states: Callable[[np.random.Generator, int], np.ndarray]  # (N, D)
    dt: float  # default sampling interval
    max_step: float  # largest RK4 step used to integrate one interval
    burn_in: float  # time integrated (RK4 steps of BURN_IN_STEP) before the first sample
    field: bool  # standardise with one scalar (a field) or per dimension (an ODE state)


def lorenz63(state: jax.Array, sigma=10.0, rho=28.0, beta=8.0 / 3.0) -> jax.Array:
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return jnp.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=-1)


def pendulum(state: jax.Array) -> jax.Array:
    theta, omega = state[..., 0], state[..., 1]
    return jnp.stack([omega, -jnp.sin(theta)], axis=-1)


def burgers(u: jax.Array, viscosity: float = BURGERS_VISCOSITY) -> jax.Array:
    """-u u_x + ν u_xx on a periodic grid over [0, 2π), spectral derivatives."""
    n = u.shape[-1]
    wavenumbers = jnp.fft.rfftfreq(n, d=1.0 / n)
    u_hat = jnp.fft.rfft(u, axis=-1)
    u_x = jnp.fft.irfft(1j * wavenumbers * u_hat, n=n, axis=-1)
    u_xx = jnp.fft.irfft(-(wavenumbers**2) * u_hat, n=n, axis=-1)
    return -u * u_x + viscosity * u_xx


def _lorenz_initial(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform([-15.0, -20.0, 5.0], [15.0, 20.0, 40.0], size=(n, 3))


def _pendulum_initial(rng: np.random.Generator, n: int) -> np.ndarray:
    states = np.empty((0, 2))
    while len(states) < n:
        draw = rng.uniform([-2.5, -1.5], [2.5, 1.5], size=(4 * n, 2))
        energy = 0.5 * draw[:, 1] ** 2 - np.cos(draw[:, 0])
        states = np.concatenate([states, draw[energy < 0.9]])
    return states[:n]


def _burgers_initial(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.linspace(0.0, 2.0 * np.pi, BURGERS_GRID, endpoint=False)
    modes = np.arange(1, 4)
    amplitude = rng.normal(0.0, 0.4, size=(n, 3)) / modes
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n, 3))
    return np.sum(
        amplitude[:, :, None] * np.sin(modes[None, :, None] * x + phase[:, :, None]), axis=1
    )


SYSTEMS = {
    "lorenz63": System(lorenz63, _lorenz_initial, dt=0.1, max_step=0.1, burn_in=10.0, field=False),
    "pendulum": System(
        pendulum, _pendulum_initial, dt=0.1, max_step=0.01, burn_in=0.0, field=False
    ),
    "burgers": System(burgers, _burgers_initial, dt=0.05, max_step=0.005, burn_in=0.0, field=True),
}


def rk4_step(vector_field: Callable[[jax.Array], jax.Array], x: jax.Array, h: float) -> jax.Array:
    """One classical fourth-order Runge-Kutta step of size h."""
    k1 = vector_field(x)
    k2 = vector_field(x + 0.5 * h * k1)
    k3 = vector_field(x + 0.5 * h * k2)
    k4 = vector_field(x + h * k3)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def integrate(
    vector_field: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    dt: float,
    num_samples: int,
    substeps: int = 1,
) -> jax.Array:
    """Samples x(0), x(dt), ..., x((num_samples-1) dt) of every initial state: (N, num_samples, D).

    Each interval dt is integrated with ``substeps`` RK4 steps of size dt / substeps.
    """
    h = dt / substeps

    def interval(x, _):
        x_next = jax.lax.fori_loop(0, substeps, lambda _, s: rk4_step(vector_field, s, h), x)
        return x_next, x_next

    _, samples = jax.lax.scan(interval, x0, length=num_samples - 1)
    return jnp.concatenate([x0[None], samples], axis=0).swapaxes(0, 1)


def simulate(
    system: str, num_trajectories: int, length: int, dt: float, rng: np.random.Generator
) -> np.ndarray:
    """(num_trajectories, length, D) float32 trajectories of ``system`` from random starts."""
    spec = SYSTEMS[system]
    substeps = max(1, math.ceil(dt / spec.max_step - 1e-9))
    x0 = jnp.asarray(spec.initial_states(rng, num_trajectories), jnp.float32)
    run = jax.jit(integrate, static_argnums=(0, 2, 3, 4))
    if spec.burn_in:
        burn_in_steps = round(spec.burn_in / BURN_IN_STEP)
        x0 = run(spec.vector_field, x0, BURN_IN_STEP, burn_in_steps + 1)[:, -1]
    return np.asarray(run(spec.vector_field, x0, dt, length, substeps))


def windows(trajectories: np.ndarray, window_len: int, stride: int) -> np.ndarray:
    """Overlapping windows (N * num_starts, window_len, D) cut from (N, length, D) trajectories."""
    starts = np.arange(0, trajectories.shape[1] - window_len + 1, stride)
    return trajectories[:, starts[:, None] + np.arange(window_len)].reshape(
        -1, window_len, trajectories.shape[-1]
    )


def load(
    system: str = "lorenz63",
    dt: float | None = None,
    train_trajectories: int = 32,
    test_trajectories: int = 8,
    length: int = 1000,
    window_len: int = 32,
    window_stride: int = 4,
    noise: float = 0.0,
    split_seed: int = 0,
) -> Dataset:
    """train {"window": (num_windows, window_len, D)}, test {"trajectory": (N_test, length, D),
    "offset": (N_test, D), "scale": (N_test, D)}: physical states are trajectory · scale +
    offset."""
    if system not in SYSTEMS:
        raise UserError(f"unknown dynamical system {system!r}; known: {', '.join(SYSTEMS)}")
    dt = SYSTEMS[system].dt if dt is None else dt
    if dt <= 0:
        raise UserError(f"config.data.dt must be positive, got {dt}")
    if not 2 <= window_len <= length:
        raise UserError(f"config.data.window_len must be in [2, length={length}], got {window_len}")
    if window_stride < 1 or train_trajectories < 1 or test_trajectories < 1 or noise < 0:
        raise UserError(
            "config.data.window_stride, train_trajectories and test_trajectories must "
            f"be positive and noise non-negative, got {window_stride}, "
            f"{train_trajectories}, {test_trajectories}, {noise}"
        )
    rng = np.random.default_rng(split_seed)
    trajectories = simulate(system, train_trajectories + test_trajectories, length, dt, rng)
    if not np.all(np.isfinite(trajectories)):
        raise UserError(f"the {system} simulation diverged at dt={dt}; use a smaller dt")
    train, test = trajectories[:train_trajectories], trajectories[train_trajectories:]
    axes = (0, 1, 2) if SYSTEMS[system].field else (0, 1)
    mean, std = train.mean(axis=axes), train.std(axis=axes)
    train, test = (train - mean) / std, (test - mean) / std
    train_windows = windows(train, window_len, window_stride)
    train_windows = train_windows + noise * rng.standard_normal(train_windows.shape)
    per_trajectory = (len(test), trajectories.shape[-1])
    return Dataset(
        train={"window": train_windows.astype(np.float32)},
        test={
            "trajectory": test.astype(np.float32),
            "offset": np.broadcast_to(mean, per_trajectory).astype(np.float32),
            "scale": np.broadcast_to(std, per_trajectory).astype(np.float32),
        },
    )
