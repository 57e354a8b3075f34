"""Guarding a workdir: one run, of one config, at a time.

* `check_config` refuses a workdir whose ``config.json`` differs from the config being run, and
  lists the differing keys (``allow_change=True`` turns the refusal into a warning, e.g. to
  continue a run with a longer schedule).
* `claim` holds an exclusive ``fcntl.flock`` on ``WORKDIR/.lock`` for the whole run, so a second
  process launched into the same workdir is refused. The kernel drops the lock when its holder
  dies, however it dies, so a lock left by a killed run never blocks the next launch.

Only process 0 of a multi-process run takes the lock and writes ``config.json``.
"""
import contextlib
import errno
import fcntl
import json
import os
import pathlib
import socket
import warnings
from typing import Iterator

import jax
import ml_collections

from jaxlab import config as config_lib
from jaxlab.errors import UserError

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"


def config_differences(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> list[str]:
    """One line per key whose value in ``workdir/config.json`` differs from ``config``'s."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        return []
    old = _flatten(json.loads(path.read_text()))
    new = _flatten(json.loads(config_lib.to_json(config)))
    differing = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [f"  {k}: {old.get(k, '(absent)')!r} in the workdir, {new.get(k, '(absent)')!r} now"
            for k in differing]


def check_config(workdir: pathlib.Path, config: ml_collections.ConfigDict,
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


@contextlib.contextmanager
def claim(workdir: pathlib.Path, config: ml_collections.ConfigDict,
          allow_config_change: bool = False) -> Iterator[None]:
    """Checks the config, creates ``workdir`` and locks it; unlocks on exit.

    Nothing is written when the config is refused or the lock is held by another process. The
    caller writes the config (`write_config`) once the run is known to resume.
    """
    workdir = pathlib.Path(workdir)
    check_config(workdir, config, allow_config_change)
    if jax.process_index() != 0:
        yield
        return
    workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
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


def write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Writes ``workdir/config.json`` atomically (process 0 only)."""
    if jax.process_index() == 0:
        _write_atomic(pathlib.Path(workdir) / CONFIG_FILE, config_lib.to_json(config))


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
