"""``jaxlab sweep --search optuna``: Optuna chooses the runs, by ask-and-tell, from the sampled
spaces of ``--sweep`` (`jaxlab.sweep.space`), ``--batch`` runs at a time until ``--samples``.

Each batch is asked of Optuna's sampler (TPE by default, ``--sampler random``), trained by the
sweep as usual (vmapped with ``--vmap``, else in worker processes: locked, resumable, recorded),
and each run's final ``--metric`` is told back (a failed run as failed). Optuna's own SQLite
storage lives in the sweep directory (``optuna.db``, study ``jaxlab``), so running the same
command again resumes the search: trials asked but not told are trained (resumed) and told first.
The sampler is seeded with ``--search-seed`` plus the number of trials so far each time it is
asked, so a resumed search asks what an uninterrupted one would. Floats are kept to 6 significant
digits, as in sampled sweeps.

Several searches may share one study (``--study FILE``, an SQLite file), each in its own sweep
directory and asking batches from the same study, so each one's sampler learns from every run
told. The study's trials count against one ``--samples`` budget: each search counts them before
each ask, and two asking at the same instant may pass it by one each. A trial is trained and
told by the search that asked for it (its user attribute ``jaxlab_sweep`` names that sweep
directory), and each search resumes its own. Their samplers are seeded apart (by the directory),
and what each asks depends on when the other tells, so a shared search is not reproducible run
for run as a single one is.
"""

import fcntl
import importlib.util
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from etils import epath

from jaxlab.errors import UserError
from jaxlab.rundir.metrics_log import read_metrics
from jaxlab.sweep import space
from jaxlab.sweep.plan import Point
from jaxlab.sweep.results import DONE, FAILED, STOPPED, read_result

STORAGE_FILE, STUDY = "optuna.db", "jaxlab"
OWNER = "jaxlab_sweep"  # a trial's user attribute: the sweep directory that asked for it
LOCK_TIMEOUT_S = 60  # how long a search waits for another process's write to the storage
SAMPLERS = ("tpe", "random")


def require_optuna() -> None:
    if importlib.util.find_spec("optuna") is None:
        raise UserError("--search optuna needs the optuna package: pip install 'jaxlab[optuna]'")


def search(
    spaces: Mapping[str, space.Distribution],
    directory: epath.Path,
    train: Callable[[Sequence[Point]], list[dict[str, Any]]],
    *,
    samples: int,
    batch: int,
    metric: str,
    mode: str,
    seed: int,
    sampler: str = "tpe",
    run_name: Callable[[Point], str],
    rungs: Sequence[int] = (),
    study_file: epath.Path | None = None,
) -> list[dict[str, Any]]:
    """Runs the search of the module docstring; ``train(points)`` trains the sweep of all the
    points so far (skipping finished runs) and returns its table; ``run_name`` names a point's
    run; ``rungs``: the steps of a halving scheduler's rungs, reported as intermediate values;
    ``study_file``: an SQLite file of a study shared with other searches (module docstring),
    instead of the sweep directory's. Returns the final table."""
    require_optuna()
    import optuna

    if not spaces:
        raise UserError("--search optuna needs sampled spaces in --sweep (e.g. loguniform(a,b))")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if batch < 1 or samples < 1:
        raise UserError(f"--batch and --samples must be at least 1, got {batch} and {samples}")
    if mode not in ("min", "max"):
        raise UserError(f"--mode must be min or max, got {mode!r}")
    distributions = {key.removeprefix("config."): _distribution(d) for key, d in spaces.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directory.mkdir(parents=True, exist_ok=True)
    path = study_file or directory / STORAGE_FILE
    with open(f"{path}.lock", "a") as lock:  # one search at a time creates the tables
        fcntl.flock(lock, fcntl.LOCK_EX)
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": LOCK_TIMEOUT_S}}
        )
    owner = str(directory.resolve())
    offset = zlib.crc32(owner.encode()) if study_file else 0  # searches sharing it ask apart

    def study(trials_so_far: int):
        chosen = optuna.samplers.TPESampler if sampler == "tpe" else optuna.samplers.RandomSampler
        return optuna.create_study(
            storage=storage,
            study_name=STUDY,
            direction="minimize" if mode == "min" else "maximize",
            sampler=chosen(seed=(seed + trials_so_far + offset) % 2**32),
            load_if_exists=True,
        )

    current = study(0)
    rows: list[dict[str, Any]] = []
    while True:
        trials = current.get_trials(deepcopy=False)
        mine = [
            t for t in trials if t.user_attrs.get(OWNER, None if study_file else owner) == owner
        ]
        points = [_point(t.params) for t in mine]
        untold = [t for t in mine if t.state == optuna.trial.TrialState.RUNNING]
        if untold or not rows:
            rows = train(points) if points else []
        for trial in untold:
            run_dir = directory / run_name(_point(trial.params))
            result = read_result(run_dir)
            value = result.get("metrics", {}).get(metric)
            if rungs and result["status"] in (DONE, STOPPED):
                _report(optuna.Trial(current, trial._trial_id), run_dir, rungs, metric)
            if result["status"] == STOPPED:
                current.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
            elif result["status"] == DONE and isinstance(value, (int, float)):
                current.tell(trial.number, float(value))
            elif result["status"] == FAILED or result["status"] == DONE:
                current.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            else:
                return rows  # stopped, or held by another process: told when it ends
        if len(trials) >= samples:
            return rows
        current = study(len(trials))
        for _ in range(batch):  # counted before each ask: a shared study's others ask too
            if len(current.get_trials(deepcopy=False)) >= samples:
                break
            current.ask(distributions).set_user_attr(OWNER, owner)


def _report(trial: Any, run_dir: epath.Path, rungs: Sequence[int], metric: str) -> None:
    """Reports the run's values of ``metric`` at the ``rungs`` it reached to Optuna's ``trial``
    (a step already reported, by a search stopped before its tell, is left as it is)."""
    reported = trial.storage.get_trial(trial._trial_id).intermediate_values
    for record in read_metrics(run_dir, warn=False):
        value = record.get(metric)
        if record["step"] in rungs and record["step"] not in reported:
            if isinstance(value, (int, float)):
                trial.report(float(value), record["step"])


def _point(params: Mapping[str, Any]) -> Point:
    """A trial's parameters as a sweep point, floats kept to 6 significant digits."""
    return {k: space.rounded(v) if isinstance(v, float) else v for k, v in params.items()}


def _distribution(distribution: space.Distribution) -> Any:
    import optuna.distributions as od

    if isinstance(distribution, space.LogUniform):
        return od.FloatDistribution(distribution.low, distribution.high, log=True)
    if isinstance(distribution, space.Uniform):
        return od.FloatDistribution(distribution.low, distribution.high)
    if isinstance(distribution, space.IntUniform):
        return od.IntDistribution(distribution.low, distribution.high)
    return od.CategoricalDistribution(distribution.values)
