"""The one training loop: `train(config, workdir)` trains a run; `train_runs` is the loop itself,
for the runs of one program (a single run, or the trials of a vmapped sweep): restore each run,
then chunks of steps, records, evaluations and checkpoints until done or stopped.
"""

import contextlib
import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from etils import epath

from jaxlab import parallel, paths, tasks
from jaxlab.config import run_config
from jaxlab.errors import Interrupted, NonFiniteError, UserError
from jaxlab.loop import compilation_cache, feed, profiling, progress
from jaxlab.loop.optim import make_schedule
from jaxlab.loop.program import Program
from jaxlab.loop.state import EMA
from jaxlab.rundir import init_from, writers
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.checkpoint import Checkpoints
from jaxlab.rundir.preemption import StopRequests
from jaxlab.rundir.run import DONE, Outcome, Run
from jaxlab.rundir.workdir import CHECKPOINT_DIR
from jaxlab.tasks import Task


@dataclasses.dataclass(frozen=True)
class Setup:
    mesh: jax.sharding.Mesh
    task: Task
    program: Program

    @functools.cached_property
    def state(self) -> dict:
        """The initial train state, placed on the mesh (initialised on first use)."""
        return self.program.init()


def prepare(
    config: ml_collections.ConfigDict,
    devices: Sequence[jax.Device] | None = None,
    runs: int | None = None,
) -> Setup:
    """Mesh, task, program and initial state of a validated ``config`` (the mesh for a single
    run, or a program of ``runs`` stacked runs: `jaxlab.parallel.mesh_shape`); `UserError` on
    bad input."""
    tc = config.train
    mesh = parallel.make_mesh(devices, config.mesh, runs)
    compilation_cache.refuse_sharded_cpu(mesh)
    parallel.check_batch_size(tc.batch_size, mesh, tc.grad_accum_steps)
    task = tasks.build(config)
    if tc.batch_size > task.data.num_train:
        raise UserError(
            f"config.train.batch_size={tc.batch_size} is larger than the training set "
            f"({task.data.num_train} examples)"
        )
    feed.check(config, task)
    writers.names(config)
    program = Program(config, task, mesh)
    abstract = program.abstract_state()  # traces the model's init: its errors show here
    if tc.init_from:
        init_from.check(abstract, config)
    return Setup(mesh, task, program)


def restore(
    location: str | os.PathLike,
    devices: Sequence[jax.Device] | None = None,
    mesh: Mapping[str, int] | None = None,
    *,
    step: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[ml_collections.ConfigDict, Setup, dict]:
    """(config, setup, train state) of a checkpoint of ``location``: the newest readable one, or
    that of ``step``; on ``devices``, on the run's mesh or on ``mesh`` (sizes of its axes, as
    ``config.mesh``). ``overrides`` (dotted key -> value) may change the ``data`` section only:
    the run's model on other data (`UserError` naming any other key)."""
    workdir = paths.path(location, "workdir")
    outside = [k for k in (overrides or {}) if not k.removeprefix("config.").startswith("data.")]
    if outside:
        raise UserError(
            f"a restored run takes overrides of config.data only (the data it is evaluated "
            f"on), got {', '.join(outside)}"
        )
    config = run_config.validate(
        workdir_lib.read_config(workdir),
        {
            **{f"mesh.{axis}": size for axis, size in (mesh or {}).items()},
            **(overrides or {}),
        },
    )
    setup = prepare(config, devices)
    if not (workdir / CHECKPOINT_DIR).is_dir():
        raise UserError(f"workdir {workdir} holds no checkpoints ({workdir / CHECKPOINT_DIR})")
    template = setup.program.abstract_state()
    with Checkpoints(workdir / CHECKPOINT_DIR, keep=config.train.keep_checkpoints) as saved:
        if step is not None:
            return config, setup, saved.restore_at(step, template)
        restored = saved.restore_latest(template)
    if restored is None:
        raise UserError(f"workdir {workdir} holds no checkpoint in {workdir / CHECKPOINT_DIR}")
    return config, setup, restored[1]


def evaluate_workdir(
    workdir: str | os.PathLike,
    devices: Sequence[jax.Device] | None = None,
    mesh: Mapping[str, int] | None = None,
    *,
    step: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics of a checkpoint of ``workdir`` (the newest, or that of ``step``) on the test
    split of the run's data, or of the data ``overrides`` of ``config.data`` name (as in
    `restore`): ``{"step": N, "eval/NAME": value, ...}``."""
    config, setup, state = restore(workdir, devices, mesh, step=step, overrides=overrides)
    evaluator = feed.make([config], setup.task.data, setup.mesh)
    metrics = jax.device_get(evaluations(evaluator, setup.task, state))
    return {"step": int(state["step"]), **{k: np.asarray(v).tolist() for k, v in metrics.items()}}


def evaluations(evaluator: Any, task: Task, state: dict) -> dict[str, Any]:
    """``{"eval/NAME": value}`` of the state's parameters on the test split and, when the state
    keeps an EMA of them, ``{"eval/ema/NAME": value}`` of the average; dispatched (values may
    still be computing: `jax.device_get` waits for them)."""
    metrics = {
        f"eval/{k}": v
        for k, v in evaluator.evaluate(task, state["params"], state["task_state"]).items()
    }
    if EMA in state:
        averaged = evaluator.evaluate(task, state[EMA], state["task_state"])
        metrics.update({f"eval/ema/{k}": v for k, v in averaged.items()})
    return metrics


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    quiet: bool = False,
    devices: Sequence[jax.Device] | None = None,
    allow_config_change: bool = False,
) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming its newest checkpoint); returns final metrics.

    Everything that can be wrong with the input is checked before anything is written to
    ``workdir``: a `UserError` leaves it untouched. A workdir holding a run of another config is
    refused unless ``allow_config_change``; one in use by another process is refused.
    Raises `NonFiniteError` when the loss or gradients become NaN/Inf (unless
    ``config.train.skip_nonfinite_steps``), and `Interrupted` after SIGTERM/SIGINT, once a
    checkpoint of the step reached is committed.
    """
    return train_validated(
        run_config.validate(config),
        workdir,
        quiet=quiet,
        devices=devices,
        allow_config_change=allow_config_change,
    ).metrics


def train_validated(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    quiet: bool = False,
    devices: Sequence[jax.Device] | None = None,
    allow_config_change: bool = False,
    record_nonfinite: bool = False,
    until: int | None = None,
) -> Outcome:
    """`train` of a config already validated (by `jaxlab.config.registry.load_config` or a
    sweep's plan); returns the run's outcome, and unless ``quiet`` prints its summary line.
    ``until``: stop at that step (`train_runs`)."""
    started = time.time()
    setup = prepare(config, devices)
    (outcome,) = train_runs(
        setup.program,
        setup.state,
        [config],
        [paths.path(workdir, "workdir")],
        quiet=quiet,
        allow_config_change=allow_config_change,
        record_nonfinite=record_nonfinite,
        started=started,
        until=until,
    )
    if not quiet and outcome.status == DONE and jax.process_index() == 0:
        print(summary_line(config.experiment, outcome.metrics), flush=True)
    return outcome


class Exploit(Protocol):
    """What changes the runs' states and settings between two chunks, at the steps it is
    `due` where every live run stands (population-based training, `jaxlab.sweep.pbt`)."""

    def resume(self, steps: Sequence[int]) -> list[ml_collections.ConfigDict]:
        """Takes each run's restored step; returns the runs' configs in force."""
        ...

    def due(self, step: int) -> bool: ...

    def __call__(
        self, state: Any, step: int, records: Mapping[int, Mapping[str, Any]]
    ) -> tuple[Any, list[ml_collections.ConfigDict]]:
        """The new state and configs in force, from each live run's newest record."""
        ...


def train_runs(
    program: Program,
    initial: Any,
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[epath.Path],
    *,
    quiet: bool = False,
    allow_config_change: bool = False,
    record_nonfinite: bool = False,
    started: float | None = None,
    until: int | None = None,
    exploit: Exploit | None = None,
) -> list[Outcome]:
    """The one training loop: trains the runs of ``program`` from its ``initial`` state, run i
    of ``configs[i]`` in ``workdirs[i]``, each resuming its own newest readable checkpoint;
    returns their outcomes (wall time counted from ``started``, by default now). With ``until``
    the runs stop at that step (evaluated and checkpointed there), as a scheduler that compares
    them at a rung asks (`jaxlab.sweep.halving`). An ``exploit`` changes the state and the runs'
    settings where it is due (`Exploit`), once the records of that step are written.

    Every workdir is locked for the whole run (`jaxlab.rundir.workdir.claim`). A run whose loss
    or gradients become NaN/Inf raises `NonFiniteError`, or with ``record_nonfinite`` stops being
    updated and saved and is returned ``failed`` while the others go on. SIGTERM/SIGINT commits a
    checkpoint of every run, then raises `Interrupted`.
    """
    started = time.time() if started is None else started
    with (
        workdir_lib.claim(workdirs, configs, allow_config_change),
        contextlib.ExitStack() as stack,  # closed in reverse: the checkpoints last, committed
    ):
        runs = [Run(workdir, config, stack) for workdir, config in zip(workdirs, configs)]
        template = program.part(initial, 0)  # every run's state has its structure and placement
        restored = [run.restore(template) for run in runs]
        for i, run in enumerate(runs):  # a new run may start from another run's parameters
            if restored[i] is None and run.config.train.init_from:
                restored[i] = init_from.start_from(program.part(initial, i), run.config)
        for run in runs:
            run.start()
        state = initial
        if any(r is not None for r in restored):
            fresh = program.parts(initial)
            state = program.join([r if r is not None else f for r, f in zip(restored, fresh)])
        loop = _Loop(program, runs, record_nonfinite, until, exploit)
        shown = not quiet and jax.process_index() == 0
        if shown:
            _say_where_it_starts(runs)
        with (
            progress.Progress(
                configs[0].train.steps, min(r.step for r in runs), shown=shown
            ) as shows,
            StopRequests(runs[0].checkpoints.reached_preemption) as stops,
            profiling.Profiler(program.config, workdirs[0]) as profiler,
        ):
            state = loop.train(state, shows, stops, profiler)
    wall = round(time.time() - started, 2)
    loop.plot(state)
    return [run.outcome(wall) for run in runs]


def _say_where_it_starts(runs: Sequence[Run]) -> None:
    """One line on stderr for a run that resumes, or that had already finished."""
    for run in runs:
        steps = run.config.train.steps
        if run.step >= steps:
            print(
                f"jaxlab: {run.workdir} had already finished (step {run.step} of {steps}); "
                f"nothing to train",
                file=sys.stderr,
                flush=True,
            )
        elif run.step:
            print(
                f"jaxlab: resuming {run.workdir} from step {run.step} of {steps}",
                file=sys.stderr,
                flush=True,
            )


@dataclasses.dataclass
class _Chunk:
    """A dispatched chunk whose records are written while the next chunk runs: from step
    ``start``, ``length`` steps of the runs ``moving``; ``metrics`` on the device until checked
    (``checked``: run index -> its metrics), ``evaluations`` dispatched at its end."""

    moving: list[int]
    start: int
    length: int
    metrics: dict = dataclasses.field(default_factory=dict)
    checked: dict[int, dict] | None = None
    evaluations: dict[int, dict] = dataclasses.field(default_factory=dict)
    unsaved: dict[int, Any] = dataclasses.field(default_factory=dict)  # run -> state to save
    finished: float = 0.0  # when its metrics reached the host (time.monotonic)


class _Loop:
    """The host side of `train_runs`: chunks, records, evaluations, checkpoints, stops.

    The host writes chunk k's records while the device runs chunk k+1. At an evaluation or a
    checkpoint the loop waits for chunk k, checks it, dispatches the evaluation and hands the
    state to the checkpoint (which copies it off the device) before dispatching chunk k+1, which
    donates the state; the records are written, and the evaluation fetched, while chunk k+1 runs.
    """

    def __init__(
        self,
        program: Program,
        runs: Sequence[Run],
        record_nonfinite: bool,
        until: int | None = None,
        exploit: Exploit | None = None,
    ):
        self.program, self.runs, self.exploit = program, list(runs), exploit
        self.until = min(until, program.config.train.steps) if until else program.config.train.steps
        self.record_nonfinite = record_nonfinite
        self.train_config = program.config.train
        self.feed = feed.make(
            [run.config for run in runs], program.task.data, program.mesh, program.stacked
        )
        self._use([run.config for run in runs])
        if exploit is not None:
            self._use(exploit.resume([run.step for run in runs]))
        self._finished = time.monotonic()  # when the previous chunk's metrics were fetched

    def train(
        self,
        state: dict,
        shows: progress.Progress,
        stops: StopRequests,
        profiler: profiling.Profiler,
    ) -> dict:
        """Chunks until every run reached its end (``train.steps``, or ``until``) or failed;
        returns the final state."""
        tc, runs = self.train_config, self.runs
        if stops.received:  # during start-up: nothing trained, nothing to save
            step = min(run.step for run in runs)
            raise Interrupted(
                f"stopped by {stops.received} during start-up, before training from step "
                f"{step}; run the same command again to {'resume' if step else 'start'}",
                step=step,
                reason=stops.received,
            )
        self._progress, self._profiler = shows, profiler
        unwritten: _Chunk | None = None
        chunk_index = 0
        end = self.until
        while live := [i for i, run in enumerate(runs) if run.live and run.step < end]:
            start = min(runs[i].step for i in live)
            chunk = _Chunk(
                moving=[i for i in live if runs[i].step == start],
                start=start,
                length=min(tc.log_every, end - start),
            )
            profiler.before(chunk.start)
            state = self._dispatch(state, chunk)
            if unwritten is not None:
                self._write(unwritten, state)
            step = chunk.start + chunk.length
            for i in chunk.moving:
                runs[i].step = step
            stop = stops.reason(chunk_index)
            chunk_index += 1
            evaluate = step % tc.eval_every == 0 or step == end
            save = step % tc.checkpoint_every == 0 or step == end or stop
            unwritten = chunk
            if self._exploit_due(step, live):
                state = self._exploit(state, chunk)  # writes the chunk's records
                unwritten = None
            elif evaluate or save:
                chunk.checked = self._check(state, chunk)
                parts = self.program.parts(state)
                if evaluate:
                    chunk.evaluations = {i: self._evaluation(parts[i], i) for i in chunk.checked}
                if save:
                    chunk.unsaved = {i: parts[i] for i in chunk.checked}
                    if not self.program.parts_on_host:  # the next chunk donates the state
                        self._save(chunk)
            if stop and step < end:
                if unwritten is not None:
                    self._write(unwritten, state)
                for run in runs:
                    run.checkpoints.wait_until_committed()
                raise Interrupted(self._stopped(stop, step), step=step, reason=stop)
        if unwritten is not None:
            self._write(unwritten, state)
        lost = [i for i, r in enumerate(runs) if r.failure is None and r.last_recorded != r.step]
        parts = self.program.parts(state) if lost else []
        for i in lost:  # resumed at the end, its last record lost: evaluated as at a chunk's end
            runs[i].record(runs[i].step, self._evaluation(parts[i], i))
        return state

    def _use(self, configs: Sequence[ml_collections.ConfigDict]) -> None:
        """The runs' configs in force: their learning-rate schedules, recorded with each chunk."""
        self.schedules = [make_schedule(c.optimizer, c.train.steps) for c in configs]

    def _exploit_due(self, step: int, live: Sequence[int]) -> bool:
        """Whether the exploit is due at ``step``, which every live run has reached."""
        return (
            self.exploit is not None
            and self.exploit.due(step)
            and all(self.runs[i].step == step for i in live)
        )

    def _exploit(self, state: dict, chunk: _Chunk) -> dict:
        """At the end of ``chunk``, which brought the last live runs to a step where the exploit
        is due: its records written, the exploit, the moving runs' new states saved there, and
        every checkpoint committed before any run goes on. So a run's checkpoint at such a step
        holds its state after the exploit, and no run's checkpoint lies beyond one unless every
        run's at it is committed: runs resumed at different steps never straddle an exploit."""
        assert self.exploit is not None
        step = chunk.start + chunk.length
        chunk.checked = self._check(state, chunk)
        parts = self.program.parts(state)
        chunk.evaluations = {i: self._evaluation(parts[i], i) for i in chunk.checked}
        self._write(chunk, state)
        live = [i for i, run in enumerate(self.runs) if run.failure is None]
        state, configs = self.exploit(state, step, {i: self.runs[i].latest for i in live})
        self._use(configs)
        parts = self.program.parts(state)
        chunk.unsaved = {i: parts[i] for i in chunk.checked}
        self._save(chunk)
        for run in self.runs:
            run.checkpoints.wait_until_committed()
        return state

    def plot(self, state: dict) -> None:
        """The tasks' plots of the finished runs, in their workdirs (process 0)."""
        if jax.process_index() != 0:
            return
        for i, run in enumerate(self.runs):
            task = self.program.task_of(i)
            if run.failure is None and task.plot is not None:
                run_state = self.program.part(state, i)
                task.plot(
                    run_state["params"],
                    run_state["task_state"],
                    self.feed.test_arrays,
                    run.workdir,
                )

    def _dispatch(self, state: dict, chunk: _Chunk) -> dict:
        """Dispatches ``chunk``: the runs not moving are left as they are."""
        state, chunk.metrics = self.program.run_chunk(
            state, self.feed.chunk(chunk.start, chunk.length), chunk.length, chunk.moving
        )
        return state

    def _save(self, chunk: _Chunk) -> None:
        """Hands the states of ``chunk``'s end still unsaved to the runs' checkpoints."""
        for i, run_state in chunk.unsaved.items():
            self.runs[i].save(run_state)
        chunk.unsaved = {}

    def _write(self, chunk: _Chunk, state: dict) -> None:
        """Saves what ``chunk`` left unsaved, then writes its records (checked first if it was
        not): each run's train metrics and its evaluation, fetched here."""
        self._save(chunk)
        checked = self._check(state, chunk) if chunk.checked is None else chunk.checked
        step = chunk.start + chunk.length
        evaluations = jax.device_get({i: chunk.evaluations.get(i, {}) for i in checked})
        # From the previous chunk's end to this one's: the first chunk's includes its compile.
        rate = float(f"{chunk.length / max(chunk.finished - self._finished, 1e-9):.4g}")
        self._finished = chunk.finished
        for i, metrics in checked.items():
            record = {f"train/{k}": v for k, v in metrics.items()}
            record["train/learning_rate"] = float(self.schedules[i](step - 1))
            self.runs[i].record(step, {**record, **evaluations[i], "perf/steps_per_s": rate})
        if checked:
            first = next(iter(checked))  # the progress shows the first run's metrics
            self._progress.update(step, checked[first], evaluations[first])

    def _check(self, state: dict, chunk: _Chunk) -> dict[int, dict]:
        """Waits for ``chunk``; returns its metrics per run that went well. A run that met a
        NaN/Inf it did not skip raises `NonFiniteError`, or with ``record_nonfinite`` fails."""
        metrics = jax.device_get(chunk.metrics)
        self._profiler.reached(chunk.start + chunk.length)  # the trace's writing counts here
        chunk.finished = time.monotonic()
        checked = {}
        for i in chunk.moving:
            if self.runs[i].failure is not None:
                continue
            run_metrics = self.program.part(metrics, i)
            error = self._nonfinite(i, state, chunk.start, chunk.length, run_metrics)
            if error is None:
                checked[i] = run_metrics
            elif self.record_nonfinite:
                self.runs[i].fail(error)
            else:
                raise error
        return checked

    def _evaluation(self, run_state: dict, index: int) -> dict[str, Any]:
        """``{"eval/NAME": value}`` of run ``index`` (whose state is ``run_state``) on the test
        split, dispatched: values may still be computing (`jax.device_get` waits for them)."""
        return evaluations(self.feed, self.program.task_of(index), run_state)

    def _stopped(self, reason: str, step: int) -> str:
        if len(self.runs) == 1:
            return (
                f"stopped by {reason} at step {step}: its checkpoint is committed in "
                f"{self.runs[0].checkpoints.directory}; run the same command again to resume"
            )
        return (
            f"stopped by {reason} at step {step}: the checkpoints of its "
            f"{len(self.runs)} runs are committed; run the same command again to resume"
        )

    def _nonfinite(
        self, index: int, state: dict, start: int, length: int, metrics: dict
    ) -> NonFiniteError | None:
        """The error of run ``index`` if its chunk from step ``start`` met a NaN/Inf it did not
        skip, else None."""
        saved = self.runs[index].saved
        kept = (
            f"checkpoints up to step {saved} are untouched"
            if saved
            else "no checkpoint was written"
        )
        config = self.runs[index].config
        if config.train.get("skip_nonfinite_steps", False):
            if metrics["skipped_steps"] == length:
                return NonFiniteError(
                    f"every step from {start + 1} to {start + length} had a non-finite loss or "
                    f"gradient norm (skipped); stopped: the run has diverged; {kept}",
                    step=start + 1,
                    metrics=metrics,
                )
            return None
        if math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"]):
            return None  # a chunk's mean is finite only if every step's value was
        # The run is frozen just before the bad step (a chunk dispatched after this one froze
        # at the same step): run that step alone to show its metrics.
        single = self.program.part(state, index)
        reached = int(single["step"])
        probe = jax.jit(self.program.alone(index).step_function(1))
        probed = jax.device_get(probe(single, self.feed.probe(index, reached))[1])
        values = {
            f"train/{k}": float(probed[k]) for k in ["loss", *sorted(probed.keys() - {"loss"})]
        }
        bad = {k: v for k, v in values.items() if not math.isfinite(v)} or values
        shown = ", ".join(f"{k}={v}" for k, v in bad.items())
        return NonFiniteError(
            f"non-finite {shown} at step {reached + 1}; stopped without saving it ({kept}). "
            f"Lower the learning rate, or set config.train.skip_nonfinite_steps=True to skip "
            f"such steps",
            step=reached + 1,
            metrics=values,
        )


def summary_line(experiment: str, final: dict[str, Any]) -> str:
    """The final train and eval metrics (not the learning rate or speed) and the wall time, or
    ``(finished before)`` for a run that had nothing left to train."""
    shown = " ".join(
        f"{k}={v:.4g}"
        for k, v in final.items()
        if isinstance(v, float) and k.startswith(("train/", "eval/")) and k != "train/learning_rate"
    )
    wall = final.get("wall_time_s")
    ending = f"wall_time={wall:.1f}s" if wall is not None else "(finished before)"
    return f"jaxlab: {experiment} step={final['step']} {shown} {ending}"
