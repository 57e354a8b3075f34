"""The one small interface between the trainer and an experiment."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from etils import epath

from jaxlab.data import Dataset

Params = Any
TaskState = Any  # state that is carried but not trained (an SGLD replay buffer, batch statistics)
Metrics = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Task:
    """What the trainer needs of an experiment; ``init`` and ``loss`` are jittable.

    init(key, example_batch) -> (params, task_state)
    loss(params, task_state, batch, key) -> (scalar loss, (dict of scalar metrics, task_state))
        differentiated with respect to ``params`` only; ``task_state`` is carried from step to
        step and checkpointed with the parameters (``{}`` for tasks that need none).
    evaluate(params, task_state, test_arrays) -> dict of metrics (may run host code)
    evaluate_sums(params, task_state, test_batch) -> dict of metrics summed over the batch's
        examples, optional: lets the Grain input path evaluate a test split read in chunks (the
        loop adds the chunks' sums and divides by the number of examples), so it suits metrics
        that are means over examples.
    plot(params, task_state, test_arrays, directory) -> None, optional: writes PNGs at the end of
        training into ``directory``, an ``etils.epath.Path`` (local or remote: write with
        `jaxlab.paths.save_figure`).
    predict(params, task_state, x) -> outputs, optional and jittable: the model's outputs for a
        batch of the data set's inputs ``x`` (what `jaxlab export` serialises).

    ``make_task(config)`` gets plain numbers, except in a vmapped sweep (``--vmap``) that varies a
    leaf outside ``seed``, ``optimizer`` and the sections ``train``, ``data``, ``model`` and
    ``task`` (which are never traced): there each trial's task is also built inside the compiled
    program, with that leaf a traced scalar (a 0-d ``jax.Array``). Use such leaves in arithmetic
    only (a loss weight, a noise scale); one that sets a shape or a Python branch is refused
    before the sweep starts, naming the key.
    """

    data: Dataset
    init: Callable[[jax.Array, dict], tuple[Params, TaskState]]
    loss: Callable[
        [Params, TaskState, dict, jax.Array], tuple[jax.Array, tuple[Metrics, TaskState]]
    ]
    evaluate: Callable[[Params, TaskState, dict], Metrics]
    evaluate_sums: Callable[[Params, TaskState, dict], Metrics] | None = None
    plot: Callable[[Params, TaskState, dict, epath.Path], None] | None = None
    predict: Callable[[Params, TaskState, jax.Array], Any] | None = None


def is_plain(value: Any) -> bool:
    """Whether a config leaf is a plain Python number, known when the task is built, rather than
    the traced scalar a vmapped sweep passes for a leaf it varies (see `Task`): only a plain
    number may be checked or branched on in ``make_task``."""
    return isinstance(value, (int, float))


def left_out(weight: Any) -> bool:
    """Whether a loss weight is exactly 0 in the config, so that its term is not computed at all
    (computed, 0 * inf would make the loss NaN). A traced weight is never left out: every trial
    of the sweep computes the term."""
    return is_plain(weight) and weight == 0
