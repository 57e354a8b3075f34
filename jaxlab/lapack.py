"""Linear algebra a vmapped sweep can run on CPU: LAPACK calls whose batch runs one matrix at a
time.

jaxlib 0.10's CPU LAPACK kernels split a batch of matrices over XLA's intra-op thread pool and
block a pool thread until the parts finish. When as many such kernels run at once as the pool
has threads (a vmapped sweep's trials on one CPU device per core, each computing a batched
``eigh``), every pool thread waits on work queued behind it and the program hangs with the CPU
idle. Under `jax.vmap` the functions here map over the batch with `jax.lax.map` instead, so each
LAPACK call sees a single matrix and runs inline; unbatched, they are the `jnp.linalg` calls.
"""

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap


def sequential_batch(fn):
    """``fn`` (positional array arguments, every one batched alike under `jax.vmap`) whose vmap is
    `jax.lax.map` over the batch. Not differentiable: give it values, not tracers of a gradient."""

    @custom_vmap
    def one_at_a_time(*args):
        return fn(*args)

    @one_at_a_time.def_vmap
    def _map(axis_size, in_batched, *args):
        args = [
            arg if batched else jnp.broadcast_to(arg, (axis_size, *arg.shape))
            for arg, batched in zip(args, in_batched, strict=True)
        ]
        out = jax.lax.map(lambda unbatched: one_at_a_time(*unbatched), tuple(args))
        return out, jax.tree.map(lambda _: True, out)

    return one_at_a_time


_eigh = sequential_batch(jnp.linalg.eigh)


@jax.custom_jvp
def eigvalsh(a: jax.Array) -> jax.Array:
    """`jnp.linalg.eigvalsh` (ascending eigenvalues of symmetric ``a``), differentiable, its
    batch under `jax.vmap` one matrix at a time."""
    return _eigh(a)[0]


@eigvalsh.defjvp
def _eigvalsh_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    eigenvalues, vectors = _eigh(a)
    # dλ_i = v_iᵀ dA v_i (first-order perturbation of a symmetric matrix's eigenvalues)
    return eigenvalues, jnp.einsum("...ji,...jk,...ki->...i", vectors, da, vectors)


solve = sequential_batch(jnp.linalg.solve)
