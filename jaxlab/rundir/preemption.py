"""Stopping cleanly on SIGTERM / SIGINT (preemption notices, Ctrl-C).

`StopRequests` tells the training loop at chunk boundaries when to checkpoint and stop;
`StopSignals` records the signals, and `held` holds them pending while a process starts.
"""

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Holds SIGTERM/SIGINT pending in this thread while active; a process started meanwhile
    starts with them held, until its own `StopSignals` takes them."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def unblock() -> None:
    """Delivers the SIGTERM/SIGINT held pending since the process started, and those after."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class StopSignals:
    """Context manager: records SIGTERM/SIGINT (``received``: the first one's name) while active,
    in the main thread, and restores the old handlers after."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}  # signal -> the handler it had before
        self._outer: StopSignals | None = None

    def _install(self) -> bool:
        return threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self._install():
            outer = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
            self._outer = outer if isinstance(outer, StopSignals) else None
            self.received = self._outer.received if self._outer else None
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
            unblock()  # the signals held back until now arrive here
        return self

    def reinstall(self) -> None:
        """Takes the signals back from a library that replaced their handlers (``ray.init``)."""
        if self._previous:
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._record)

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _record(self, signum, frame) -> None:
        self.received = self.received or signal.Signals(signum).name
        if self._outer is not None:
            self._outer._record(signum, frame)


class StopRequests(StopSignals):
    """The training loop's stops: signals in a single process, JAX's preemption sync point in a
    multi-process run (see docs/modules.md)."""

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
