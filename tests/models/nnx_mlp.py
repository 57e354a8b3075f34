"""A Flax NNX classifier with BatchNorm and dropout, written as a user would."""

import jax
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, in_features, hidden, num_classes, dropout=0.0, *, rngs):
        self.hidden = nnx.Linear(in_features, hidden, rngs=rngs)
        self.norm = nnx.BatchNorm(hidden, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x, train=False):
        x = self.norm(self.hidden(x), use_running_average=not train)
        return self.head(self.drop(jax.nn.relu(x), deterministic=not train))
