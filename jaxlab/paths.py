"""The one path layer: workdirs, checkpoints and data files, local or remote.

Every path a user gives (``--workdir``, a data file, ``jaxlab eval DIR``) goes through `path`,
which returns an ``etils.epath.Path``: a `pathlib`-like object that also reaches buckets
(``gs://``, ``s3://``) when their file-system backend is installed (``gcsfs`` / ``s3fs``, or
TensorFlow). Orbax writes checkpoints to the same paths itself (TensorStore reaches ``gs://`` and
``s3://`` natively). A remote path whose backend is missing, or a scheme jaxlab does not know, is
refused with a `UserError` before anything is written (never a local directory named ``gs:``).

Buckets have no appends and no atomic renames, so the two writers here behave per kind of path:

* `write_atomic`: a local file is written beside and renamed over the old one; a remote object
  is replaced by a single upload (atomic by itself).
* `AppendFile`: a local file is appended and flushed record by record; a remote one is uploaded
  whole after every append (logs are small: one record per logged chunk).
"""
import importlib.util
import os
import re
from typing import Any

from etils import epath

from jaxlab.errors import UserError

# scheme -> the packages that can serve it (any one suffices), for etils.epath
REMOTE_BACKENDS = {"gs": ("gcsfs", "tensorflow"), "s3": ("s3fs", "tensorflow")}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme(location: str | os.PathLike) -> str | None:
    """``"gs"`` for ``gs://bucket/run``; None for a local path."""
    match = _SCHEME.match(str(location))
    return match[1] if match else None


def is_remote(location: str | os.PathLike) -> bool:
    return scheme(location) is not None


def path(location: str | os.PathLike, what: str = "path") -> epath.Path:
    """``location`` as an ``epath.Path``: local paths absolute (``~`` expanded), remote ones
    checked for a scheme and backend this installation can serve (`UserError` naming ``what``,
    e.g. ``"workdir"``, otherwise)."""
    if isinstance(location, epath.Path) and is_remote(location):
        return location
    text = os.fspath(location)
    found = scheme(text)
    if found is None:
        return epath.Path(os.path.abspath(os.path.expanduser(text)))
    if found not in REMOTE_BACKENDS:
        raise UserError(f"{what} {text}: jaxlab cannot read or write {found}:// paths; use a "
                        f"local path or one of {', '.join(f'{s}://' for s in REMOTE_BACKENDS)}")
    backends = REMOTE_BACKENDS[found]
    if not any(importlib.util.find_spec(name) for name in backends):
        raise UserError(f"{what} {text}: {found}:// paths need one of the packages "
                        f"{' or '.join(backends)}, and none is installed; pip install "
                        f"{backends[0]} (and authenticate with your cloud's tools)")
    return epath.Path(text)


def write_atomic(destination: epath.Path, data: str | bytes) -> None:
    """Writes ``data`` so that a reader sees the old content or the new, never a part."""
    mode = "w" if isinstance(data, str) else "wb"
    if is_remote(destination):
        with destination.open(mode) as file:
            file.write(data)
        return
    tmp = destination.parent / f"{destination.name}.tmp"
    with tmp.open(mode) as file:
        file.write(data)
    tmp.replace(destination)


class AppendFile:
    """A log file that grows by appended records and survives a kill between two of them.

    Created with ``initial`` content (written with `write_atomic`, replacing any old file).
    """

    def __init__(self, destination: epath.Path, initial: bytes = b""):
        self.path = destination
        self._remote = is_remote(destination)
        write_atomic(destination, initial)
        if self._remote:
            self._content = bytearray(initial)
        else:
            self._file = open(os.fspath(destination), "ab")

    def append(self, data: bytes) -> None:
        if self._remote:
            self._content += data
            write_atomic(self.path, bytes(self._content))
        else:
            self._file.write(data)
            self._file.flush()

    def close(self) -> None:
        if not self._remote:
            self._file.close()


def save_figure(figure: Any, destination: epath.Path, **options: Any) -> None:
    """Writes a matplotlib ``figure`` as a PNG to a local or remote ``destination``; ``options``
    go to ``savefig`` (``dpi`` defaults to 100)."""
    with destination.open("wb") as file:
        figure.savefig(file, format="png", **{"dpi": 100, **options})
