"""A sweep's runs as the trials of one vmapped program (``--vmap``, `jaxlab.sweep.trials`),
trained by the one loop (`jaxlab.loop.train.train_runs`): each trial's workdir is locked,
resumed, checkpointed and logged as a single run's, and a trial whose loss becomes NaN/Inf is
recorded failed while the others go on. Runs that differ where a program cannot trace (a model's
width, the data's seed: `programs`), and runs whose program would not fit in device memory, are
trained as several programs, one after another (`train`)."""

import os
import time
from collections.abc import Sequence

import jax
from etils import epath

from jaxlab import parallel, tasks
from jaxlab.errors import Interrupted, UserError
from jaxlab.loop.train import prepare, train_runs
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.sweep.pbt import Population, PopulationBasedTraining
from jaxlab.sweep.plan import Run
from jaxlab.sweep.results import FAILED, RUNNING, announce, write_result
from jaxlab.sweep.trials import TrialGroup, TrialProgram, split_untraceable

DEVICE_MEMORY_FRACTION = 0.9  # of a device's memory (or of a CPU device's share of the host's)


def check(runs: Sequence[Run]) -> None:
    """`UserError`, before anything is written, unless each program of ``runs`` (`programs`)
    can be traced with the leaves its runs differ in as traced values."""
    for group_runs in programs(runs):
        group = TrialGroup.of([run.config for run in group_runs])
        task = tasks.build(group.base)
        mesh = parallel.make_mesh(None, group.base.mesh, group.size)
        TrialProgram(group, task, mesh).check_traceable(task.data.train)


def programs(runs: Sequence[Run], quiet: bool = True) -> list[list[Run]]:
    """``runs`` grouped into the programs they train as: one per value of the keys that cannot
    be traced (`trials.split_untraceable`: shapes, data, strings), in order of first appearance."""
    if not runs:
        return []
    keys, groups = split_untraceable([run.config for run in runs])
    if not quiet and len(groups) > 1:
        print(
            f"jaxlab sweep: {len(runs)} runs differ in {', '.join(f'config.{k}' for k in keys)}, "
            f"which a program cannot trace: {len(groups)} programs, trained one after another",
            flush=True,
        )
    return [[runs[i] for i in group] for group in groups]


def train(
    runs: Sequence[Run],
    workdir: epath.Path,
    *,
    quiet: bool = True,
    until: int | None = None,
    memory_limit: int | None = None,
    population: PopulationBasedTraining | None = None,
) -> None:
    """Trains ``runs`` (checked by `check`), each of their `programs` in turn, and records each
    run's outcome; a run whose workdir a live process holds is left to it (reported running).
    With ``until`` before the runs' last step they stop there (a scheduler's rung), and only
    failures are recorded.

    Runs whose program needs more than ``memory_limit`` bytes per device (default:
    `device_memory`; XLA's estimate of a compiled chunk, `TrialProgram.bytes_per_device`) are
    cut in halves until each fits, the groups trained one after another; `UserError` before any
    training when one run alone needs more, or with ``population`` (population-based training
    of the runs, `jaxlab.sweep.pbt`), which trains them as one program, when they need more."""
    free = [run for run in runs if not workdir_lib.holder(workdir / run.name)]
    for run in runs:
        if run not in free:
            announce(run.name, RUNNING, quiet)
    limit = device_memory() if memory_limit is None else memory_limit
    pending = programs(free, quiet)
    while pending:
        group_runs = pending.pop(0)
        started = time.time()
        group = TrialGroup.of([run.config for run in group_runs])
        setup = prepare(group.base, runs=group.size)
        program = TrialProgram(group, setup.task, setup.mesh)
        need = program.bytes_per_device(setup.task.data.train)  # compiles the chunk
        if need > limit and population is not None:
            raise UserError(
                f"the population of {len(group_runs)} runs needs about {_mib(need)} of memory "
                f"per device as one program, more than the {_mib(limit)} allowed "
                f"(--group-memory): population-based training trains it as one program; use "
                f"fewer runs, or more devices"
            )
        if need > limit:
            pending = _cut(group_runs, need, limit, quiet) + pending
            continue
        exploit = None
        if population is not None:
            exploit = Population(population, program, [workdir / r.name for r in group_runs])
        _train_group(program, group_runs, workdir, quiet, until, started, exploit)


def _cut(runs: list[Run], need: int, limit: int, quiet: bool) -> list[list[Run]]:
    """``runs``, whose program needs ``need`` bytes per device, in two halves (each is cut
    again while XLA's estimate of its program exceeds ``limit``: the memory a device needs
    is not proportional to the runs, as the mesh places them); `UserError` for a single run."""
    if len(runs) == 1:
        raise UserError(
            f"one run of this vmapped sweep needs about {_mib(need)} of memory per device, "
            f"more than the {_mib(limit)} allowed (--group-memory): split each run's batch "
            f"over devices (--config.mesh.data=2), sweep without --vmap, or use devices with "
            f"more memory"
        )
    size = -(-len(runs) // 2)
    if not quiet:
        print(
            f"jaxlab sweep: {len(runs)} runs need about {_mib(need)} per device as one program, "
            f"more than the {_mib(limit)} allowed: cut into groups of up to {size} runs",
            flush=True,
        )
    return [runs[:size], runs[size:]]


def device_memory() -> int:
    """`DEVICE_MEMORY_FRACTION` of the first device's memory: its allocator's limit, or for CPU
    devices (which share the host's) the memory the host has available divided among them."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] * DEVICE_MEMORY_FRACTION)
    return int(_host_available() * DEVICE_MEMORY_FRACTION / jax.local_device_count())


def _host_available() -> int:
    """Bytes of memory the host can give without swapping (Linux's MemAvailable)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _mib(count: float) -> str:
    return f"{count / 2**20:,.1f} MiB"


def _train_group(
    program: TrialProgram,
    runs: Sequence[Run],
    workdir: epath.Path,
    quiet: bool,
    until: int | None,
    started: float,
    exploit: Population | None = None,
) -> None:
    """Trains ``runs`` as ``program`` and records each one's outcome (`train`), a population's
    with the values in force at its end (`Population.final_values`)."""
    try:
        outcomes = train_runs(
            program,
            program.init(),
            program.group.configs,
            [workdir / run.name for run in runs],
            quiet=quiet,
            record_nonfinite=True,
            started=started,
            until=until,
            exploit=exploit,
        )
    except (Interrupted, UserError):
        raise
    except Exception as error:  # noqa: BLE001 - a crash of the group is each run's failure
        for run in runs:
            write_result(workdir / run.name, FAILED, error=f"{type(error).__name__}: {error}")
            announce(run.name, FAILED, quiet)
        return
    for index, (run, outcome) in enumerate(zip(runs, outcomes)):
        if until is None or until >= run.config.train.steps or outcome.status == FAILED:
            metrics = outcome.metrics
            if exploit is not None:
                metrics = {**metrics, **exploit.final_values(index)}
            write_result(workdir / run.name, outcome.status, metrics, outcome.error)
            announce(run.name, outcome.status, quiet)
