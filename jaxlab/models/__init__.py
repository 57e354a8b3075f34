"""Flax modules, one family a file; no training code here.

``config.model.constructor`` references the module class (or a function returning a module) of the
tasks that take their model from the config, such as `jaxlab.tasks.classification`; `build` calls
it with the section's other keys.
"""
from typing import Any, Mapping

from jaxlab import references
from jaxlab.errors import UserError


def build(model_config: Mapping[str, Any], **fixed: Any) -> Any:
    """Calls ``model_config.constructor`` with the section's other keys and ``fixed`` (what the
    task knows, e.g. ``num_classes``) as keyword arguments."""
    if "constructor" not in model_config:
        raise UserError("config.model has no constructor: set config.model.constructor to a "
                        "reference such as 'jaxlab.models.mlp:MLPClassifier' or "
                        "'my_model.py:Net'")
    return references.call(model_config, "constructor", "config.model", **fixed)
