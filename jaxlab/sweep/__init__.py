"""Sweeps: many runs of one experiment that differ in config overrides, as safe as a single run.

`sweep` plans every run (`plan`), trains them in worker processes, Ray tasks or one vmapped
program, and returns the results table; `axis`, `product` and the others write the points, and
`sampled` draws them from search spaces (`jaxlab.sweep.space`).
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from etils import epath

from jaxlab import paths
from jaxlab.errors import Interrupted, UserError
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.sweep import asha, halving, pbt, processes, ray_backend, vmapped
from jaxlab.sweep.plan import (
    Point,
    Run,
    axis,
    command_line_points,
    experiment_points,
    fixed,
    plan,
    product,
    run_name,
    zipit,
)
from jaxlab.sweep.results import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    collect,
    read_result,
    write_sweep,
    write_tables,
)
from jaxlab.sweep.space import Choice, IntUniform, LogUniform, Uniform, sampled

__all__ = [
    "Choice",
    "IntUniform",
    "LogUniform",
    "Uniform",
    "sampled",
    "DONE",
    "FAILED",
    "PENDING",
    "RUNNING",
    "STOPPED",
    "Point",
    "Run",
    "axis",
    "command_line_points",
    "experiment_points",
    "fixed",
    "plan",
    "product",
    "run_name",
    "sweep",
    "zipit",
]


def sweep(
    config: str | ml_collections.ConfigDict,
    sweep: Sequence[Point],
    workdir: str | os.PathLike,
    *,
    parallel: int = 1,
    vmap: bool = False,
    backend: str = "local",
    address: str | None = None,
    fixed_overrides: Mapping[str, Any] | None = None,
    extra_dirs: Sequence[str] = (),
    quiet: bool = True,
    scheduler: halving.Halving | pbt.PopulationBasedTraining | None = None,
    group_memory: int | None = None,
) -> list[dict[str, Any]]:
    """Runs every point of ``sweep`` on ``config`` (a spec like ``"name:preset"``, or a
    ConfigDict) under ``workdir``; returns the results table (one dict per run).

    ``parallel`` runs at a time, each in its own process (``backend="local"``) or as a Ray task
    (``backend="ray"``, on the cluster at ``address``); with ``vmap=True`` all runs train in one
    compiled program instead, or in several one after another where one would need more than
    ``group_memory`` bytes per device (default: 90% of a device's memory; `vmapped.train`).
    A ``scheduler`` trains only the promising runs further: a `halving.Halving` (synchronous
    rungs, or with ``asynchronous`` ASHA in workers, `asha`) or a `pbt.PopulationBasedTraining`
    (with ``vmap``). Finished runs are skipped, unfinished ones resumed. Raises
    `UserError` before anything is written if any run's config is bad or the sweep's directory
    is in use, and `Interrupted` after SIGTERM/SIGINT once the running runs' checkpoints are
    committed and the table is written.
    """
    if parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {parallel}")
    if backend not in ("local", "ray"):
        raise UserError(f"--backend must be 'local' or 'ray', got {backend!r}")
    if vmap and backend != "local":
        raise UserError("--vmap trains in this process; it cannot be combined with --backend ray")
    if address and backend != "ray":
        raise UserError("--address is for --backend ray")
    if group_memory is not None and not vmap:
        raise UserError("--group-memory bounds the programs of --vmap; add --vmap")
    if group_memory is not None and group_memory < 1:
        raise UserError(f"--group-memory must be a positive size, got {group_memory} bytes")
    if isinstance(scheduler, halving.Halving) and scheduler.asynchronous and vmap:
        raise UserError(
            "--scheduler asha starts each job as a worker frees; the runs of a vmapped program "
            "move together: with --vmap use --scheduler halving"
        )
    population = scheduler if isinstance(scheduler, pbt.PopulationBasedTraining) else None
    if population is not None and not vmap:
        raise UserError("--scheduler pbt trains the population as one vmapped program: add --vmap")
    directory = paths.path(workdir, "sweep directory")
    if paths.is_remote(directory):
        raise UserError(
            f"sweep directory {directory}: sweeps run in a local directory (a mounted "
            f"bucket works); single runs take remote workdirs"
        )
    runs = plan(config, sweep, fixed_overrides, extra_dirs)
    workdir_lib.check_can_hold(directory, "sweep directory")
    for run in runs:
        _check_same_config(run, directory)
    if vmap:
        vmapped.check(_unfinished(runs, directory))
    if isinstance(scheduler, halving.Halving):
        halving.check(scheduler, runs)
    elif population is not None:
        pbt.check(population, runs)
    if backend == "ray":
        ray_backend.require_ray(local=address is None)
    names = {run.name: run.overrides for run in runs}
    with workdir_lib.lock(directory):
        write_sweep(directory, names)
        todo = _unfinished(runs, directory)  # under the lock: what no other sweep finished
        try:
            if isinstance(scheduler, halving.Halving) and scheduler.asynchronous:
                stopped = asha.run(
                    runs,
                    directory,
                    scheduler,
                    parallel,
                    address=address,
                    ray=backend == "ray",
                    quiet=quiet,
                )
            elif isinstance(scheduler, halving.Halving):  # decided again from all runs' records
                stopped = halving.run(
                    runs,
                    directory,
                    scheduler,
                    lambda group, step: _train_to(
                        group,
                        step,
                        directory,
                        vmap,
                        parallel,
                        quiet,
                        group_memory,
                        backend,
                        address,
                    ),
                    quiet=quiet,
                )
            elif vmap:
                vmapped.train(
                    todo, directory, quiet=quiet, memory_limit=group_memory, population=population
                )
                stopped = None
            elif backend == "ray":
                stopped = ray_backend.run(todo, directory, parallel, address, quiet=quiet)
            else:
                stopped = processes.run(todo, directory, parallel, quiet=quiet)
        except Interrupted as interrupted:
            stopped = interrupted.reason
        rows = collect(directory, names)
        write_tables(directory, rows, list(dict.fromkeys(k for o in names.values() for k in o)))
    if stopped:
        raise Interrupted(
            f"sweep stopped by {stopped}: the running runs' checkpoints are "
            f"committed and {directory / workdir_lib.RESULTS_MD} written; run the "
            f"same command again to resume",
            step=None,
            reason=stopped,
        )
    return rows


def _check_same_config(run: Run, workdir: epath.Path) -> None:
    """`UserError` if the run's directory holds a run (finished or not) of another config."""
    differences = sorted(
        workdir_lib.config_differences(workdir / run.name, run.config),
        key=lambda line: not line.strip().startswith("experiment:"),
    )
    if differences:
        shown = "; ".join(line.strip() for line in differences[:4])
        more = f"; and {len(differences) - 4} more" if len(differences) > 4 else ""
        raise UserError(
            f"sweep run {run.name}: {workdir / run.name} holds a run of another "
            f"config ({shown}{more}); use a new sweep directory, or remove that "
            f"run's directory to train it again"
        )


def _train_to(
    runs: Sequence[Run],
    step: int,
    directory: epath.Path,
    vmap: bool,
    parallel: int,
    quiet: bool,
    group_memory: int | None,
    backend: str,
    address: str | None,
) -> str | None:
    """Trains ``runs`` to ``step`` (a scheduler's rung); the signal that stopped it, or None."""
    if vmap:
        vmapped.train(runs, directory, quiet=quiet, until=step, memory_limit=group_memory)
        return None
    if backend == "ray":
        return ray_backend.run(runs, directory, parallel, address, quiet=quiet, until=step)
    return processes.run(runs, directory, parallel, quiet=quiet, until=step)


def _unfinished(runs: Sequence[Run], workdir: epath.Path) -> list[Run]:
    """The runs neither done nor stopped by a scheduler (failed ones are tried again)."""
    return [run for run in runs if read_result(workdir / run.name)["status"] not in (DONE, STOPPED)]
