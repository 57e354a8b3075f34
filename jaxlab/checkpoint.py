"""Orbax checkpoints of the whole train state (``CheckpointManager`` with the ``ocp.args`` API).

Saves are asynchronous and atomic (Orbax commits a step directory only once it is complete); the
newest ``keep`` are kept. Restore places every array with the sharding of the target it is given,
so a checkpoint written on one mesh restores on another.
"""
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """The checkpoints of one run, in ``directory``."""

    def __init__(self, directory: pathlib.Path, keep: int):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True,
                                               create=True)
        self._manager = ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Starts an asynchronous save of ``state`` as ``step``; returns before it is written."""
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, step: int, target: Any) -> Any:
        """Restores ``step`` with the shapes, dtypes and shardings of ``target`` (arrays or
        `jax.ShapeDtypeStruct`s)."""
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        """Waits for pending saves to be committed, then releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
