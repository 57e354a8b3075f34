"""Flax NNX models in jaxlab's tasks: ``config.model.constructor = "jaxlab.models.nnx_bridge:
from_nnx"`` with ``config.model.nnx_class`` naming an ``nnx.Module`` class (a reference,
``"my_model.py:Net"``) and the section's other keys passed to its ``__init__``.

The class is wrapped by ``flax.nnx.bridge.to_linen``: its state becomes linen variables (``params``,
and e.g. ``batch_stats``, which the classification task keeps as mutable state), so that a run
trains, resumes, sweeps (``--vmap`` included) and exports as with a linen model. ``__init__``
receives ``rngs`` (an ``nnx.Rngs``) and, when it takes one, ``in_features``: the inputs' last
dimension, which NNX layers need up front. ``__call__(x)`` may take ``train``: True in training,
False in evaluation (for ``nnx.Dropout(..., deterministic=not train)`` and the like).
"""

import inspect
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from jaxlab.config import references


class FromNNX(nn.Module):
    """The linen face of ``nnx_class`` built with ``arguments`` (module docstring)."""

    nnx_class: Any
    arguments: Mapping[str, Any]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        arguments = dict(self.arguments)
        if "in_features" in inspect.signature(self.nnx_class.__init__).parameters:
            arguments["in_features"] = x.shape[-1]
        module = nnx.bridge.to_linen(self.nnx_class, **arguments, name="nnx")
        if "train" in inspect.signature(self.nnx_class.__call__).parameters:
            return module(x, train=train)
        return module(x)


def from_nnx(nnx_class: str, **arguments: Any) -> FromNNX:
    """`FromNNX` of the class ``nnx_class`` names (``"path.py:Name"`` or ``"module:Name"``)."""
    return FromNNX(references.resolve(nnx_class, "config.model.nnx_class"), arguments)
