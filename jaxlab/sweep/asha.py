"""Asynchronous successive halving (``--scheduler asha``) for sweeps in local worker processes,
after Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning" (ASHA, Algorithm 2),
its decisions taken in a fixed order so that a killed search resumes to the same ones.

The rungs are successive halving's (`jaxlab.sweep.halving.Halving.rungs`). Each worker that
frees takes the next job: a promotion if one is due, from the highest rung first, else the next
run of the sweep to the first rung. No rung waits for all of its runs before any goes on. A run
that reached rung k is promoted to rung k+1 when it is among the best ``floor(n / reduction)``
of the first n runs to reach rung k, for some n. Here "first" is a fixed order, not time: the
sweep's order at the first rung, the order of promotion at the others. A decision therefore
waits only for the runs before it in that order. When every run of a rung has reached it (and
the rungs before are settled), the best one goes on if none did. The others are recorded
``stopped`` at that rung, their checkpoints and records kept there.

The decisions are a function of the records alone (`survey`), so they do not depend on which
run finishes first: ``--parallel 1`` and ``--parallel 2`` decide alike (tested). A search killed
at any moment and run again takes the same decisions and ends with the same table (tested).
"""

import dataclasses
import time
from collections.abc import Sequence

from etils import epath

from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.preemption import StopSignals
from jaxlab.sweep import processes, ray_backend
from jaxlab.sweep.halving import Halving, rank, record_at, value_of
from jaxlab.sweep.plan import Run
from jaxlab.sweep.results import (
    DONE,
    FAILED,
    RUNNING,
    STOPPED,
    announce,
    read_result,
    write_result,
)


@dataclasses.dataclass(frozen=True)
class Survey:
    """What the records say: ``turns[k]``, the runs whose turn at rung k has come, in their
    order; ``settled[k]``, whether rung k takes no more runs and has decided them all."""

    turns: list[list[Run]]
    settled: list[bool]

    def target(self, run_: Run) -> int:
        """The index of the highest rung the run is to reach."""
        return max(k for k, turn in enumerate(self.turns) if run_ in turn)


def survey(runs: Sequence[Run], workdir: epath.Path, halving: Halving) -> Survey:
    """The promotions the records of ``runs`` (in the sweep's order) call for (module
    docstring). A run that failed counts as having reached its rungs, ranked last."""
    rungs = halving.rungs(runs[0].config.train.steps)
    sign = 1.0 if halving.mode == "min" else -1.0
    failed = {r.name for r in runs if read_result(workdir / r.name)["status"] == FAILED}
    turns: list[list[Run]] = [list(runs)]
    settled: list[bool] = []
    for k, rung in enumerate(rungs[:-1]):
        reached: list[tuple[Run, float | None]] = []
        promoted: list[Run] = []
        for run_ in turns[k]:
            record = record_at(workdir / run_.name, rung)
            if not record and run_.name not in failed:
                break  # not there yet: the runs after it wait for it
            reached.append((run_, value_of(record, halving)))
            ranked = sorted(reached, key=lambda pair: rank(pair[1], sign))
            for best, _ in ranked[: len(reached) // halving.reduction]:
                if best not in promoted:
                    promoted.append(best)
        whole = len(reached) == len(turns[k]) and (k == 0 or settled[k - 1])
        if whole and reached and not promoted:
            best = min(reached, key=lambda pair: rank(pair[1], sign))[0]
            if best.name not in failed:
                promoted.append(best)
        settled.append(whole)
        turns.append(promoted)
    return Survey(turns, settled)


def run(
    runs: Sequence[Run],
    workdir: epath.Path,
    halving: Halving,
    parallel: int,
    *,
    address: str | None = None,
    ray: bool = False,
    quiet: bool = True,
) -> str | None:
    """Trains ``runs`` by ASHA, ``parallel`` jobs at a time, in local worker processes or with
    ``ray`` as Ray tasks on the cluster at ``address`` (a new local one when None), and records
    each one's outcome; returns the name of the signal that stopped the search, or None."""
    with StopSignals() as stop:
        if not ray:
            workers = processes.Workers(workdir, shares_accelerator=parallel > 1)
            _schedule(workers, runs, workdir, halving, parallel, stop, quiet)
            return stop.received
        with ray_backend.connected(address, stop) as module:
            tasks = ray_backend.Tasks(module, workdir)
            _schedule(tasks, runs, workdir, halving, parallel, stop, quiet)
    return stop.received


def _schedule(
    workers: processes.Workers | ray_backend.Tasks,
    runs: Sequence[Run],
    workdir: epath.Path,
    halving: Halving,
    parallel: int,
    stop: StopSignals,
    quiet: bool,
) -> None:
    """Starts the due jobs (`_jobs`) as ``workers`` free, until none is due and none runs, or
    a stop is received (passed on to the running workers)."""
    rungs = halving.rungs(runs[0].config.train.steps)
    held: set[str] = set()  # runs a live process outside this search holds
    changed = True  # a job ended since the records were last surveyed
    while True:
        if changed and not stop.received:
            current = survey(runs, workdir, halving)
            _record_stopped(runs, workdir, halving, current, quiet)
            busy = {run_.name for run_, _ in workers.running.values()}
            for run_, target in _jobs(runs, workdir, rungs, current):
                if len(workers.running) >= parallel:
                    break
                if run_.name in busy or run_.name in held:
                    continue
                if workdir_lib.holder(workdir / run_.name):
                    held.add(run_.name)
                    announce(run_.name, RUNNING, quiet)
                    continue
                workers.start(run_, rungs[target] if target < len(rungs) - 1 else None)
        if stop.received:  # start nothing more; pass the stop on to the running jobs
            workers.stop()
        if not workers.running:
            return
        time.sleep(processes.POLL_SECONDS)
        changed = False
        for run_, until, status in workers.ended():
            if until is None or status == FAILED:
                announce(run_.name, status, quiet)
            changed = True


def _jobs(
    runs: Sequence[Run], workdir: epath.Path, rungs: Sequence[int], current: Survey
) -> list[tuple[Run, int]]:
    """(run, index of the rung to train it to) of every run with training due: promotions from
    the highest rung first, then the runs not yet at their first rung, each in its turn's order."""
    jobs = []
    for k in reversed(range(len(rungs))):
        for run_ in current.turns[k]:
            if current.target(run_) != k:
                continue
            status = read_result(workdir / run_.name)["status"]
            if status in (DONE, FAILED, STOPPED):
                continue
            if k < len(rungs) - 1 and record_at(workdir / run_.name, rungs[k]):
                continue  # at its rung, waiting for a decision
            jobs.append((run_, k))
    return jobs


def _record_stopped(
    runs: Sequence[Run], workdir: epath.Path, halving: Halving, current: Survey, quiet: bool
) -> None:
    """Records ``stopped`` the runs of each settled rung that were not promoted."""
    rungs = halving.rungs(runs[0].config.train.steps)
    for k, settled in enumerate(current.settled):
        if not settled:
            break
        kept = len(current.turns[k + 1])
        for run_ in current.turns[k]:
            if run_ in current.turns[k + 1]:
                continue
            run_dir = workdir / run_.name
            if read_result(run_dir)["status"] in (DONE, FAILED, STOPPED):
                continue
            record = record_at(run_dir, rungs[k])
            value = value_of(record, halving)
            shown = "missing" if value is None else f"{value:.6g}"
            write_result(
                run_dir,
                STOPPED,
                record,
                f"stopped at rung {k + 1} (step {rungs[k]}): {halving.metric}={shown}, not "
                f"among the best 1/{halving.reduction} of the runs before it there ({kept} of "
                f"{len(current.turns[k])} went on)",
            )
            announce(run_.name, f"{STOPPED} at step {rungs[k]}", quiet)
