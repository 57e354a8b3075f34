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
"""
import signal
import threading
from typing import Callable

import jax

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """Context manager: records SIGTERM/SIGINT while active and restores the old handlers after."""

    def __init__(self, reached_preemption: Callable[[int], bool]):
        self._reached_preemption = reached_preemption
        self._received: str | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequests":
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _record(self, signum, frame) -> None:
        del frame
        self._received = self._received or signal.Signals(signum).name

    def reason(self, chunk_index: int) -> str | None:
        """Why the run should stop after chunk ``chunk_index`` (a signal's name), or None."""
        if self._received is None and self._reached_preemption(chunk_index):
            self._received = "a preemption notice"
        return self._received
