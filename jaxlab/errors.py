"""Errors users see: bad input (`UserError`, exit status 2; `InUse` for a directory another process
holds), a diverged run (`NonFiniteError`, 3), a storage that refused a write (`StorageError`, 74),
and a run stopped by a signal after saving a checkpoint (`Interrupted`, 75): the exit statuses of
the ``jaxlab`` command and of a sweep's worker processes."""

USAGE_ERROR = 2  # `UserError`
NONFINITE = 3  # `NonFiniteError`
SWEEP_INCOMPLETE = 4  # `jaxlab sweep`: some runs failed or are running elsewhere
STORAGE_ERROR = 74  # `StorageError`: EX_IOERR (sysexits.h)
INTERRUPTED = 75  # `Interrupted`: EX_TEMPFAIL (sysexits.h), a temporary failure, run again


def one_line(error: BaseException) -> str:
    """``ExceptionType: the first line of its message``, at most 300 characters."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


class UserError(ValueError):
    """Bad input from the user (config, override, experiment name, data path).

    Raised before anything is written to a workdir; the message says what was wrong and what was
    expected.
    """


class InUse(UserError):
    """A workdir (or a sweep's directory) is held by another live jaxlab process."""


class StorageError(RuntimeError):
    """The storage refused a write of the run (a full disk, a lost permission, a network file
    system's error); the checkpoints written before are intact, and the same command resumes
    once the storage is fixed."""


class NonFiniteError(RuntimeError):
    """The loss or the gradients became NaN or Inf; no checkpoint of that state was written.

    ``step`` is the first bad step (1-based, as in ``metrics.jsonl``), ``metrics`` its values.
    """

    def __init__(self, message: str, step: int, metrics: dict):
        super().__init__(message)
        self.step, self.metrics = step, metrics


class Interrupted(Exception):
    """SIGTERM/SIGINT (or a preemption notice) stopped the run after a checkpoint of ``step`` was
    committed (a sweep: after its running runs' checkpoints were, ``step`` None); running the
    same command again resumes it."""

    def __init__(self, message: str, step: int | None, reason: str):
        super().__init__(message)
        self.step, self.reason = step, reason
