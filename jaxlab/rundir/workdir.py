"""A run's workdir and a sweep's directory: every file name in them, the run's config, and one
process at a time in each. The file names are constants (`CONFIG_FILE`, ...); `check_config`
refuses a workdir of another config, and `claim` and `lock` hold a directory's lock.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import warnings
from collections.abc import Iterator, Sequence

import jax
import ml_collections
from etils import epath

from jaxlab import config as config_lib
from jaxlab import paths
from jaxlab.config.run_config import FREE_SECTIONS
from jaxlab.errors import InUse, UserError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
METRICS_FILE = "metrics.jsonl"
EVENTS_PREFIX = "events.out.tfevents."
METRICS_PLOT = "metrics.png"  # `jaxlab report`
RESULT_FILE = "sweep_result.json"  # a sweep's run: {"status", "metrics", "error"}
LINEAGE_FILE = "lineage.jsonl"  # a population-based training's run: its hyperparameter schedule
RUN_LOG = "run.log"  # a sweep's run trained in a worker process: its output
SWEEP_FILE = "sweep.json"  # a sweep: run name -> overrides
RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
SWEEP_METRIC_PLOT, SWEEP_CURVES_PLOT = "sweep_metric.png", "sweep_curves.png"
SWEEP_LINEAGE_PLOT = "sweep_lineage.png"  # a population-based training's schedules


def read_config_tree(workdir: epath.Path) -> dict | None:
    """The nested dict of ``workdir/config.json``; None when the workdir has none."""
    path = workdir / CONFIG_FILE
    if not path.exists():
        return None
    try:
        tree = json.loads(path.read_text())
        problem = "" if isinstance(tree, dict) else f"holds a JSON {type(tree).__name__}"
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = f"is not readable JSON ({error})"
    if problem:
        raise UserError(f"{path} {problem}, not a jaxlab config: restore it, or use a new workdir")
    return tree


def read_config(workdir: epath.Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote into ``workdir``."""
    tree = read_config_tree(workdir)
    if tree is None:
        raise UserError(
            f"{workdir} is not a jaxlab workdir: {workdir / CONFIG_FILE} does not exist"
        )
    return ml_collections.ConfigDict(tree)


def write_config(workdir: epath.Path, config: ml_collections.ConfigDict) -> None:
    """Writes ``workdir/config.json`` atomically (process 0 only)."""
    if jax.process_index() == 0:
        paths.write_atomic(workdir / CONFIG_FILE, config_lib.to_json(config))


def config_differences(workdir: epath.Path, config: ml_collections.ConfigDict) -> list[str]:
    """One line per key whose value in ``workdir/config.json`` differs from ``config``'s; the
    sections of `FREE_SECTIONS` are left out: a run may resume on another mesh, or record
    otherwise."""
    tree = read_config_tree(workdir)
    if tree is None:
        return []
    old = config_lib.flatten(tree)
    new = config_lib.flatten(json.loads(config_lib.to_json(config)))
    differing = sorted(
        k
        for k in old.keys() | new.keys()
        if old.get(k) != new.get(k) and k.split(".")[0] not in FREE_SECTIONS
    )
    return [
        f"  {k}: {old.get(k, '(absent)')!r} in the workdir, {new.get(k, '(absent)')!r} now"
        for k in differing
    ]


def check_config(
    workdir: epath.Path, config: ml_collections.ConfigDict, allow_change: bool = False
) -> None:
    """Refuses (`UserError`) a workdir holding a run of another config, naming the differences."""
    differences = config_differences(workdir, config)
    if not differences:
        return
    listing = "\n".join(differences)
    if allow_change:
        warnings.warn(f"resuming {workdir} with a changed config:\n{listing}", stacklevel=3)
        return
    raise UserError(
        f"workdir {workdir} holds a run with a different config:\n{listing}\n"
        f"use a new workdir, or pass --allow-config-change "
        f"(train(..., allow_config_change=True)) to resume it with this config"
    )


PATH_MAX, NAME_MAX = 4096, 255  # Linux's limits, in bytes
ENTRY_ROOM = 512  # the longest path jaxlab and Orbax write below a workdir, with room to spare


def check_can_hold(directory: epath.Path, what: str = "workdir") -> None:
    """`UserError`, before anything is written, if ``directory`` cannot hold a run: a file where
    the directory (or its checkpoint directory) goes, or a path too long for the files below it."""
    if not paths.is_remote(directory):
        text = os.fsencode(os.fspath(directory))
        if any(len(part) > NAME_MAX for part in text.split(b"/")):
            raise UserError(
                f"{what} {directory}: a path component is longer than {NAME_MAX} "
                f"bytes, which the file system refuses; use a shorter name"
            )
        if len(text) > PATH_MAX - ENTRY_ROOM:
            raise UserError(
                f"{what} path is {len(text)} bytes long; the files below it need it "
                f"under {PATH_MAX - ENTRY_ROOM}: use a shorter path"
            )
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{what} {directory} is a file, not a directory; use another {what}")
    checkpoints = directory / CHECKPOINT_DIR
    if checkpoints.exists() and not checkpoints.is_dir():
        raise UserError(
            f"{checkpoints} is a file, where the run keeps its checkpoint "
            f"directory; move it away or use another workdir"
        )


@contextlib.contextmanager
def claim(
    workdirs: Sequence[epath.Path],
    configs: Sequence[ml_collections.ConfigDict],
    allow_config_change: bool = False,
) -> Iterator[None]:
    """Checks every config against its workdir, creates the workdirs and locks them all; unlocks
    on exit.

    Refused (`UserError`) with nothing touched when a config differs from its workdir's or one
    lock is held by another process: the locks taken so far are dropped and what this call
    created is removed again. The caller writes the configs (`write_config`) once the run is known
    to resume.
    """
    for workdir, config in zip(workdirs, configs):
        check_can_hold(workdir)
        check_config(workdir, config, allow_config_change)
    if jax.process_index() != 0:
        yield
        return
    with contextlib.ExitStack() as held:
        for workdir, config in zip(workdirs, configs):
            held.enter_context(_locked(workdir, config, allow_config_change))
        yield


@contextlib.contextmanager
def lock(directory: epath.Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` (created if needed), e.g. a sweep's; `UserError` if
    another process holds it, with nothing touched."""
    check_can_hold(directory, "directory")
    with _locked(directory, None, True):
        yield


def holder(directory: epath.Path) -> str | None:
    """Who holds the lock of ``directory`` ("pid 12 on host"), or None when no live process does."""
    path = directory / LOCK_FILE
    if paths.is_remote(directory) or not path.exists():
        return None
    try:
        fd = paths.open_no_follow(path, os.O_RDONLY)
    except UserError:  # a link, not a lock jaxlab made: `_locked` refuses it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)
    return None


@contextlib.contextmanager
def _locked(
    directory: epath.Path, config: ml_collections.ConfigDict | None, allow_config_change: bool
) -> Iterator[None]:
    """Creates and locks ``directory``. With a ``config``, checks it again under the lock
    (another run may have ended meanwhile); refused then, it removes what it created.

    Only the lock's holder ever removes the lock file, and a lock taken on a file that was
    removed (or replaced) meanwhile is dropped and taken again, so two processes racing for one
    new directory never both hold it and the refused one touches nothing.
    """
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    if paths.is_remote(directory):
        warnings.warn(
            f"{directory} is a remote workdir, which cannot be locked against a second "
            f"run: run one job per remote workdir",
            stacklevel=4,
        )
        yield
        return
    lock_path = os.fspath(directory / LOCK_FILE)
    fd, lock_created = _take_lock(lock_path, directory)
    try:
        if config is not None and not allow_config_change:
            try:
                check_config(directory, config)
            except UserError:
                if lock_created:
                    os.unlink(lock_path)
                if created:
                    with contextlib.suppress(OSError):  # not empty: someone else's files
                        os.rmdir(os.fspath(directory))
                raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _take_lock(lock_path: str, directory: epath.Path) -> tuple[int, bool]:
    """(descriptor holding an exclusive lock on ``lock_path``, whether this call created the
    file); `InUse` if a live process holds it, `UserError` if it is a symbolic link."""
    while True:
        try:  # a link there exists too: refused below
            fd = paths.open_no_follow(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            created = True
        except FileExistsError:
            try:
                fd = paths.open_no_follow(lock_path, os.O_RDWR)
            except FileNotFoundError:  # removed by its holder meanwhile: try again
                continue
            created = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            held_by = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise InUse(
                f"{directory} is in use by a running jaxlab process ({held_by}); "
                f"wait for it to finish or use another directory"
            ) from None
        try:
            current = os.stat(lock_path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino == os.fstat(fd).st_ino:
            return fd, created
        os.close(fd)  # locked a file its holder removed meanwhile: take the new one
