"""Trials: T runs of one config that differ only in traced numeric leaves, as one program.

A single run is a group of one trial; a vmapped sweep is a group of T. Either way the train state
carries a leading trial axis, and one host loop (`jaxlab.train.run_trials`) trains it, with each
trial's workdir, lock, checkpoints and logs those of a single run.

Runs whose configs differ only in the seed or in numeric leaves that can be traced (learning rate,
weight decay, loss weights) share every shape and code path, so T of them train as one program,
as purejaxrl vmaps ``make_train(config)`` over seeds: the differing leaves become a (T,) array
passed to the compiled chunk. Inside the trace each trial's optimizer (and, when a leaf outside
``seed`` and ``optimizer`` differs, its task) is built from a copy of the config whose differing
leaves are tracers, so a learning rate reaches ``make_optimizer`` exactly as a float would. A key
that changes shapes or code paths (``model.width``, ``train.steps``, a string, a value used in
Python control flow) is refused with a `UserError` naming it.

A chunk takes an ``active`` mask (T,): an inactive trial's state is left as it was, so trials can
wait for the others (one that resumed from an older checkpoint catches up, one that diverged
stops) without changing the program. For T = 1 the state, the metrics and the chunk are a single
run's own, without the trial axis (`Program.trial` and `Program.stack` are then the identity), so
a single run compiles and runs the program it always did, with nothing added.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxlab import config as config_lib
from jaxlab import parallel, tasks
from jaxlab.errors import UserError
from jaxlab.optim import make_optimizer
from jaxlab.state import init_state
from jaxlab.step import make_train_chunk, select

# Sections whose leaves set shapes, data or the loop itself: never traced.
UNTRACEABLE_SECTIONS = ("train", "data", "model", "task", "experiment")
DONE, FAILED = "done", "failed"


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: `DONE` with its final metrics, or `FAILED` (NaN/Inf) with the metrics
    of the step that failed (and ``step``) and the error."""

    status: str
    metrics: dict[str, Any]
    error: str = ""


@dataclasses.dataclass(frozen=True)
class TrialGroup:
    """Validated configs, one per trial, equal except at the ``traced`` keys."""

    configs: tuple[ml_collections.ConfigDict, ...]
    traced: tuple[str, ...]

    @classmethod
    def of(cls, configs: Sequence[ml_collections.ConfigDict]) -> "TrialGroup":
        """The group of ``configs``; `UserError` naming a key that differs but cannot be traced."""
        return cls(tuple(configs), tuple(differing_keys(configs)))

    @property
    def base(self) -> ml_collections.ConfigDict:
        return self.configs[0]

    @property
    def size(self) -> int:
        return len(self.configs)

    @property
    def task_varies(self) -> bool:
        """Whether a traced key may be read by the task (anything but the seed and optimizer)."""
        return any(k != "seed" and not k.startswith("optimizer.") for k in self.traced)

    def values(self) -> dict[str, np.ndarray]:
        """Traced key -> (T,) array of the trials' values (float32 or int32)."""
        out = {}
        for key in self.traced:
            column = [config_lib.get_leaf(config, key) for config in self.configs]
            dtype = np.int32 if all(isinstance(v, int) for v in column) else np.float32
            out[key] = np.asarray(column, dtype)
        return out


def differing_keys(configs: Sequence[ml_collections.ConfigDict]) -> list[str]:
    """The keys whose values are not the same in every config; `UserError` for untraceable ones."""
    flats = [config_lib.flatten(c) for c in configs]
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
                f"weight decay, loss weights); sweep config.{key} without --vmap"
            )
    return differing


def _shown(values: Sequence[Any]) -> str:
    unique = list(dict.fromkeys(map(repr, values)))
    return ", ".join(unique[:4]) + (", ..." if len(unique) > 4 else "")


def traced_config(
    config: ml_collections.ConfigDict, values: dict[str, jax.Array]
) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``values`` leaves (dotted key -> array) are replaced."""
    copy = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    for key, value in values.items():
        config_lib.set_leaf(copy, key, value)
    return copy


class Program:
    """The compiled init and chunks of a group on ``mesh`` (``task``: the base config's)."""

    def __init__(self, group: TrialGroup, task: tasks.Task, mesh: jax.sharding.Mesh):
        self.group, self.task, self.mesh = group, task, mesh
        self.replicated = parallel.replicated(mesh)
        self.batch_sharding = parallel.batch_sharded(mesh)
        self.values = jax.device_put(group.values(), self.replicated)
        self._chunks: dict[int, Any] = {}  # chunk length -> compiled chunk

    def _build(self, values: dict[str, jax.Array]):
        """(config, task, optimizer) of one trial whose traced leaves are ``values``."""
        config = traced_config(self.group.base, values)
        task = tasks.build(config) if self.group.task_varies else self.task
        return config, task, make_optimizer(config.optimizer, config.train.steps)

    @property
    def batches_given(self) -> bool:
        """Whether the chunks take the batches read on the host (the Grain input path)."""
        return self.group.base.train.data_pipeline == "grain"

    def _init_one(self, values, example=None):
        config, task, tx = self._build(values)
        return init_state(task, tx, config.seed, config.train.batch_size, example)

    def trial(self, tree: Any, index: int) -> Any:
        """Trial ``index`` of a state (or of metrics) of the group."""
        if self.group.size == 1:
            return tree
        return jax.tree.map(lambda x: x[index], tree)

    def stack(self, per_trial: Sequence[Any]) -> Any:
        """The group's state made of per-trial states (the inverse of `trial`)."""
        if self.group.size == 1:
            return per_trial[0]
        return jax.device_put(
            jax.tree.map(lambda *xs: jax.numpy.stack(xs), *per_trial), self.replicated
        )

    def init(self, single_state: Any, examples: Sequence[dict | None] | None = None) -> Any:
        """The group's initial state; for one trial, ``single_state`` (`jaxlab.train.prepare`'s).
        ``examples``: each trial's batch of step 0, read on the host (the Grain input path)."""
        if self.group.size == 1:
            return single_state
        if examples is None:
            init = jax.vmap(self._init_one, axis_size=self.group.size)
            return jax.jit(init, out_shardings=self.replicated)(self.values)
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *examples)
        return jax.jit(jax.vmap(self._init_one), out_shardings=self.replicated)(
            self.values, stacked
        )

    def _chunk_fn(self, length: int):
        base = self.group.base

        def chunk_of(task, tx):
            return make_train_chunk(
                task,
                tx,
                base.train.batch_size,
                length,
                self.batch_sharding,
                skip_nonfinite=base.train.get("skip_nonfinite_steps", False),
                batches_given=self.batches_given,
            )

        if self.group.size == 1:
            plain = chunk_of(self.task, make_optimizer(base.optimizer, base.train.steps))

            def one_trial(state, active, values, data):
                del active, values  # a single run is always active
                return plain(state, data)

            return one_trial

        def chunk_one(state, values, data):
            _, task, tx = self._build(values)
            return chunk_of(task, tx)(state, data)

        def all_trials(state, active, values, data):
            new_state, metrics = jax.vmap(
                chunk_one, in_axes=(0, 0, 0 if self.batches_given else None)
            )(state, values, data)
            return jax.vmap(select)(active, new_state, state), metrics

        return all_trials

    def chunk(self, length: int):
        """``(state, active, data) -> (state, metrics)`` for ``length`` steps, compiled once per
        length with the state donated; ``data``: the training arrays on the device, or the
        chunk's batches (`batches_given`)."""
        if length not in self._chunks:
            compiled = jax.jit(
                self._chunk_fn(length),
                donate_argnums=0,
                out_shardings=(self.replicated, self.replicated),
            )
            self._chunks[length] = lambda state, active, arrays, fn=compiled: fn(
                state, active, self.values, arrays
            )
        return self._chunks[length]

    def check_traceable(self, train_split: Mapping[str, Any]) -> None:
        """Traces init and one chunk without running them; a traced key used where a traced
        value cannot be (shapes, Python control flow) is a `UserError` naming it."""
        try:
            self._trace(self.group, train_split)
        except UserError:
            raise
        except Exception:  # find the key that cannot be traced, one at a time
            for key in self.group.traced:
                single = TrialGroup(self.group.configs, (key,))
                try:
                    self._trace(single, train_split)
                except Exception as error:  # noqa: BLE001 - any tracing failure names the key
                    raise UserError(
                        f"--vmap cannot sweep config.{key}: it is used where a traced value "
                        f"cannot be (shapes or Python control flow): {type(error).__name__}: "
                        f"{str(error).splitlines()[0]}; sweep it without --vmap"
                    ) from None
            raise

    def _trace(self, group: TrialGroup, train_split: Mapping[str, Any]) -> None:
        program = Program(group, self.task, self.mesh)
        values, size, train = program.values, group.size, group.base.train

        def rows(*lead):  # shapes only: nothing is read
            return {
                name: jax.ShapeDtypeStruct((*lead, *array.shape[1:]), array.dtype)
                for name, array in train_split.items()
            }

        if self.batches_given:
            state = jax.eval_shape(
                jax.vmap(program._init_one), values, rows(size, train.batch_size)
            )
            data = rows(size, train.log_every, train.batch_size)
        else:
            state = jax.eval_shape(jax.vmap(program._init_one, axis_size=size), values)
            data = rows(len(next(iter(train_split.values()))))
        if size == 1:
            state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state)
            data = (
                jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), data)
                if self.batches_given
                else data
            )
        active = jax.ShapeDtypeStruct((size,), bool)
        jax.eval_shape(program._chunk_fn(train.log_every), state, active, values, data)
