"""Tasks: an experiment's pure functions. ``config.task`` names a module here with ``make_task``."""
import importlib
import pkgutil

import ml_collections

from jaxlab.errors import UserError
from jaxlab.tasks.base import Task

__all__ = ["Task", "make_task"]


def make_task(config: ml_collections.ConfigDict) -> Task:
    """Builds the task ``config.task`` (a module ``jaxlab.tasks.<name>`` with ``make_task``)."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")
    if config.task not in names:
        raise UserError(f"unknown task {config.task!r}; known tasks: {', '.join(names)}")
    return importlib.import_module(f"{__name__}.{config.task}").make_task(config)
