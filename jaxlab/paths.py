"""The one path layer: workdirs, checkpoints and data files, local or remote.

`path` turns what a user gives into an ``etils.epath.Path`` (refusing what cannot be served);
`write_atomic`, `AppendFile` and `save_figure` write to such paths, never through a link.
"""

import errno
import importlib.util
import io
import os
import re
import tempfile
from typing import Any, BinaryIO

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
    e.g. ``"workdir"``, otherwise). An empty location is refused (it is not "here")."""
    if isinstance(location, epath.Path) and is_remote(location):
        return location
    text = os.fspath(location)
    if not text.strip():
        raise UserError(f"{what} is empty; give a directory, e.g. runs/demo")
    found = scheme(text)
    if found is None:
        return epath.Path(os.path.abspath(os.path.expanduser(text)))
    if found not in REMOTE_BACKENDS:
        raise UserError(
            f"{what} {text}: jaxlab cannot read or write {found}:// paths; use a "
            f"local path or one of {', '.join(f'{s}://' for s in REMOTE_BACKENDS)}"
        )
    backends = REMOTE_BACKENDS[found]
    if not any(importlib.util.find_spec(name) for name in backends):
        raise UserError(
            f"{what} {text}: {found}:// paths need one of the packages "
            f"{' or '.join(backends)}, and none is installed; pip install "
            f"{backends[0]} (and authenticate with your cloud's tools)"
        )
    return epath.Path(text)


def write_atomic(destination: epath.Path, data: str | bytes) -> None:
    """Writes ``data`` (text as UTF-8) so that a reader sees the old content or the new, never a
    part, even after a power loss; a symbolic link at ``destination`` is replaced, not followed."""
    if isinstance(data, str):
        data = data.encode()
    if is_remote(destination):
        with destination.open("wb") as file:
            file.write(data)
        return
    directory = os.fspath(destination.parent)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{destination.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, os.fspath(destination))
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Flushes a directory's entries (a rename into it) to the disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_no_follow(location: str | os.PathLike, flags: int) -> int:
    """``os.open`` of a local file that is not a symbolic link (``O_NOFOLLOW``, mode 0644 when
    created); `UserError` naming a link, which jaxlab never writes through."""
    try:
        return os.open(os.fspath(location), flags | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserError(
                f"{location} is a symbolic link; jaxlab writes only files it made itself: "
                f"remove the link"
            ) from None
        raise


def open_append(destination: epath.Path) -> BinaryIO:
    """A local file opened for appending (created if needed), never through a link."""
    return os.fdopen(open_no_follow(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")


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
            self._file = open_append(destination)

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
    """Writes a matplotlib ``figure`` as a PNG to a local or remote ``destination``
    (`write_atomic`); ``options`` go to ``savefig`` (``dpi`` defaults to 100)."""
    png = io.BytesIO()
    figure.savefig(png, format="png", **{"dpi": 100, **options})
    write_atomic(destination, png.getvalue())
