"""A sweep's runs as Ray tasks: each task trains one run in a worker process on its node
(`jaxlab.sweep.processes.run_one`), at most ``parallel`` in flight.

`run` trains them on the cluster at an address, or on a new local one bound to 127.0.0.1.
"""

import contextlib
import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

from etils import epath

from jaxlab.errors import UserError
from jaxlab.rundir.preemption import StopSignals
from jaxlab.sweep import processes
from jaxlab.sweep.plan import Run

SINGLE_NODE_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a loopback-only instance
POLL_SECONDS = 0.2  # how often the scheduler looks for a stop while tasks run


def require_ray(local: bool = False):
    """The ``ray`` module (an optional dependency), or a `UserError` saying how to install it;
    ``local``: set up for a loopback-only instance (before ``ray`` is first imported)."""
    if local:
        os.environ.setdefault(SINGLE_NODE_SETTING, "0")
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'jaxlab[ray]'") from None
    return ray


def run(
    runs: Sequence[Run],
    workdir: epath.Path,
    parallel: int,
    address: str | None,
    *,
    quiet: bool = True,
    until: int | None = None,
) -> str | None:
    """Trains ``runs`` as Ray tasks (one CPU each) on the cluster at ``address`` (a new local
    one, bound to 127.0.0.1, when None); returns the name of the signal that stopped the sweep
    (the runs not launched stay pending), or None when every run ended. With ``until`` (a
    scheduler's rung) the runs stop at that step."""
    with StopSignals() as stop, connected(address, stop) as ray:
        _schedule(ray, runs, workdir, parallel, stop, quiet, until)
    return stop.received


@contextlib.contextmanager
def connected(address: str | None, stop: StopSignals) -> Iterator[Any]:
    """The ``ray`` module, connected to the cluster at ``address`` (a new local one, bound to
    127.0.0.1, when None; shut down at the end), with ``stop``'s handlers back in place."""
    ray = require_ray(local=address is None)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"py_modules": [str(pathlib.Path(__file__).parent.parent)]},
        )
        stop.reinstall()  # ray.init sets a SIGTERM handler of its own
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


class Tasks:
    """Runs trained as Ray tasks, each to a step of its own (a scheduler's jobs): `start`,
    `ended`, `stop` (`jaxlab.sweep.processes.Workers` is the local equivalent)."""

    def __init__(self, ray: Any, workdir: epath.Path):
        self.ray, self.workdir = ray, workdir
        self._task = ray.remote(num_cpus=1)(_train_one)
        self.running: dict[Any, tuple[Run, int | None]] = {}  # ObjectRef -> (run, until)

    def start(self, run_: Run, until: int | None) -> None:
        self.running[self._task.remote(run_, os.fspath(self.workdir), until)] = (run_, until)

    def ended(self, timeout: float = 0.0) -> list[tuple[Run, int | None, str]]:
        """(run, until, status) of the tasks that ended since the last call, waiting up to
        ``timeout`` seconds for one."""
        if not self.running:
            return []
        done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        if done:  # and whichever others have ended too
            done, _ = self.ray.wait(list(self.running), num_returns=len(self.running), timeout=0)
        return [(*self.running.pop(ref), self.ray.get(ref)) for ref in done]

    def stop(self) -> None:
        """Cancels the running tasks and waits until each one's worker has committed a
        checkpoint and exited."""
        for ref in self.running:
            self.ray.cancel(ref)  # KeyboardInterrupt in the task: its worker gets SIGTERM
        if self.running:
            self.ray.wait(list(self.running), num_returns=len(self.running))
        self.running.clear()


def _schedule(
    ray,
    runs: Sequence[Run],
    workdir: epath.Path,
    parallel: int,
    stop: StopSignals,
    quiet: bool,
    until: int | None,
) -> None:
    """Keeps ``parallel`` tasks in flight until every run ended or a stop was received; then
    cancels the running tasks and waits for their workers to commit and exit."""
    tasks = Tasks(ray, workdir)
    queue, done = list(runs), 0
    while (queue or tasks.running) and not stop.received:
        while queue and len(tasks.running) < parallel:
            tasks.start(queue.pop(0), until)
        _progress(done, len(tasks.running), len(queue), quiet)
        ended: list[tuple[Run, int | None, str]] = []
        while not ended and not stop.received:
            ended = tasks.ended(timeout=POLL_SECONDS)
        for run_, _, status in ended:
            done += 1
            if not quiet:
                print(f"jaxlab sweep: {run_.name}: {status}", flush=True)
    tasks.stop()


def _progress(done: int, running: int, queued: int, quiet: bool) -> None:
    if not quiet:
        print(
            f"jaxlab sweep (ray): {done} finished, {running} running, {queued} queued", flush=True
        )


def _train_one(run_: Run, workdir: str, until: int | None) -> str:
    """A Ray task: the worker process imports the jaxlab this task came with (``py_modules``)."""
    return processes.run_one(
        run_,
        epath.Path(workdir),
        python_path=str(pathlib.Path(__file__).resolve().parents[2]),
        until=until,
    )
