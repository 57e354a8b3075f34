"""Stopping cleanly on SIGTERM / SIGINT (preemption notices, Ctrl-C).

A signal does not interrupt the compiled chunk that is running: it is recorded, and the training
loop asks `StopRequests.reason` at every chunk boundary. The loop then saves a checkpoint of that
step, waits for it to be committed and raises `jaxlab.errors.Interrupted` (the CLI exits with
status 75).

In a single process, Python handlers record the signals. In a multi-process run
(``jax.distributed``) the handlers are not installed: a signal seen by one host alone would make
the hosts stop at different steps. There JAX's preemption service (on by default) catches SIGTERM
on any host and agrees on a common sync point, which Orbax's
``CheckpointManager.reached_preemption`` reports; it is called once per chunk with the chunk
count, identical on every host.

`StopSignals` is the recording alone, which a process sweep's scheduler uses to stop launching
and pass the stop on to its workers.
"""
import signal
import threading
from typing import Callable

import jax

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: records SIGTERM/SIGINT (``received``: the first one's name) while active,
    in the main thread, and restores the old handlers after."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def _install(self) -> bool:
        return threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self._install():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _record(self, signum, frame) -> None:
        del frame
        self.received = self.received or signal.Signals(signum).name


class StopRequests(StopSignals):
    """The training loop's stops: signals in a single process, JAX's preemption sync point in a
    multi-process run (see the module docstring)."""

    def __init__(self, reached_preemption: Callable[[int], bool]):
        super().__init__()
        self._reached_preemption = reached_preemption

    def _install(self) -> bool:
        return jax.process_count() == 1 and super()._install()

    def reason(self, chunk_index: int) -> str | None:
        """Why the run should stop after chunk ``chunk_index`` (a signal's name), or None."""
        if self.received is None and self._reached_preemption(chunk_index):
            self.received = "a preemption notice"
        return self.received
