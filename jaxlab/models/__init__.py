"""Flax modules, one family a file; no training code here.

`build` calls a task's ``config.model.constructor`` with the section's other keys;
`train_flag` and `mode` switch a model between training and evaluation.
"""

import inspect
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jaxlab.config import references
from jaxlab.errors import UserError

TRAIN_FLAGS = {"train": True, "deterministic": False}  # __call__ argument -> its training value


def build(model_config: Mapping[str, Any], compute_dtype: str = "float32", **fixed: Any) -> Any:
    """Calls ``model_config.constructor`` with the section's other keys and ``fixed`` (what the
    task knows, e.g. ``num_classes``) as keyword arguments; for a ``compute_dtype`` other than
    float32 (``config.train.compute_dtype``) also with ``dtype``, the dtype the model computes in.

    Refused (`UserError`): a key the task sets itself, and a dropout rate the model could never
    apply (its ``__call__`` takes no `TRAIN_FLAGS` argument)."""
    if "constructor" not in model_config:
        raise UserError(
            "config.model has no constructor: set config.model.constructor to a "
            "reference such as 'jaxlab.models.mlp:MLPClassifier' or "
            "'my_model.py:Net'"
        )
    clash = sorted(set(fixed) & set(model_config))
    if clash:
        raise UserError(
            f"config.model.{clash[0]} is set by the task (from the data); remove it "
            f"from config.model"
        )
    if compute_dtype != "float32":
        constructor = references.resolve(model_config["constructor"], "config.model.constructor")
        if "dtype" not in _parameters(constructor) or "dtype" in model_config:
            raise UserError(
                f"config.train.compute_dtype={compute_dtype!r} is passed to the model as its "
                f"dtype argument; {model_config['constructor']} takes none (or "
                f"config.model.dtype sets it): add one, or use compute_dtype='float32'"
            )
        fixed = {**fixed, "dtype": jnp.dtype(compute_dtype)}
    model = references.call(model_config, "constructor", "config.model", **fixed)
    rates = {k: v for k, v in model_config.items() if "dropout" in k and v}
    if rates and train_flag(model) is None:
        key = next(iter(rates))
        raise UserError(
            f"config.model.{key}={rates[key]}: {model_config['constructor']} takes "
            f"no train (or deterministic) argument in __call__, so dropout would "
            f"never act; add one, or set config.model.{key}=0"
        )
    return model


def _parameters(function: Any) -> Mapping[str, Any]:
    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}


def train_flag(model: Any) -> str | None:
    """The argument of ``model.__call__`` that switches training mode (`TRAIN_FLAGS`), or None."""
    try:
        parameters = inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in TRAIN_FLAGS if name in parameters), None)


def mode(flag: str | None, training: bool) -> dict[str, bool]:
    """The keyword argument that puts a model with ``flag`` (`train_flag`) in training or
    evaluation mode; none for a model without one."""
    if flag is None:
        return {}
    return {flag: TRAIN_FLAGS[flag] if training else not TRAIN_FLAGS[flag]}
