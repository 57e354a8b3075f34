"""A sweep's runs as the trials of one vmapped program (``--vmap``, `jaxlab.sweep.trials`),
trained by the one loop (`jaxlab.loop.train.train_runs`): each trial's workdir is locked,
resumed, checkpointed and logged as a single run's, and a trial whose loss becomes NaN/Inf is
recorded failed while the others go on."""

import time
from collections.abc import Sequence

from etils import epath

from jaxlab import parallel, tasks
from jaxlab.errors import Interrupted, UserError
from jaxlab.loop.train import prepare, train_runs
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.sweep.plan import Run
from jaxlab.sweep.results import FAILED, RUNNING, announce, write_result
from jaxlab.sweep.trials import TrialGroup, TrialProgram


def check(runs: Sequence[Run]) -> None:
    """`UserError`, before anything is written, unless ``runs`` can train as one program: their
    configs differ only in traceable leaves."""
    if not runs:
        return
    group = TrialGroup.of([run.config for run in runs])
    task = tasks.build(group.base)
    TrialProgram(group, task, parallel.make_mesh(None, group.base.mesh)).check_traceable(
        task.data.train
    )


def train(
    runs: Sequence[Run], workdir: epath.Path, *, quiet: bool = True, until: int | None = None
) -> None:
    """Trains ``runs`` (checked by `check`) together and records each one's outcome; a run whose
    workdir a live process holds is left to it (reported running). With ``until`` before the
    runs' last step they stop there (a scheduler's rung), and only failures are recorded."""
    free = [run for run in runs if not workdir_lib.holder(workdir / run.name)]
    for run in runs:
        if run not in free:
            announce(run.name, RUNNING, quiet)
    if not free:
        return
    started = time.time()
    group = TrialGroup.of([run.config for run in free])
    try:
        setup = prepare(group.base)
        program = TrialProgram(group, setup.task, setup.mesh)
        outcomes = train_runs(
            program,
            program.init(),
            group.configs,
            [workdir / run.name for run in free],
            quiet=quiet,
            record_nonfinite=True,
            started=started,
            until=until,
        )
    except (Interrupted, UserError):
        raise
    except Exception as error:  # noqa: BLE001 - a crash of the group is each run's failure
        for run in free:
            write_result(workdir / run.name, FAILED, error=f"{type(error).__name__}: {error}")
            announce(run.name, FAILED, quiet)
        return
    for run, outcome in zip(free, outcomes):
        if until is None or until >= run.config.train.steps or outcome.status == FAILED:
            write_result(workdir / run.name, outcome.status, outcome.metrics, outcome.error)
            announce(run.name, outcome.status, quiet)
