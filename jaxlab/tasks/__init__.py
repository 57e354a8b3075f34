"""Tasks: an experiment's pure functions (`Task`). ``config.task`` references the function that
builds one, ``make_task(config) -> Task``; `build` calls it."""

import ml_collections

from jaxlab.config import references
from jaxlab.errors import UserError
from jaxlab.tasks.base import Task, is_plain, left_out

__all__ = ["Task", "build", "is_plain", "left_out"]


def build(config: ml_collections.ConfigDict) -> Task:
    """The task of ``config``: ``config.task`` resolved and called with the config."""
    task = references.resolve(config.task, "config.task")(config)
    if not isinstance(task, Task):
        raise UserError(
            f"config.task={config.task!r} returned a {type(task).__name__}, "
            f"expected a jaxlab.tasks.Task"
        )
    return task
