"""A jaxlab experiment's runs as the trials of Ray Tune (`TuneSweep`), for Tune's own search
algorithms and schedulers (ASHA, HyperBand, PBT, BOHB...) over a Ray cluster.

Each Tune trial is one run of the experiment with the trial's config as overrides (dotted keys).
It is trained in a jaxlab worker process, in its own workdir under the sweep directory, which is
locked, checkpointed and resumed as any sweep run's is. The worker stops at every evaluation
(``config.train.eval_every``) to report the run's record there to Tune (``step`` and every
``train/`` and ``eval/`` metric), so Tune's scheduler can stop the trial at any of them. `record`
then writes the sweep's table from Tune's results. A run Tune stopped is recorded ``stopped``,
its checkpoint and records kept where it stopped.

    from ray import tune
    from jaxlab.sweep.ray_tune import TuneSweep

    sweep = TuneSweep("mlp_moons", "runs/tune")
    results = tune.Tuner(
        sweep.trainable,
        param_space={"optimizer.learning_rate": tune.loguniform(1e-4, 1e-1)},
        tune_config=tune.TuneConfig(
            metric="eval/loss", mode="min", num_samples=16,
            scheduler=tune.schedulers.ASHAScheduler(time_attr="step", max_t=3000,
                                                    grace_period=100),
        ),
    ).fit()
    table = sweep.record(results)

Tune's decisions depend on the order in which trials report, as in any asynchronous scheduler,
so a Tune search is not reproducible decision for decision; jaxlab's own schedulers
(`jaxlab.sweep.halving`, `jaxlab.sweep.asha`) are. Tune restores its own experiment
(``Tuner.restore``); each run then resumes from its checkpoint, and the steps it had already
trained are reported again from its records.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.metrics_log import read_metrics
from jaxlab.sweep import processes, space
from jaxlab.sweep.halving import record_at
from jaxlab.sweep.plan import Point, Run, plan
from jaxlab.sweep.results import (
    DONE,
    FAILED,
    PENDING,
    STOPPED,
    collect,
    read_result,
    write_result,
    write_sweep,
    write_tables,
)


class TuneSweep:
    """The runs of ``spec`` (``"name:preset"``) under ``workdir`` that Ray Tune's trials ask for,
    with ``fixed_overrides`` and experiments from ``extra_dirs`` (a path every node can read).
    Checks ``spec`` and the overrides at once: `UserError` before Tune starts."""

    def __init__(
        self,
        spec: str,
        workdir: str | os.PathLike,
        fixed_overrides: Mapping[str, Any] | None = None,
        extra_dirs: Sequence[str] = (),
    ):
        self.spec, self.fixed, self.extra_dirs = spec, dict(fixed_overrides or {}), list(extra_dirs)
        self.directory = paths.path(workdir, "sweep directory")
        if paths.is_remote(self.directory):
            raise UserError(
                f"sweep directory {self.directory}: Tune sweeps run in a local (or mounted) "
                f"directory"
            )
        plan(spec, [{}], self.fixed, self.extra_dirs)  # the experiment and overrides load

    def run_of(self, params: Mapping[str, Any]) -> Run:
        """The run of a Tune trial's config (floats kept to 6 significant digits, as sampled)."""
        point: Point = {
            key.removeprefix("config."): space.rounded(v) if isinstance(v, float) else v
            for key, v in params.items()
        }
        (run_,) = plan(self.spec, [point], self.fixed, self.extra_dirs)
        return run_

    def trainable(self, params: dict[str, Any]) -> None:
        """Tune's function trainable: trains the run of ``params`` evaluation by evaluation,
        reporting each record to Tune, until the run ends or Tune stops the trial."""
        from ray import tune

        run_ = self.run_of(params)
        train = run_.config.train
        steps = [*range(train.eval_every, train.steps, train.eval_every), train.steps]
        for step in steps:
            until = step if step < train.steps else None
            status = processes.run_one(run_, self.directory, until=until)
            record = record_at(self.directory / run_.name, step)
            numbers = {k: v for k, v in record.items() if isinstance(v, (int, float))}
            tune.report({**numbers, "step": step})
            if status not in (DONE, PENDING):  # failed, or held by another process
                return

    def record(self, results: Any) -> list[dict[str, Any]]:
        """Writes the sweep's ``sweep.json`` and tables from Tune's ``results`` (a
        ``ResultGrid``): a run that neither finished nor failed is recorded ``stopped`` (by
        Tune's scheduler) at its last record; returns the table."""
        runs = [self.run_of(result.config) for result in results]
        names = {run_.name: run_.overrides for run_ in runs}
        with workdir_lib.lock(self.directory):
            write_sweep(self.directory, names)
            for run_ in runs:
                run_dir = self.directory / run_.name
                if read_result(run_dir)["status"] in (DONE, FAILED, STOPPED):
                    continue
                last = _last_record(run_dir)
                stopped = f"stopped by Ray Tune at step {last.get('step', 0)}"
                write_result(run_dir, STOPPED, last, stopped)
            rows = collect(self.directory, names)
            swept = list(dict.fromkeys(key for point in names.values() for key in point))
            write_tables(self.directory, rows, swept)
        return rows


def _last_record(run_dir: epath.Path) -> dict:
    """The run's newest record (without its time), or {} without any."""
    records = read_metrics(run_dir, warn=False)
    return {k: v for k, v in records[-1].items() if k != "time"} if records else {}
