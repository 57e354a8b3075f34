"""The one training loop: ``train(config, workdir) -> final metrics``, for every task, and
`run_trials`, the loop itself, for a single run and for the T trials of a vmapped sweep alike.

mesh -> task (data, pure functions) -> state (replicated, with a leading trial axis) ->
restore-or-init each trial -> loop of compiled chunks. A chunk is ``config.train.log_every``
steps inside one ``lax.scan``: batches are sampled on device as a pure function of (seed, step),
and the host reads metrics once per chunk. Evaluation and (asynchronous) checkpoints happen at
chunk boundaries.
"""

import contextlib
import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from etils import epath

from jaxlab import feed, parallel, paths, progress, run_config, tasks, trials
from jaxlab import workdir as workdir_lib
from jaxlab.checkpoint import Checkpoints
from jaxlab.errors import Interrupted, NonFiniteError, UserError
from jaxlab.metrics_log import LogWarning, MetricsLog, read_metrics
from jaxlab.optim import make_optimizer
from jaxlab.preemption import StopRequests
from jaxlab.state import init_state
from jaxlab.step import make_train_chunk
from jaxlab.tasks import Task
from jaxlab.trials import Program, TrialGroup, TrialOutcome
from jaxlab.workdir import CHECKPOINT_DIR, METRICS_FILE


@dataclasses.dataclass(frozen=True)
class Setup:
    mesh: jax.sharding.Mesh
    task: Task
    tx: optax.GradientTransformation
    state: dict  # the initial train state, replicated over the mesh


def prepare(
    config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None
) -> Setup:
    """Mesh, task, optimizer and initial state of ``config``; raises `UserError` on bad input."""
    tc = config.train
    mesh = parallel.make_mesh(devices)
    parallel.check_batch_size(tc.batch_size, mesh)
    task = tasks.build(config)
    if tc.batch_size > task.data.num_train:
        raise UserError(
            f"config.train.batch_size={tc.batch_size} is larger than the training set "
            f"({task.data.num_train} examples)"
        )
    feed.check(config, task)
    tx = make_optimizer(config.optimizer, tc.steps)
    state = jax.jit(
        lambda example: init_state(task, tx, config.seed, tc.batch_size, example),
        out_shardings=parallel.replicated(mesh),
    )(feed.example_batch(config, task, config.seed))
    return Setup(mesh, task, tx, state)


def restore(
    location: str | os.PathLike, devices: Sequence[jax.Device] | None = None
) -> tuple[ml_collections.ConfigDict, Setup, dict]:
    """(config, setup, train state) of the newest checkpoint of ``location``, on ``devices``."""
    workdir = paths.path(location, "workdir")
    config = run_config.validate(workdir_lib.read_config(workdir))
    setup = prepare(config, devices)
    if not (workdir / CHECKPOINT_DIR).is_dir():
        raise UserError(f"workdir {workdir} holds no checkpoints ({workdir / CHECKPOINT_DIR})")
    checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, keep=config.train.keep_checkpoints)
    try:
        restored = checkpoints.restore_latest(setup.state)
    finally:
        checkpoints.close()
    if restored is None:
        raise UserError(f"workdir {workdir} holds no checkpoint in {workdir / CHECKPOINT_DIR}")
    return config, setup, restored[1]


def evaluate_workdir(
    workdir: str | os.PathLike, devices: Sequence[jax.Device] | None = None
) -> dict[str, Any]:
    """Restores the newest readable checkpoint of ``workdir`` and evaluates it on the test split."""
    config, setup, state = restore(workdir, devices)
    metrics = jax.device_get(
        feed.make([config], setup.task.data, setup.mesh).evaluate(
            setup.task, state["params"], state["task_state"]
        )
    )
    return {
        "step": int(state["step"]),
        **{f"eval/{k}": np.asarray(v).tolist() for k, v in metrics.items()},
    }


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
    config = run_config.validate(config)
    (outcome,) = run_trials(
        TrialGroup.of([config]),
        [paths.path(workdir, "workdir")],
        quiet=quiet,
        devices=devices,
        allow_config_change=allow_config_change,
    )
    if not quiet and jax.process_index() == 0:
        print(summary_line(config.experiment, outcome.metrics), flush=True)
    return outcome.metrics


def run_trials(
    group: TrialGroup,
    workdirs: Sequence[epath.Path],
    *,
    quiet: bool = False,
    devices: Sequence[jax.Device] | None = None,
    allow_config_change: bool = False,
    record_nonfinite: bool = False,
) -> list[TrialOutcome]:
    """The one training loop: trains the validated trials of ``group``, trial i in
    ``workdirs[i]``, each resuming from its own newest readable checkpoint; returns their outcomes.

    Every workdir is locked for the whole run (`jaxlab.workdir.claim`). A trial whose loss or
    gradients become NaN/Inf raises `NonFiniteError`, or with ``record_nonfinite`` stops being
    updated and saved and is returned ``failed`` while the others go on. SIGTERM/SIGINT commits a
    checkpoint of every trial, then raises `Interrupted`.
    """
    start_time = time.time()
    setup = prepare(group.base, devices)
    program = Program(group, setup.task, setup.mesh)
    trial_tasks = (
        [tasks.build(config) for config in group.configs]
        if group.task_varies
        else [setup.task] * group.size
    )
    examples = (
        [feed.example_batch(c, setup.task, c.seed) for c in group.configs]
        if program.batches_given
        else None
    )
    initial = program.init(setup.state, examples)
    with workdir_lib.claim(workdirs, group.configs, allow_config_change):
        loop = _Loop(group, setup, program, trial_tasks, workdirs, quiet, record_nonfinite)
        state = loop.run(initial)
    wall = round(time.time() - start_time, 2)
    outcomes = []
    for i, (task, workdir) in enumerate(zip(trial_tasks, workdirs)):
        if i in loop.failures:
            error = loop.failures[i]
            outcomes.append(
                TrialOutcome(trials.FAILED, {**error.metrics, "step": error.step}, str(error))
            )
            continue
        if task.plot is not None and jax.process_index() == 0:
            trial_state = program.trial(state, i)
            task.plot(
                trial_state["params"], trial_state["task_state"], loop.feed.test_arrays, workdir
            )
        outcomes.append(
            TrialOutcome(
                trials.DONE, {**loop.logs[i].latest, "step": loop.steps[i], "wall_time_s": wall}
            )
        )
    return outcomes


class _Loop:
    """The host side of `run_trials`: chunks, logs, evaluations, checkpoints, stops."""

    def __init__(
        self,
        group: TrialGroup,
        setup: Setup,
        program: Program,
        trial_tasks: Sequence[Task],
        workdirs: Sequence[epath.Path],
        quiet: bool,
        record_nonfinite: bool,
    ):
        self.group, self.setup, self.program, self.tasks = group, setup, program, trial_tasks
        self.workdirs, self.quiet, self.record_nonfinite = workdirs, quiet, record_nonfinite
        self.feed = feed.make(group.configs, setup.task.data, setup.mesh)
        self.failures: dict[int, NonFiniteError] = {}  # trial -> why it stopped
        self.steps: list[int] = []  # per trial: the step its state has reached
        self.saved: list[int | None] = []  # per trial: its newest saved step
        self.checkpoints: list[Checkpoints] = []
        self.logs: list[MetricsLog] = []

    def run(self, initial: dict) -> dict:
        """Restore-or-init, then chunks until every trial reached ``train.steps`` or failed;
        returns the final stacked state."""
        tc, size = self.group.base.train, self.group.size
        with contextlib.ExitStack() as stack:  # closed in reverse: checkpoints last, committed
            self.checkpoints = [
                stack.enter_context(
                    Checkpoints(w / CHECKPOINT_DIR, keep=tc.keep_checkpoints, owner=True)
                )
                for w in self.workdirs
            ]
            records = [read_metrics(w) for w in self.workdirs]
            restored = [
                c.restore_latest(
                    self.program.trial(initial, i), newest=logged[-1]["step"] if logged else None
                )
                for i, (c, logged) in enumerate(zip(self.checkpoints, records))
            ]
            for workdir, config in zip(self.workdirs, self.group.configs):
                workdir_lib.write_config(workdir, config)
            self.steps = [r[0] if r else 0 for r in restored]
            self.saved = [r[0] if r else None for r in restored]
            state = initial
            if any(restored):
                state = self.program.stack(
                    [r[1] if r else self.program.trial(initial, i) for i, r in enumerate(restored)]
                )
            for workdir, logged, step in zip(self.workdirs, records, self.steps):
                if step and (not logged or logged[-1]["step"] < step):
                    warnings.warn(
                        f"{workdir / METRICS_FILE} records no step after "
                        f"{logged[-1]['step'] if logged else 0}, and no checkpoint it "
                        f"covers reads: the records up to step {step} are lost (the "
                        f"training is not: it resumes from step {step})",
                        LogWarning,
                        stacklevel=2,
                    )
            self.logs = [
                stack.enter_context(
                    contextlib.closing(MetricsLog(w, [r for r in logged if r["step"] <= s]))
                )
                for w, logged, s in zip(self.workdirs, records, self.steps)
            ]
            self.progress = stack.enter_context(
                progress.bar(
                    tc.steps, min(self.steps), shown=not self.quiet and jax.process_index() == 0
                )
            )
            stop_requests = stack.enter_context(
                StopRequests(self.checkpoints[0].reached_preemption)
            )
            if stop_requests.received:  # during start-up: nothing trained, nothing to save
                step = min(self.steps)
                raise Interrupted(
                    f"stopped by {stop_requests.received} during start-up, before "
                    f"training from step {step}; run the same command again to "
                    f"{'resume' if step else 'start'}",
                    step=step,
                    reason=stop_requests.received,
                )
            # The host writes chunk k's records while the device runs chunk k+1. At an
            # evaluation or a checkpoint the loop waits for chunk k, checks it, dispatches the
            # evaluation and hands the state to the checkpoint (which copies it off the device)
            # before dispatching chunk k+1, which donates the state; the records are written,
            # and the evaluation fetched, while chunk k+1 runs.
            pending = None  # (state) -> None: writes the records of the chunk before
            chunk_index = 0
            while True:
                live = [
                    i for i in range(size) if i not in self.failures and self.steps[i] < tc.steps
                ]
                if not live:
                    break
                step = min(self.steps[i] for i in live)
                moving = [i for i in live if self.steps[i] == step]
                length = min(tc.log_every, tc.steps - step)
                active = np.isin(np.arange(size), moving)  # ignored by a single run
                state, metrics = self.program.chunk(length)(
                    state, active, self.feed.chunk(step, length)
                )
                if pending:
                    pending(state)
                start, step = step, step + length
                for i in moving:
                    self.steps[i] = step
                stop_reason = stop_requests.reason(chunk_index)
                chunk_index += 1
                evaluate = step % tc.eval_every == 0 or step == tc.steps
                save = step % tc.checkpoint_every == 0 or step == tc.steps or stop_reason
                if evaluate or save:
                    checked = self._check_chunk(state, moving, start, length, metrics)
                    evaluations = (
                        {i: self._evaluation(state, i) for i in checked} if evaluate else {}
                    )
                    if save:
                        for i in checked:
                            self.checkpoints[i].save(step, self.program.trial(state, i))
                            self.saved[i] = step
                    pending = functools.partial(self._write, checked, step, evaluations)
                else:
                    pending = functools.partial(self._log_chunk, moving, start, length, metrics)
                if stop_reason and step < tc.steps:
                    pending(state)
                    for checkpoints in self.checkpoints:
                        checkpoints.wait_until_committed()
                    raise Interrupted(
                        self._stopped(stop_reason, step), step=step, reason=stop_reason
                    )
            if pending:
                pending(state)
            for i, log in enumerate(self.logs):  # resumed at the end, its last record lost
                if i not in self.failures and log.latest.get("step") != self.steps[i]:
                    log.write(self.steps[i], jax.device_get(self._evaluation(state, i)))
        return state

    def _evaluation(self, state: dict, index: int) -> dict[str, Any]:
        """``{"eval/NAME": value}`` of trial ``index`` on the test split, dispatched: values
        may still be computing on the device (`jax.device_get` waits for them)."""
        trial_state = self.program.trial(state, index)
        evaluated = self.feed.evaluate(
            self.tasks[index], trial_state["params"], trial_state["task_state"]
        )
        return {f"eval/{k}": v for k, v in evaluated.items()}

    def _stopped(self, reason: str, step: int) -> str:
        if self.group.size == 1:
            return (
                f"stopped by {reason} at step {step}: its checkpoint is committed in "
                f"{self.checkpoints[0].directory}; run the same command again to resume"
            )
        return (
            f"stopped by {reason} at step {step}: the checkpoints of its "
            f"{self.group.size} trials are committed; run the same command again to resume"
        )

    def _log_chunk(
        self, moving: Sequence[int], start: int, length: int, metrics: dict, state: dict
    ) -> None:
        """Waits for the chunk from step ``start``, checks each trial, writes their records."""
        checked = self._check_chunk(state, moving, start, length, metrics)
        self._write(checked, start + length, {}, state)

    def _check_chunk(
        self, state: dict, moving: Sequence[int], start: int, length: int, metrics: dict
    ) -> dict[int, dict]:
        """Waits for the chunk from step ``start``; returns its metrics per trial that went
        well. A trial that met a NaN/Inf it did not skip raises `NonFiniteError`, or with
        ``record_nonfinite`` joins ``failures``."""
        metrics = jax.device_get(metrics)
        checked = {}
        for i in moving:
            if i in self.failures:
                continue
            trial_metrics = self.program.trial(metrics, i)
            error = self._nonfinite(i, state, start, length, trial_metrics)
            if error is not None:
                if not self.record_nonfinite:
                    raise error
                self.failures[i] = error
                continue
            checked[i] = trial_metrics
        return checked

    def _write(
        self, checked: dict[int, dict], step: int, evaluations: dict[int, dict], state: dict
    ) -> None:
        """Writes the records of step ``step``: the checked chunk's train metrics and the trials'
        ``evaluations`` (fetched here); ``state`` is unused (`pending`'s signature)."""
        del state
        for i, trial_metrics in checked.items():
            record = {f"train/{k}": v for k, v in trial_metrics.items()}
            record.update(jax.device_get(evaluations.get(i, {})))
            self.logs[i].write(step, record)
        if checked:
            self.progress.update(min(self.steps[i] for i in checked) - self.progress.n)
            loss = next(iter(checked.values()))["loss"]
            self.progress.set_postfix(loss=f"{float(loss):.4g}")

    def _nonfinite(
        self, index: int, state: dict, start: int, length: int, metrics: dict
    ) -> NonFiniteError | None:
        """The error of trial ``index`` if its chunk from step ``start`` met a NaN/Inf it did not
        skip, else None."""
        saved = self.saved[index]
        kept = (
            f"checkpoints up to step {saved} are untouched"
            if saved
            else "no checkpoint was written"
        )
        config = self.group.configs[index]
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
        # The trial is frozen just before the bad step (a chunk dispatched after this one froze
        # at the same step): run that step alone to show its metrics.
        single = self.program.trial(state, index)
        reached = int(single["step"])
        tx = make_optimizer(config.optimizer, config.train.steps)
        probe = jax.jit(
            make_train_chunk(
                self.tasks[index],
                tx,
                config.train.batch_size,
                1,
                parallel.batch_sharded(self.setup.mesh),
                batches_given=self.program.batches_given,
            )
        )
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
    shown = " ".join(
        f"{k}={v:.4g}" for k, v in final.items() if isinstance(v, float) and k != "wall_time_s"
    )
    return (
        f"jaxlab: {experiment} step={final['step']} {shown} wall_time={final['wall_time_s']:.1f}s"
    )
