"""A sweep trained as one compiled program: ``jax.vmap`` over a leading trial axis.

Runs whose configs differ only in the seed or in numeric leaves that can be traced (learning
rate, weight decay, loss weights) share every shape and code path, so T of them train as one
program, as purejaxrl vmaps ``make_train(config)`` over seeds: the train state gets a leading
axis of T trials, and the differing leaves become a (T,) array that is passed to the compiled
chunk. Inside the trace each trial's optimizer (and, when a non-optimizer leaf differs, its task)
is built from a copy of the config whose differing leaves are tracers, so a learning rate reaches
``make_optimizer`` exactly as a float would and the optimizer state keeps the structure of a
single run. A key that changes shapes or code paths (``model.width``, ``train.steps``, a string,
a value used in Python control flow) is refused up front with a `UserError` naming it.

Each trial writes ``config.json``, ``metrics.jsonl`` (+ TensorBoard) and Orbax checkpoints in its
own workdir, in the format of a single run, so ``jaxlab eval``/``report`` and resumption by
``jaxlab train`` work on it. The data stream and randomness of a trial are those of the single run
with the same seed, so the results agree with sequential runs to float rounding.
"""
import dataclasses
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from etils import epath

from jaxlab import config as config_lib
from jaxlab import parallel, tasks
from jaxlab import workdir as workdir_lib
from jaxlab.checkpoint import Checkpoints
from jaxlab.errors import UserError
from jaxlab.metrics_log import MetricsLog
from jaxlab.optim import make_optimizer
from jaxlab.state import init_state
from jaxlab.sweep import DONE, FAILED, write_result
from jaxlab.tasks import Task
from jaxlab.train import make_train_chunk
from jaxlab.workdir import CHECKPOINT_DIR

# Sections whose leaves set shapes, data or the loop itself: never traced.
UNTRACEABLE_SECTIONS = ("train", "data", "model", "task", "experiment")


@dataclasses.dataclass(frozen=True)
class Group:
    """Runs that train together: same config except ``traced`` keys; same starting step."""
    runs: tuple  # of sweep.Run
    traced: tuple[str, ...]  # dotted keys whose values differ between the runs
    start_step: int

    def values(self) -> dict[str, np.ndarray]:
        """Traced key -> (T,) array of the trials' values (float32 or int32)."""
        out = {}
        for key in self.traced:
            column = [config_lib.get_leaf(run.config, key) for run in self.runs]
            dtype = np.int32 if all(isinstance(v, int) for v in column) else np.float32
            out[key] = np.asarray(column, dtype)
        return out


def _flat(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {key: config_lib.get_leaf(config, key) for key in config_lib.flat_keys(config)}


def differing_keys(runs: Sequence) -> list[str]:
    """The keys whose values are not the same in every run; `UserError` for untraceable ones."""
    flats = [_flat(run.config) for run in runs]
    keys = sorted(set().union(*flats))
    differing = [k for k in keys if any(f.get(k) != flats[0].get(k) for f in flats[1:])]
    for key in differing:
        values = [f.get(key) for f in flats]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if not numeric or key.split(".")[0] in UNTRACEABLE_SECTIONS:
            raise UserError(
                f"--vmap cannot sweep config.{key} (values {_shown(values)}): it changes shapes "
                f"or code paths. Runs trained as one program may differ only in the seed and in "
                f"numeric leaves outside {', '.join(UNTRACEABLE_SECTIONS)} (learning rate, "
                f"weight decay, loss weights); sweep config.{key} without --vmap")
    return differing


def _shown(values: Sequence[Any]) -> str:
    unique = list(dict.fromkeys(map(repr, values)))
    return ", ".join(unique[:4]) + (", ..." if len(unique) > 4 else "")


def _traced_config(config: ml_collections.ConfigDict,
                   traced: dict[str, jax.Array]) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``traced`` leaves are (traced) arrays."""
    copy = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    for key, value in traced.items():
        parent, _, leaf = key.rpartition(".")
        node = copy
        for part in filter(None, parent.split(".")):
            node = node[part]
        node[leaf] = value
    return copy


def _task_is_traced(traced: Sequence[str]) -> bool:
    """Whether a traced key may be read by the task (anything but the seed and the optimizer)."""
    return any(k != "seed" and not k.startswith("optimizer.") for k in traced)


class _Program:
    """The vmapped init and chunk functions of a group (jitted lazily, one chunk per length)."""

    def __init__(self, config: ml_collections.ConfigDict, traced: Sequence[str], task: Task,
                 mesh: jax.sharding.Mesh, size: int):
        self.config, self.traced, self.task, self.size = config, tuple(traced), task, size
        self.replicated = parallel.replicated(mesh)
        self.batch_sharding = parallel.batch_sharded(mesh)
        self._chunks = {}

    def _build(self, values: dict[str, jax.Array]):
        config = _traced_config(self.config, values)
        task = tasks.build(config) if _task_is_traced(self.traced) else self.task
        return config, task, make_optimizer(config.optimizer, config.train.steps)

    def init_one(self, values):
        config, task, tx = self._build(values)
        return init_state(task, tx, config.seed, config.train.batch_size)

    def chunk_fn(self, length: int):
        def chunk_one(state, values, train_arrays):
            _, task, tx = self._build(values)
            chunk = make_train_chunk(task, tx, self.config.train.batch_size, length,
                                     self.batch_sharding)
            return chunk(state, train_arrays)
        return jax.vmap(chunk_one, in_axes=(0, 0, None))

    def init(self, values):
        init = jax.vmap(self.init_one, axis_size=self.size)
        return jax.jit(init, out_shardings=self.replicated)(values)

    def chunk(self, length: int):
        if length not in self._chunks:
            self._chunks[length] = jax.jit(self.chunk_fn(length), donate_argnums=0,
                                           out_shardings=(self.replicated, self.replicated))
        return self._chunks[length]

    def trace(self, values, train_arrays) -> None:
        """Traces init and one chunk without running them (raises what tracing raises)."""
        state = jax.eval_shape(jax.vmap(self.init_one, axis_size=self.size), values)
        jax.eval_shape(self.chunk_fn(self.config.train.log_every), state, values, train_arrays)


def check_and_group(runs: Sequence, workdir: epath.Path) -> list[Group]:
    """Groups the runs to train (by the step their checkpoints reached) after checking, before
    anything is written, that they can train as one program; `UserError` names a bad key."""
    if not runs:
        return []
    traced = differing_keys(runs)
    for run in runs:
        workdir_lib.check_config(workdir / run.name, run.config)
    base = runs[0].config
    task = tasks.build(base)
    program = _Program(base, traced, task, parallel.make_mesh(), len(runs))
    values = Group(tuple(runs), tuple(traced), 0).values()
    try:
        program.trace(values, task.data.train)
    except Exception:  # find the key that cannot be traced, one at a time
        for key in traced:
            single = _Program(base, [key], task, program.replicated.mesh, len(runs))
            try:
                single.trace({key: values[key]}, task.data.train)
            except Exception as error:
                raise UserError(
                    f"--vmap cannot sweep config.{key}: it is used where a traced value cannot "
                    f"be (shapes or Python control flow): {type(error).__name__}: "
                    f"{str(error).splitlines()[0]}; sweep it without --vmap") from None
        raise
    by_step: dict[int, list] = {}
    for run in runs:
        by_step.setdefault(_latest_step(workdir / run.name, run.config), []).append(run)
    return [Group(tuple(group), tuple(traced), step) for step, group in sorted(by_step.items())]


def _latest_step(run_dir: epath.Path, config: ml_collections.ConfigDict) -> int:
    if not (run_dir / CHECKPOINT_DIR).is_dir():
        return 0
    checkpoints = Checkpoints(run_dir / CHECKPOINT_DIR, keep=config.train.keep_checkpoints)
    try:
        return checkpoints.latest_step() or 0
    finally:
        checkpoints.close()


def train_group(group: Group, workdir: epath.Path, quiet: bool = True) -> None:
    """Trains the group's runs together; an error is recorded as every run's failure."""
    try:
        finals = _train(group, workdir)
    except Exception as error:
        for run in group.runs:
            write_result(workdir / run.name, FAILED,
                                   error=f"{type(error).__name__}: {error}")
            _announce(run.name, FAILED, quiet)
        return
    for run, final in zip(group.runs, finals):
        write_result(workdir / run.name, DONE, metrics=final)
        _announce(run.name, DONE, quiet)


def _announce(name: str, status: str, quiet: bool) -> None:
    if not quiet:
        print(f"jaxlab sweep (vmap): {name}: {status}", flush=True)


def _train(group: Group, workdir: epath.Path) -> list[dict[str, Any]]:
    start_time = time.time()
    base, runs = group.runs[0].config, group.runs
    tc = base.train
    mesh = parallel.make_mesh()
    parallel.check_batch_size(tc.batch_size, mesh)
    base_task = tasks.build(base)
    trial_tasks = ([tasks.build(run.config) for run in runs] if _task_is_traced(group.traced)
                   else [base_task] * len(runs))
    program = _Program(base, group.traced, base_task, mesh, len(runs))
    values = jax.device_put(group.values(), program.replicated)
    state = program.init(values)
    train_arrays = jax.device_put(base_task.data.train, program.replicated)
    test_arrays = jax.device_put(base_task.data.test, program.replicated)

    run_dirs = [workdir / run.name for run in runs]
    checkpoints, logs = [], []
    try:
        for run, run_dir in zip(runs, run_dirs):
            run_dir.mkdir(parents=True, exist_ok=True)
            workdir_lib.write_config(run_dir, run.config)
            checkpoints.append(Checkpoints(run_dir / CHECKPOINT_DIR, keep=tc.keep_checkpoints))
        if group.start_step:
            state = _restore(state, checkpoints, group.start_step, program.replicated)
        step = group.start_step
        logs = [MetricsLog(run_dir, resume_step=step) for run_dir in run_dirs]
        while step < tc.steps:
            length = min(tc.log_every, tc.steps - step)
            state, metrics = program.chunk(length)(state, values, train_arrays)
            step += length
            metrics = jax.device_get(metrics)
            evaluate = step % tc.eval_every == 0 or step == tc.steps
            save = step % tc.checkpoint_every == 0 or step == tc.steps
            for i, (task, log) in enumerate(zip(trial_tasks, logs)):
                record = {f"train/{k}": v[i] for k, v in metrics.items()}
                trial = _trial(state, i) if evaluate or save else None
                if evaluate:
                    evaluated = jax.device_get(
                        task.evaluate(trial["params"], trial["task_state"], test_arrays))
                    record.update({f"eval/{k}": v for k, v in evaluated.items()})
                log.write(step, record)
                if save:
                    checkpoints[i].save(step, trial)
    finally:
        for resource in (*checkpoints, *logs):
            resource.close()
    for i, (task, run_dir) in enumerate(zip(trial_tasks, run_dirs)):
        if task.plot is not None and jax.process_index() == 0:
            trial = _trial(state, i)
            task.plot(trial["params"], trial["task_state"], test_arrays, run_dir)
    wall = round(time.time() - start_time, 2)  # of the whole group: its trials trained together
    return [{**log.latest, "step": step, "wall_time_s": wall} for log in logs]


def _trial(state: dict, index: int) -> dict:
    return jax.tree.map(lambda x: x[index], state)


def _restore(state: dict, checkpoints: Sequence[Checkpoints], step: int,
             sharding: jax.sharding.Sharding) -> dict:
    restored = [c.restore(step, _trial(state, i)) for i, c in enumerate(checkpoints)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *restored)
    return jax.device_put(stacked, sharding)

