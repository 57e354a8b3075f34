"""Successive halving for sweeps (``--scheduler halving``), vmapped or in local processes.

All runs train to the first rung (``--min-steps``), are compared there by ``--metric`` (its value
at that step, ``--mode min`` or ``max``), and the best ``1/--reduction`` of them (at least one) go
on to the next rung, ``--reduction`` times further, until ``config.train.steps``. The runs left
behind stop costing compute: each rung trains the survivors alone (with ``--vmap`` as one
vmapped program of their number, compiled once per rung; else as worker processes, local or
Ray tasks, that stop at the rung). A stopped run keeps its checkpoint and records of its rung
and is recorded ``stopped``, with the rung, its value and the number kept in the table.

The decisions are a function of the records alone (a rung's values are in each run's
``metrics.jsonl``), taken again from the start of the list whenever the sweep runs: a sweep
killed at any moment and run again takes the same decisions as one that was not, and resumes
each survivor from its checkpoint (jaxlab's resume is exact). Runs that ended before the
command (done, or stopped at a rung) are not trained again, and count at every rung they reached:
a run goes on only when it is among the best ``1/--reduction`` of all the runs that reached the
rung. So a search that adds runs to a sweep (Optuna's later batches, `jaxlab.sweep.optuna_search`)
compares each new run with every earlier one, and leaves the earlier decisions as they were.
This is synchronous successive halving; its asynchronous variant (ASHA) is not built.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence

from etils import epath

from jaxlab.errors import UserError
from jaxlab.rundir.metrics_log import read_metrics
from jaxlab.sweep.plan import Run
from jaxlab.sweep.results import DONE, FAILED, STOPPED, announce, read_result, write_result

MODES = ("min", "max")


@dataclasses.dataclass(frozen=True)
class Halving:
    min_steps: int
    reduction: int
    metric: str
    mode: str = "min"
    asynchronous: bool = False  # ASHA (`jaxlab.sweep.asha`) instead of synchronous rungs

    def rungs(self, total_steps: int) -> list[int]:
        """The steps at which runs are compared, ending with ``total_steps``."""
        rungs, step = [], self.min_steps
        while step < total_steps:
            rungs.append(step)
            step *= self.reduction
        return [*rungs, total_steps]


def check(halving: Halving, runs: Sequence[Run]) -> None:
    """`UserError`, before anything is written, for settings the runs cannot honour."""
    if halving.reduction < 2:
        raise UserError(f"--reduction must be at least 2, got {halving.reduction}")
    every = recorded_every(
        halving.metric, halving.mode, runs, "halving compares runs at the same rungs"
    )
    steps = runs[0].config.train.steps
    if not 0 < halving.min_steps < steps or halving.min_steps % every:
        raise UserError(
            f"--min-steps {halving.min_steps} must be below config.train.steps={steps} "
            f"and a multiple of {every}, where {halving.metric} is recorded"
        )
    if any(r % every for r in halving.rungs(steps)[:-1]):
        raise UserError(
            f"the rungs {halving.rungs(steps)} must be multiples of {every}, where "
            f"{halving.metric} is recorded"
        )


def recorded_every(metric: str, mode: str, runs: Sequence[Run], why_equal: str) -> int:
    """The steps between two records of ``metric`` in ``runs``; `UserError` for a ``mode``
    other than min or max, a metric neither ``train/`` nor ``eval/``, or runs of different
    lengths (a scheduler that ``why_equal``)."""
    if mode not in MODES:
        raise UserError(f"--mode must be min or max, got {mode!r}")
    if not metric.startswith(("train/", "eval/")):
        raise UserError(
            f"--metric {metric!r}: compare runs by a train/ or eval/ metric, e.g. eval/loss"
        )
    lengths = sorted({run.config.train.steps for run in runs})
    if len(lengths) > 1:
        raise UserError(
            f"--scheduler {why_equal}: their config.train.steps must be equal, got "
            f"{', '.join(map(str, lengths))}"
        )
    train = runs[0].config.train
    return train.eval_every if metric.startswith("eval/") else train.log_every


def run(
    runs: Sequence[Run],
    workdir: epath.Path,
    halving: Halving,
    train_to: Callable[[Sequence[Run], int], str | None],
    *,
    quiet: bool,
) -> str | None:
    """Successive halving of ``runs`` (module docstring), all of the sweep's in its order (ties
    are broken by it); ``train_to(runs, step)`` trains runs to a rung (vmapped, or in worker
    processes) and returns the name of a signal that stopped it, which this returns at once."""

    def status(run_: Run) -> str:
        return read_result(workdir / run_.name)["status"]

    going = [r for r in runs if status(r) not in (FAILED, STOPPED, DONE)]
    rungs = halving.rungs(runs[0].config.train.steps)
    sign = 1.0 if halving.mode == "min" else -1.0
    for index, rung in enumerate(rungs):
        behind = [r for r in going if value_of(record_at(workdir / r.name, rung), halving) is None]
        if behind and (stopped := train_to(behind, rung)):
            return stopped
        going = [r for r in going if status(r) != FAILED]
        if rung == rungs[-1] or not going:
            return None
        records = {r.name: record_at(workdir / r.name, rung) for r in runs if status(r) != FAILED}
        pool = [  # every run that reached the rung, also those that ended before this command
            r
            for r in runs
            if r in going or (r.name in records and value_of(records[r.name], halving) is not None)
        ]
        keep = max(1, len(pool) // halving.reduction)
        ranked = sorted(pool, key=lambda r: rank(value_of(records[r.name], halving), sign))
        for run_ in ranked[keep:]:
            if run_ in going:
                value = value_of(records[run_.name], halving)
                shown = "missing" if value is None else f"{value:.6g}"
                write_result(
                    workdir / run_.name,
                    STOPPED,
                    records[run_.name],
                    f"stopped at rung {index + 1} (step {rung}): {halving.metric}={shown}, "
                    f"not among the best {keep} of {len(pool)}",
                )
                announce(run_.name, f"{STOPPED} at step {rung}", quiet)
        going = [r for r in going if r in ranked[:keep]]  # in the sweep's order
    return None


def record_at(run_dir: epath.Path, step: int) -> dict:
    """The run's record of ``step``, without its time."""
    for record in read_metrics(run_dir, warn=False):
        if record["step"] == step:
            return {k: v for k, v in record.items() if k != "time"}
    return {}


def value_of(record: dict, halving: Halving) -> float | None:
    """The compared metric in a run's record of a rung, or None when it is not there (yet)."""
    value = record.get(halving.metric)
    return float(value) if isinstance(value, (int, float)) else None


def rank(value: float | None, sign: float) -> tuple[bool, float]:
    """A sort key: NaN and missing values last."""
    if value is None or math.isnan(value):
        return (True, 0.0)
    return (False, sign * value)
