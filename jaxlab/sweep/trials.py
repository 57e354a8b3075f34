"""A vmapped sweep's runs as the trials of one program: T configs that differ only in numeric
leaves that can be traced, trained by the one loop with a leading trial axis on the state.

The differing leaves become a (T,) array passed to the compiled chunk; inside the trace each
trial's optimizer (and, when a leaf outside ``seed`` and ``optimizer`` differs, its task) is built
from a copy of the config whose differing leaves are traced scalars (the rule for tasks is in
`jaxlab.tasks.Task`). A chunk takes a mask of the trials that move: the others are left as they
are, so one that resumed from an older checkpoint catches up and one that diverged stops.

The trial axis of the state is split over the mesh's ``trial`` axis (each device holds whole
trials; a trial's batch is split as the mesh's other axes say: whole, when the trial axis is
chosen, `jaxlab.parallel.mesh_shape`), so on several devices the trials run side by side with no
communication between them.
"""

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxlab import config as config_lib
from jaxlab import data as data_lib
from jaxlab import parallel, sharding, tasks
from jaxlab.errors import UserError
from jaxlab.loop import feed
from jaxlab.loop.optim import make_optimizer
from jaxlab.loop.program import Program
from jaxlab.loop.state import init_state
from jaxlab.loop.step import select

# Sections whose leaves set shapes, data or the loop itself: never traced.
UNTRACEABLE_SECTIONS = ("train", "data", "model", "task", "experiment")


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
    """The keys whose values are not the same in every config. Configs that differ where a program
    cannot trace are a caller's error (`ValueError`): group them first (`split_untraceable`)."""
    flats = [config_lib.flatten(c) for c in configs]
    differing = _differing(flats)
    untraceable = [k for k in differing if not _traceable(k, [f.get(k) for f in flats])]
    if untraceable:
        raise ValueError(
            f"one program cannot hold configs that differ in config.{untraceable[0]} "
            f"(values {_shown([f.get(untraceable[0]) for f in flats])}); group them with "
            f"split_untraceable first"
        )
    return differing


def split_untraceable(
    configs: Sequence[ml_collections.ConfigDict],
) -> tuple[list[str], list[list[int]]]:
    """The keys that differ but cannot be traced (strings, bools, and any leaf under
    `UNTRACEABLE_SECTIONS`), and the configs' indices grouped by their values there, in order of
    first appearance: each group can train as one program (`TrialGroup`)."""
    flats = [config_lib.flatten(c) for c in configs]
    keys = [k for k in _differing(flats) if not _traceable(k, [f.get(k) for f in flats])]
    groups: dict[str, list[int]] = {}
    for index, flat in enumerate(flats):
        groups.setdefault(repr([flat.get(k) for k in keys]), []).append(index)
    return keys, list(groups.values())


def _differing(flats: Sequence[dict[str, Any]]) -> list[str]:
    keys = sorted(set().union(*flats))
    return [k for k in keys if any(f.get(k) != flats[0].get(k) for f in flats[1:])]


def _traceable(key: str, values: Sequence[Any]) -> bool:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return numeric and key.split(".")[0] not in UNTRACEABLE_SECTIONS


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


class TrialProgram(Program):
    """The compiled init and chunks of a group's trials, stacked on a leading axis; ``task``:
    the base config's."""

    def __init__(self, group: TrialGroup, task: tasks.Task, mesh: jax.sharding.Mesh):
        super().__init__(group.base, task, mesh)
        if mesh.shape["fsdp"] > 1 or mesh.shape["tensor"] > 1:
            raise UserError(
                f"--vmap stacks its trials on a replicated state, and config.mesh "
                f"fsdp={mesh.shape['fsdp']} tensor={mesh.shape['tensor']} would shard it: "
                f"sweep without --vmap, or set config.mesh.fsdp=1 and config.mesh.tensor=1"
            )
        self.group = group
        self.values = jax.device_put(group.values(), self.state_sharding)
        self._alone: dict[int, Program] = {}

    stacked = True

    def _build(self, values: dict[str, jax.Array]):
        """(config, task, optimizer) of one trial whose traced leaves are ``values``."""
        config = traced_config(self.group.base, values)
        task = self.task
        if self.group.task_varies:
            with data_lib.reusing(self.group.base.data, self.task.data):
                task = tasks.build(config)
        return config, task, make_optimizer(config.optimizer, config.train.steps)

    @functools.cached_property
    def state_sharding(self) -> Any:
        """Every leaf's trial axis split over the mesh's ``trial`` axis."""
        return NamedSharding(self.mesh, PartitionSpec(parallel.TRIAL_AXIS))

    def _vmap(self, function, **kwargs):
        """``jax.vmap`` over the trials, whose axis sharding constraints inside place on the
        mesh's ``trial`` axis."""
        return jax.vmap(function, spmd_axis_name=parallel.TRIAL_AXIS, **kwargs)

    def _init_one(self, values, example=None):
        config, task, tx = self._build(values)
        ema = config.train.ema_decay is not None
        return sharding.unbox(
            init_state(task, tx, config.seed, config.train.batch_size, example, ema=ema)
        )

    def init(self) -> Any:
        """The trials' states at step 0, stacked."""
        if not self.batches_given:
            init = self._vmap(self._init_one, axis_size=self.group.size)
            return jax.jit(init, out_shardings=self.state_sharding)(self.values)
        examples = [feed.example_batch(c, self.task, c.seed) for c in self.group.configs]
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *examples)
        return jax.jit(self._vmap(self._init_one), out_shardings=self.state_sharding)(
            self.values, stacked
        )

    def step_function(self, length: int):
        """``(state, moving mask, values, data) -> (state, metrics)``: every trial's chunk."""

        def chunk_one(state, values, data):
            _, task, tx = self._build(values)
            return self._chunk_of(task, tx, length)(state, data)

        def all_trials(state, moving, values, data):
            new_state, metrics = self._vmap(
                chunk_one, in_axes=(0, 0, 0 if self.batches_given else None)
            )(state, values, data)
            return self._vmap(select)(moving, new_state, state), metrics

        return all_trials

    def set_values(self, values: Mapping[str, np.ndarray]) -> None:
        """New values (key -> (T,) array) of some traced leaves, which the next chunks take."""
        new = {key: np.asarray(column, self.values[key].dtype) for key, column in values.items()}
        self.values = {**self.values, **jax.device_put(new, self.state_sharding)}

    def regroup(self, state: Any, parents: np.ndarray) -> Any:
        """The state in which trial i holds trial ``parents[i]``'s state, all but its own
        random key (population-based training, `jaxlab.sweep.pbt`); ``state`` is donated."""
        return self._regrouped(state, jax.numpy.asarray(parents))

    @functools.cached_property
    def _regrouped(self):
        def regroup(state, parents):
            return {
                name: part if name == "rng" else jax.tree.map(lambda x: x[parents], part)
                for name, part in state.items()
            }

        return jax.jit(regroup, donate_argnums=0, out_shardings=self.state_sharding)

    def run_chunk(self, state: Any, data: Any, length: int, moving: Sequence[int]) -> Any:
        mask = np.isin(np.arange(self.group.size), moving)
        return self.compiled(length)(state, mask, self.values, data)

    def part(self, tree: Any, index: int) -> Any:
        return jax.tree.map(lambda x: x[index], tree)

    def parts(self, state: Any) -> list[Any]:
        """Host copies (numpy) of each trial's state, from one transfer of the stacked state:
        cheaper than a slice per leaf and trial on the device."""
        host = jax.tree.map(np.array, jax.device_get(state))  # a copy the device cannot reuse
        return [self.part(host, i) for i in range(self.group.size)]

    parts_on_host = True

    def join(self, parts: Sequence[Any]) -> Any:
        return jax.device_put(
            jax.tree.map(lambda *xs: jax.numpy.stack(xs), *parts), self.state_sharding
        )

    def task_of(self, index: int) -> tasks.Task:
        return self.alone(index).task

    def alone(self, index: int) -> Program:
        if index not in self._alone:
            config = self.group.configs[index]
            task = tasks.build(config) if self.group.task_varies else self.task
            self._alone[index] = Program(config, task, self.mesh)
        return self._alone[index]

    def check_traceable(self, train_split: Mapping[str, Any]) -> None:
        """Traces init and one chunk without running them; a traced key used where a traced
        value cannot be (shapes, Python control flow) is a `UserError` naming it. A group that
        differs only in the seed is not traced: the seed only keys `jax.random`."""
        if set(self.group.traced) <= {"seed"}:
            return
        try:
            self._trace(self.group, train_split)
        except UserError:
            raise
        except Exception:  # find the key that cannot be traced, one at a time
            for key in self.group.traced:
                try:
                    self._trace(TrialGroup(self.group.configs, (key,)), train_split)
                except Exception as error:  # noqa: BLE001 - any tracing failure names the key
                    raise UserError(
                        f"--vmap cannot sweep config.{key}: it is used where a traced value "
                        f"cannot be (shapes or Python control flow): {type(error).__name__}: "
                        f"{str(error).splitlines()[0]}; sweep it without --vmap"
                    ) from None
            raise

    def _trace(self, group: TrialGroup, train_split: Mapping[str, Any]) -> None:
        program = TrialProgram(group, self.task, self.mesh)
        length = group.base.train.log_every
        jax.eval_shape(program.step_function(length), *program._chunk_inputs(train_split))

    def bytes_per_device(self, train_split: Mapping[str, Any]) -> int:
        """The device memory a chunk of the group's trials takes on each device (XLA's memory
        analysis of the compiled chunk: its arguments, outputs and temporaries, the donated
        state counted once); compiles the chunk the loop then runs."""
        length = self.config.train.log_every
        data_where = (
            parallel.stacked_batch_sharded(self.mesh)
            if self.batches_given
            else parallel.replicated(self.mesh)
        )
        state, moving, values, data = self._chunk_inputs(train_split)
        inputs = [
            _placed(state, self.state_sharding),
            moving,
            _placed(values, self.state_sharding),
            _placed(data, data_where),
        ]
        memory = self.compiled(length).lower(*inputs).compile().memory_analysis()
        if memory is None:  # a platform without the analysis: assume it fits
            return 0
        used = memory.argument_size_in_bytes + memory.output_size_in_bytes
        return used + memory.temp_size_in_bytes - memory.alias_size_in_bytes

    def _chunk_inputs(self, train_split: Mapping[str, Any]) -> tuple:
        """The shapes (nothing read or computed) of a chunk's (state, moving, values, data)."""
        size, train = self.group.size, self.config.train

        def rows(*lead):
            return {
                name: jax.ShapeDtypeStruct((*lead, *array.shape[1:]), array.dtype)
                for name, array in train_split.items()
            }

        if self.batches_given:
            state = jax.eval_shape(
                self._vmap(self._init_one), self.values, rows(size, train.batch_size)
            )
            data = rows(size, train.log_every, train.batch_size)
        else:
            state = jax.eval_shape(self._vmap(self._init_one, axis_size=size), self.values)
            data = rows(len(next(iter(train_split.values()))))
        return state, jax.ShapeDtypeStruct((size,), bool), self.values, data


def _placed(tree: Any, sharding: Any) -> Any:
    """The shapes of ``tree`` placed by ``sharding``."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
