"""A run's workdir: its files, its config, and one run of one config at a time.

Layout: ``config.json`` (the resolved config), ``checkpoints/`` (Orbax), ``.lock``, and the logs
of `jaxlab.metrics_log`. Paths go through `jaxlab.paths`, so a workdir may be local or remote.

* `check_config` refuses a workdir whose ``config.json`` differs from the config being run, and
  lists the differing keys (``allow_change=True`` turns the refusal into a warning, e.g. to
  continue a run with a longer schedule).
* `claim` holds an exclusive ``fcntl.flock`` on ``WORKDIR/.lock`` for the whole run, so a second
  process launched into the same workdir is refused. The kernel drops the lock when its holder
  dies, however it dies, so a lock left by a killed run never blocks the next launch. A remote
  workdir (a bucket) cannot be locked: jaxlab warns and relies on one job per remote workdir.

Only process 0 of a multi-process run takes the lock and writes ``config.json``.
"""
import contextlib
import errno
import fcntl
import json
import os
import socket
import warnings
from typing import Iterator

import jax
import ml_collections
from etils import epath

from jaxlab import config as config_lib
from jaxlab import paths
from jaxlab.errors import UserError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"


def read_config_tree(workdir: epath.Path) -> dict | None:
    """The nested dict of ``workdir/config.json``; None when the workdir has none."""
    path = workdir / CONFIG_FILE
    if not path.exists():
        return None
    try:
        tree = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not readable JSON ({error}); it is not a config jaxlab "
                        f"wrote: restore it, or use a new workdir") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path} holds a JSON {type(tree).__name__}, not a jaxlab config")
    return tree


def read_config(workdir: epath.Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote into ``workdir``."""
    tree = read_config_tree(workdir)
    if tree is None:
        raise UserError(f"{workdir} is not a jaxlab workdir: {workdir / CONFIG_FILE} does not "
                        f"exist")
    return ml_collections.ConfigDict(tree)


def write_config(workdir: epath.Path, config: ml_collections.ConfigDict) -> None:
    """Writes ``workdir/config.json`` atomically (process 0 only)."""
    if jax.process_index() == 0:
        paths.write_atomic(workdir / CONFIG_FILE, config_lib.to_json(config))


def config_differences(workdir: epath.Path, config: ml_collections.ConfigDict) -> list[str]:
    """One line per key whose value in ``workdir/config.json`` differs from ``config``'s."""
    tree = read_config_tree(workdir)
    if tree is None:
        return []
    old = _flatten(tree)
    new = _flatten(json.loads(config_lib.to_json(config)))
    differing = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [f"  {k}: {old.get(k, '(absent)')!r} in the workdir, {new.get(k, '(absent)')!r} now"
            for k in differing]


def check_config(workdir: epath.Path, config: ml_collections.ConfigDict,
                 allow_change: bool = False) -> None:
    """Refuses (`UserError`) a workdir holding a run of another config, naming the differences."""
    differences = config_differences(workdir, config)
    if not differences:
        return
    listing = "\n".join(differences)
    if allow_change:
        warnings.warn(f"resuming {workdir} with a changed config:\n{listing}", stacklevel=3)
        return
    raise UserError(f"workdir {workdir} holds a run with a different config:\n{listing}\n"
                    f"use a new workdir, or pass --allow-config-change "
                    f"(train(..., allow_config_change=True)) to resume it with this config")


def _check_can_hold(workdir: epath.Path) -> None:
    """`UserError` if ``workdir`` or one of its fixed entries is a file where a directory goes."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"workdir {workdir} is a file, not a directory; use another workdir")
    checkpoints = workdir / CHECKPOINT_DIR
    if checkpoints.exists() and not checkpoints.is_dir():
        raise UserError(f"{checkpoints} is a file, where the run keeps its checkpoint "
                        f"directory; move it away or use another workdir")


@contextlib.contextmanager
def claim(workdir: epath.Path, config: ml_collections.ConfigDict,
          allow_config_change: bool = False) -> Iterator[None]:
    """Checks the config, creates ``workdir`` and locks it; unlocks on exit.

    Nothing is written when the config is refused or the lock is held by another process. The
    caller writes the config (`write_config`) once the run is known to resume.
    """
    _check_can_hold(workdir)
    check_config(workdir, config, allow_config_change)
    if jax.process_index() != 0:
        yield
        return
    workdir.mkdir(parents=True, exist_ok=True)
    if paths.is_remote(workdir):
        warnings.warn(f"{workdir} is a remote workdir, which cannot be locked against a second "
                      f"run: run one job per remote workdir", stacklevel=3)
        yield
        return
    fd = os.open(os.fspath(workdir / LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UserError(f"workdir {workdir} is in use by a running jaxlab process ({holder}); "
                            f"wait for it to finish or use another workdir") from None
        if not allow_config_change:  # final under the lock: another run may have ended meanwhile
            check_config(workdir, config)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
