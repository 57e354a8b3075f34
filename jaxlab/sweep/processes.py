"""A sweep's runs as local worker processes (`jaxlab.sweep.worker`), ``parallel`` at a time.

`run` schedules the runs from the calling thread and passes a stop on to the workers;
`run_one` trains one run in a worker process (also a Ray task's body).
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from etils import epath

from jaxlab import errors, paths
from jaxlab.config import to_json
from jaxlab.rundir import preemption
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.preemption import StopSignals
from jaxlab.rundir.workdir import RESULT_FILE, RUN_LOG
from jaxlab.sweep.plan import Run
from jaxlab.sweep.results import FAILED, PENDING, RUNNING, announce, read_result, write_result

POLL_SECONDS = 0.1


def run_one(
    run_: Run, workdir: epath.Path, python_path: str | None = None, until: int | None = None
) -> str:
    """Trains one run in a worker process and waits for it (a Ray task's body); returns its
    status. ``python_path`` goes first on the worker's ``PYTHONPATH`` (a jaxlab that is not
    installed, e.g. shipped to a Ray worker); with ``until`` the worker stops at that step (a
    scheduler's rung)."""
    run_dir = workdir / run_.name
    if workdir_lib.holder(run_dir):
        return RUNNING
    process = launch(run_, run_dir, False, python_path, until)
    try:
        while process.poll() is None:  # Python code between waits: a cancellation can land
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:  # the task is cancelled (a stopping sweep): the worker commits, stops
        process.send_signal(signal.SIGTERM)
    return record_exit(process.wait(), run_dir, until is not None)


def run(
    runs: Sequence[Run],
    workdir: epath.Path,
    parallel: int,
    *,
    quiet: bool = True,
    until: int | None = None,
) -> str | None:
    """Trains ``runs`` in worker processes; returns the name of the signal that stopped the
    sweep (the runs not launched stay pending), or None when every run ended. With ``until``
    (a scheduler's rung) the workers stop at that step."""
    queue = list(runs)
    workers = Workers(workdir, shares_accelerator=parallel > 1)
    with StopSignals() as stop:
        while queue or workers.running:
            while queue and len(workers.running) < parallel and not stop.received:
                run_ = queue.pop(0)
                if workdir_lib.holder(workdir / run_.name):
                    announce(run_.name, RUNNING, quiet)
                    continue
                workers.start(run_, until)
            if stop.received:  # launch nothing more; pass the stop on to the workers
                queue.clear()
                workers.stop()
            time.sleep(POLL_SECONDS)
            for run_, _, status in workers.ended():
                if status != PENDING:  # pending: a worker that reached its rung
                    announce(run_.name, status, quiet)
    return stop.received


class Workers:
    """Runs trained in local worker processes, each to a step of its own (a scheduler's jobs):
    `start`, `ended`, `stop` (`jaxlab.sweep.ray_backend.Tasks` is the Ray equivalent)."""

    def __init__(self, workdir: epath.Path, shares_accelerator: bool):
        self.workdir, self.shares_accelerator = workdir, shares_accelerator
        self.running: dict[subprocess.Popen, tuple[Run, int | None]] = {}
        self._signalled: set[subprocess.Popen] = set()

    def start(self, run_: Run, until: int | None) -> None:
        run_dir = self.workdir / run_.name
        self.running[launch(run_, run_dir, self.shares_accelerator, until=until)] = (run_, until)

    def ended(self) -> list[tuple[Run, int | None, str]]:
        """(run, until, status) of the workers that exited since the last call."""
        out = []
        for process in [p for p in self.running if p.poll() is not None]:
            run_, until = self.running.pop(process)
            run_dir = self.workdir / run_.name
            out.append((run_, until, record_exit(process.returncode, run_dir, until is not None)))
        return out

    def stop(self) -> None:
        """Passes a stop on to the workers (once each): each commits a checkpoint and exits."""
        for process in self.running.keys() - self._signalled:
            process.send_signal(signal.SIGTERM)
            self._signalled.add(process)


def launch(
    run_: Run,
    run_dir: epath.Path,
    shares_accelerator: bool,
    python_path: str | None = None,
    until: int | None = None,
) -> subprocess.Popen:
    """Starts the worker process that trains ``run_`` in ``run_dir`` (to step ``until``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    env = dict(os.environ)
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [python_path, env.get("PYTHONPATH")]))
    if shares_accelerator:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    with paths.open_append(run_dir / RUN_LOG) as log, preemption.held():
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxlab.sweep.worker",
                os.fspath(run_dir),
                str(os.getpid()),
                *([str(until)] if until is not None else []),
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    assert process.stdin is not None  # stdin=PIPE
    process.stdin.write(to_json(run_.config))
    process.stdin.close()
    return process


def record_exit(code: int, run_dir: epath.Path, at_rung: bool = False) -> str:
    """The run's status after its worker exited with ``code``; a worker that died without
    recording an outcome is recorded as failed: killed by a signal (named), or crashed (its last
    line of output). One that trained to its rung (``at_rung``, exit 0) stays pending."""
    status = read_result(run_dir)["status"]
    if status != PENDING or code in (errors.INTERRUPTED, errors.USAGE_ERROR):
        return status
    if at_rung and code == 0:
        return PENDING
    if code < 0:
        error = (
            f"the worker was killed by {signal.Signals(-code).name}; the run's checkpoints "
            f"are kept and the next sweep resumes it"
        )
    else:
        log = (run_dir / RUN_LOG).read_text().strip().splitlines()
        error = f"exit status {code}: {log[-1] if log else ''}"
    write_result(run_dir, FAILED, error=error)
    return FAILED
