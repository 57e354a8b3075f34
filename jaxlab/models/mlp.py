"""A multilayer perceptron classifier: feature vectors (B, F) -> class logits (B, C)."""
from typing import Sequence

import flax.linen as nn
import jax


class MLPClassifier(nn.Module):
    """Dense -> ReLU for each hidden width, then a linear head."""
    hidden_sizes: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x_BF: jax.Array) -> jax.Array:
        for i, size in enumerate(self.hidden_sizes):
            x_BF = nn.relu(nn.Dense(size, name=f"hidden{i}")(x_BF))
        return nn.Dense(self.num_classes, name="head")(x_BF)
