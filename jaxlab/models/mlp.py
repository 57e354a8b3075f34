"""A multilayer perceptron classifier: feature vectors (B, F) -> class logits (B, C)."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.errors import UserError


class MLPClassifier(nn.Module):
    """Dense (-> BatchNorm with ``batch_norm``) -> ReLU (-> dropout of rate ``dropout`` in
    training) for each hidden width, then a linear head. BatchNorm normalises with the batch's
    statistics in training and with their running averages (the ``batch_stats`` collection, kept
    by the classification task as mutable state) in evaluation."""

    hidden_sizes: Sequence[int]
    num_classes: int
    dropout: float = 0.0
    batch_norm: bool = False
    dtype: Any = jnp.float32  # of the computation; parameters stay float32

    def __post_init__(self):
        if any(not isinstance(size, int) or size < 1 for size in self.hidden_sizes):
            raise UserError(
                f"config.model.hidden_sizes={tuple(self.hidden_sizes)}: every width "
                f"must be a positive int"
            )
        if not 0 <= self.dropout < 1:
            raise UserError(f"config.model.dropout must be in [0, 1), got {self.dropout}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x_BF: jax.Array, train: bool = False) -> jax.Array:
        for i, size in enumerate(self.hidden_sizes):
            x_BF = nn.Dense(size, dtype=self.dtype, name=f"hidden{i}")(x_BF)
            if self.batch_norm:
                x_BF = nn.BatchNorm(
                    use_running_average=not train, dtype=self.dtype, name=f"norm{i}"
                )(x_BF)
            x_BF = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x_BF))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x_BF)
