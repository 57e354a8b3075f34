"""Orbax checkpoints of the whole train state (``CheckpointManager`` with the ``ocp.args`` API,
the state one PyTree item): `Checkpoints` saves and restores the checkpoints of one run, and
`Checkpoints.restore_latest` resumes from the newest one that reads.
"""

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxlab.errors import StorageError, UserError, one_line

UNREADABLE_SUFFIX = ".unreadable"
AHEAD_SUFFIX = ".ahead-of-log"
DEFAULT_ITEM = "default"  # Orbax's name for the one item of a checkpoint


class CheckpointWarning(UserWarning):
    """A checkpoint (or an unfinished write) was skipped."""


class Checkpoints:
    """The checkpoints of one run, in ``directory``.

    ``owner=True`` (the training run, holding the workdir lock) also removes unfinished writes left
    by an earlier process and moves unreadable steps aside; readers (``jaxlab eval``) leave the
    directory as it is.
    """

    def __init__(self, directory: epath.Path, keep: int, *, owner: bool = False):
        self.directory = directory
        self._owner = owner and jax.process_index() == 0
        unfinished = (
            self.directory.glob(f"*{ocp.path.atomicity.TMP_DIR_SUFFIX}*")
            if owner and self.directory.exists()
            else ()
        )
        for path in sorted(unfinished):
            warnings.warn(
                f"ignoring {path}: an unfinished checkpoint write (the run that wrote it "
                f"was stopped); it is removed",
                CheckpointWarning,
                stacklevel=2,
            )
        # The whole state is Orbax's single default item ("STEP/default/").
        handlers, state_handler = ocp.handlers.DefaultCheckpointHandlerRegistry(), _state_handler()
        for args in (ocp.args.PyTreeSave, ocp.args.PyTreeRestore):
            handlers.add(DEFAULT_ITEM, args, state_handler)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            enable_async_checkpointing=True,
            create=True,
            cleanup_tmp_directories=owner,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, handler_registry=handlers
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Starts an asynchronous save of ``state`` as ``step``; returns before it is written.
        A failed write (of this save or of an earlier one, which Orbax reports here) raises
        `StorageError`."""
        with self._writing():
            self._manager.save(step, args=ocp.args.PyTreeSave(state), force=True)

    def restore(self, step: int, target: Any) -> Any:
        """Restores ``step`` with the shapes, dtypes and shardings of ``target`` (arrays or
        `jax.ShapeDtypeStruct`s)."""
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target
        )
        return self._manager.restore(
            step,
            args=ocp.args.PyTreeRestore(
                abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)
            ),
        )

    def restore_latest(self, target: Any, newest: int | None = None) -> tuple[int, Any] | None:
        """(step, state) of the newest complete, readable checkpoint; None when there is none.

        Damaged steps are skipped with a `CheckpointWarning`; see docs/modules.md. With
        ``newest`` (the last step ``metrics.jsonl`` records), a checkpoint at or before it is
        preferred when one reads: steps beyond it, whose records were lost, are moved aside
        (``STEP.ahead-of-log``, by the owner) and the run recomputes them exactly.
        """
        steps = sorted(self._manager.all_steps(), reverse=True)
        ahead = [step for step in steps if newest is not None and step > newest]
        if ahead and len(ahead) < len(steps):
            found = self._newest_readable(steps[len(ahead) :], target, required=False)
            if found is not None:
                self._move_aside(
                    [self.directory / str(step) for step in ahead],
                    AHEAD_SUFFIX,
                    f"newer than the last step metrics.jsonl records ({newest})",
                )
                return found
        return self._newest_readable(steps, target, required=True)

    def restore_at(self, step: int, target: Any) -> Any:
        """The state of checkpoint ``step``; `UserError` naming the kept steps when it is not
        one of them, or is incomplete."""
        self.check_kept(step)
        problem = self._incompleteness(step, target)
        if problem is not None:
            raise UserError(f"checkpoint {self.directory / str(step)} does not read: {problem}")
        return self.restore(step, target)

    def check_kept(self, step: int) -> None:
        """`UserError` naming the kept steps unless ``step`` is one of them."""
        kept = sorted(self._manager.all_steps())
        if step not in kept:
            raise UserError(
                f"no checkpoint of step {step} in {self.directory}; the kept steps are "
                f"{', '.join(map(str, kept)) or '(none)'}"
            )

    def check_part(self, step: int, target: Any) -> None:
        """`UserError` naming the leaves of ``target`` (a subtree of the saved state: its dicts
        may leave keys out) that checkpoint ``step`` lacks or holds with another shape or
        dtype."""
        self.check_kept(step)
        saved = _leaf_signatures(self._manager.metadata(step).item_metadata)
        wanted = _leaf_signatures(target)
        differing = [
            f"  {path}: {saved[path]} in the checkpoint, {wanted[path]} now"
            if path in saved
            else f"  {path}: absent in the checkpoint, {wanted[path]} now"
            for path in sorted(wanted)
            if saved.get(path) != wanted[path]
        ]
        if differing:
            raise UserError(
                f"checkpoint {self.directory / str(step)} does not hold the arrays taken from "
                f"it as this config builds them ({len(differing)} differ):\n"
                + "\n".join(differing[:8])
            )

    def restore_part(self, step: int, target: Any) -> Any:
        """The leaves of ``target`` (as in `check_part`, which it checks first) restored from
        ``step`` with ``target``'s shapes, dtypes and shardings."""
        self.check_part(step, target)
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target
        )
        return self._manager.restore(
            step,
            args=ocp.args.PyTreeRestore(
                abstract,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                partial_restore=True,
            ),
        )

    def _newest_readable(
        self, steps: list[int], target: Any, required: bool
    ) -> tuple[int, Any] | None:
        """The first of ``steps`` that restores; the unreadable ones before it are moved aside.
        When none reads: `UserError` if ``required`` (and any was tried), else None."""
        skipped: list[epath.Path] = []
        for step in steps:
            path = self.directory / str(step)
            problem = self._incompleteness(step, target)
            if problem is None:
                try:
                    state = self.restore(step, target)
                except Exception as error:  # noqa: BLE001 - any failure to read is damage here
                    problem = f"its arrays do not read: {one_line(error)}"
            if problem is None:
                self._move_aside(skipped, UNREADABLE_SUFFIX, "unreadable")
                return step, state
            warnings.warn(f"ignoring checkpoint {path}: {problem}", CheckpointWarning, stacklevel=3)
            skipped.append(path)
        if skipped and required:
            raise UserError(
                f"no readable checkpoint in {self.directory}: "
                + "; ".join(f"{p.name} skipped" for p in skipped)
                + ". Move the directory away to start again from scratch"
            )
        return None

    def _incompleteness(self, step: int, target: Any) -> str | None:
        """Why ``step`` is not a complete checkpoint (None if it looks complete); raises
        `UserError` when it is complete but holds a state of other shapes than ``target``."""
        try:
            metadata = self._manager.metadata(step)
            if metadata.commit_timestamp_nsecs is None:
                return "it has no commit record (_CHECKPOINT_METADATA missing or incomplete)"
            saved = metadata.item_metadata
        except Exception as error:  # noqa: BLE001 - unreadable metadata is damage
            return f"its metadata does not read: {one_line(error)}"
        if saved is None:
            return "its tree metadata (_METADATA) is missing"
        differences = _shape_differences(saved, target)
        if differences:
            raise UserError(
                f"checkpoint {self.directory / str(step)} holds a train state of "
                f"another structure than this config builds ({len(differences)} "
                f"arrays differ):\n"
                + "\n".join(differences[:8])
                + "\nuse a new workdir for a changed model"
            )
        return None

    def _move_aside(self, paths: list[epath.Path], suffix: str, why: str) -> None:
        """Renames steps newer than the restored one (``STEP`` + ``suffix``), so that they can be
        saved again; ``why`` they are not used goes into the warning."""
        if not self._owner or not paths:
            return
        for path in paths:
            destination, number = path.with_name(path.name + suffix), 1
            while destination.exists():
                destination, number = path.with_name(f"{path.name}{suffix}.{number}"), number + 1
            path.rename(destination)
            warnings.warn(
                f"moved the checkpoint {path} ({why}) to {destination}",
                CheckpointWarning,
                stacklevel=4,
            )
        self._manager.reload()

    def reached_preemption(self, step: int) -> bool:
        """Orbax's preemption check: true at the sync point all hosts agreed on after a notice."""
        return self._manager.reached_preemption(step)

    def wait_until_committed(self) -> None:
        """Blocks until every started save is committed (`StorageError` if one failed)."""
        with self._writing():
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves to be committed, then releases the manager."""
        try:
            self.wait_until_committed()
        except StorageError:
            with contextlib.suppress(Exception):  # Orbax raises the same failure again
                self._manager.close()
            raise
        self._manager.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turns a failed checkpoint write (a full disk, a lost permission, a network file
        system's error) into one `StorageError` naming the newest checkpoint still intact."""
        try:
            yield
        except Exception as error:  # noqa: BLE001 - whatever Orbax/TensorStore raise here
            text = str(error)
            cause = (
                "no space left on device" if "No space left on device" in text else one_line(error)
            )
            self._manager.reload()
            intact = self._manager.latest_step()
            kept = (
                f"the newest intact checkpoint is step {intact}"
                if intact is not None
                else "no checkpoint was completed"
            )
            raise StorageError(
                f"writing a checkpoint in {self.directory} failed: {cause}; "
                f"{kept}: fix the storage and run the same command again to "
                f"resume"
            ) from None

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    """Orbax's handler of array trees, writing each replicated array from one replica: Orbax's
    default splits the write of a replicated array across its replicas, which compiles a slicing
    program per array shape on the first save (72 for the default job on 8 devices) and gains
    nothing when one host writes every replica's data anyway."""
    registry = ocp.type_handlers.create_type_handler_registry(
        (jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False)),
        (np.ndarray, ocp.type_handlers.NumpyHandler()),
        (int, ocp.type_handlers.ScalarHandler()),
        (float, ocp.type_handlers.ScalarHandler()),
        (np.number, ocp.type_handlers.ScalarHandler()),
    )
    return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


def _shape_differences(saved: Any, target: Any) -> list[str]:
    """Lines naming the leaves whose presence, shape or dtype differ between the two trees."""
    saved, target = _leaf_signatures(saved), _leaf_signatures(target)
    differing = [p for p in saved.keys() | target.keys() if saved.get(p) != target.get(p)]
    differing.sort(key=lambda p: (p.startswith("opt_state"), p))  # parameters first
    return [
        f"  {p}: {saved.get(p, '(absent)')} in the checkpoint, {target.get(p, '(absent)')} now"
        for p in differing
    ]


def _leaf_signatures(tree: Any) -> dict[str, str]:
    """{"params/block0/...": "(shape) dtype"}; container types (tuple, list, namedtuple, dict) are
    ignored, as Orbax's metadata stores them differently from the live state."""
    return {
        path_name(key_path): f"{tuple(leaf.shape)} {leaf.dtype}"
        for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def path_name(key_path: Sequence[Any]) -> str:
    """A leaf's key path as ``"params/block0/kernel"``."""
    return "/".join(
        str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in key_path
    )
