"""``config.train.init_from = "WORKDIR[:STEP]"``: a new run starts from another run's parameters
(fine-tuning), read from that run's checkpoint of ``STEP`` (default: its newest).

``config.train.init_from_paths`` selects them: empty takes every parameter (and the task state,
e.g. BatchNorm statistics, when there is one); otherwise a regular expression, and the parameters
whose path (``params/hidden0/kernel``: the keys from the root of the parameters, joined by ``/``)
it matches anywhere are taken, while the rest keep their fresh initialisation (a new head, for
instance). The optimizer state starts fresh. Arrays taken whose shape or dtype differ are one
`UserError` listing them, raised by `check` before anything is written. Only a run without
checkpoints of its own starts this way: once it has some, it resumes from them.
"""

import re
from typing import Any

import jax
import ml_collections
from etils import epath

from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.rundir.checkpoint import Checkpoints, path_name
from jaxlab.rundir.workdir import CHECKPOINT_DIR


def source_of(text: str) -> tuple[str, int | None]:
    """(workdir, step or None) of ``"WORKDIR[:STEP]"`` (a bucket's ``gs://`` is no step)."""
    location, colon, step = text.rpartition(":")
    if colon and step.isdigit():
        return location, int(step)
    return text, None


def check(state: dict, config: ml_collections.ConfigDict) -> None:
    """`UserError` if `start_from` would fail: no such run or step, a malformed or empty
    selection, arrays of other shapes. Reads the other run's checkpoint metadata only."""
    directory, step, target = _plan(state, config)
    with Checkpoints(directory, keep=1) as saved:
        saved.check_part(_step(saved, directory, step), target)


def start_from(state: dict, config: ml_collections.ConfigDict) -> dict:
    """``state`` (a fresh run's, placed on its mesh) with the arrays ``config.train`` selects
    taken from the run it names (module docstring)."""
    directory, step, target = _plan(state, config)
    with Checkpoints(directory, keep=1) as saved:
        taken = saved.restore_part(_step(saved, directory, step), target)
    merged = {**state, "params": _merged(state["params"], taken["params"])}
    if "task_state" in taken:
        merged["task_state"] = taken["task_state"]
    return merged


def _plan(state: dict, config: ml_collections.ConfigDict) -> tuple[epath.Path, int | None, dict]:
    """(the other run's checkpoint directory, the step asked for, the subtree to take)."""
    location, step = source_of(config.train.init_from)
    workdir = paths.path(location, "config.train.init_from")
    directory = workdir / CHECKPOINT_DIR
    if not directory.is_dir():
        raise UserError(
            f"config.train.init_from={config.train.init_from!r}: {workdir} holds no "
            f"checkpoints ({directory})"
        )
    pattern = config.train.init_from_paths
    try:
        selection = re.compile(pattern) if pattern else None
    except re.error as error:
        raise UserError(
            f"config.train.init_from_paths={pattern!r} is not a regular expression: {error}"
        ) from None
    target: dict[str, Any] = {"params": _selected(state["params"], selection, "")}
    if not jax.tree.leaves(target["params"]):
        raise UserError(
            f"config.train.init_from_paths={pattern!r} matches no parameter path; they look "
            f"like {', '.join(_paths(state['params'])[:3])}"
        )
    if selection is None and jax.tree.leaves(state["task_state"]):
        target["task_state"] = state["task_state"]
    return directory, step, target


def _step(saved: Checkpoints, directory: epath.Path, step: int | None) -> int:
    """``step``, or the newest kept step when it is None."""
    if step is not None:
        return step
    newest = saved.latest_step()
    if newest is None:
        raise UserError(f"config.train.init_from: {directory} holds no checkpoint")
    return newest


def _selected(tree: Any, selection: re.Pattern | None, path: str) -> Any:
    """The part of ``tree`` whose leaf paths ``selection`` matches (all with None); a container
    other than a dict is taken whole or not at all."""
    if selection is None:
        return tree
    if isinstance(tree, dict):
        kept = {}
        for key, subtree in tree.items():
            part = _selected(subtree, selection, f"{path}/{key}" if path else str(key))
            if jax.tree.leaves(part):
                kept[key] = part
        return kept
    return tree if any(selection.search(p) for p in _paths(tree, path)) else {}


def _paths(tree: Any, prefix: str = "") -> list[str]:
    """The ``/``-joined key paths of the leaves of ``tree``."""
    names = [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return [f"{prefix}/{name}" if prefix and name else prefix or name for name in names]


def _merged(fresh: Any, taken: Any) -> Any:
    """``fresh`` with the subtrees ``taken`` holds replaced by them."""
    if isinstance(fresh, dict) and isinstance(taken, dict):
        return {k: _merged(v, taken[k]) if k in taken else v for k, v in fresh.items()}
    return taken
