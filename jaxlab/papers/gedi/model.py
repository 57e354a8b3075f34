"""The GEDI backbone: an MLP encoder and a linear projection to K cluster logits.

One network gives both halves of GEDI (Sansone & Manhaeve, arXiv 2401.00873, Sec. 4): the cluster
posterior p(y|x) = softmax(logits(x)) and, JEM style (Grathwohl et al. 2020), the energy of an
input E(x) = -logsumexp_y logits(x)_y, so that p(x) is proportional to exp(-E(x)).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class ClusterMLP(nn.Module):
    """inputs (B, ...) -> cluster logits (B, K) = projection(encoder(inputs)) / temperature."""

    num_clusters: int
    hidden: Sequence[int] = (100, 100, 100)
    temperature: float = 0.1
    dtype: Any = jnp.float32  # of the computation (config.train.compute_dtype); logits are float32

    @nn.compact
    def __call__(self, inputs_bd: jax.Array) -> jax.Array:
        h = inputs_bd.reshape(inputs_bd.shape[0], -1)
        for width in self.hidden:
            h = nn.swish(nn.Dense(width, dtype=self.dtype)(h))
        projection_bk = nn.Dense(self.num_clusters, dtype=self.dtype, name="projection")(h)
        return projection_bk.astype(jnp.float32) / self.temperature


def energy(logits_bk: jax.Array) -> jax.Array:
    """E(x) = -logsumexp_y logits(x)_y, (B, K) -> (B,): low where the model puts data."""
    return -jax.nn.logsumexp(logits_bk, axis=-1)
