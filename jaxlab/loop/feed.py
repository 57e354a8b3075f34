"""What the training loop gives its compiled chunks and its evaluations, on either input path
(``config.train.data_pipeline``): `DeviceFeed` (``"device"``, the arrays on every device) or
`HostFeed` (``"grain"``, batches read from files on the host); `make` builds one.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxlab import parallel
from jaxlab.data import Dataset, in_memory, stream
from jaxlab.errors import UserError
from jaxlab.loop.state import data_key
from jaxlab.tasks import Task

TEST_READ_CHUNK = 4096  # test examples read from the files per evaluation chunk (Grain path)


class DeviceFeed:
    """The arrays in device memory, replicated (see docs/modules.md)."""

    def __init__(self, data: Dataset, mesh: jax.sharding.Mesh):
        self._data, self._replicated = data, parallel.replicated(mesh)

    @functools.cached_property
    def train_arrays(self) -> dict:
        """Placed on first use (an evaluation alone never copies the training set)."""
        return jax.device_put(in_memory(self._data.train), self._replicated)

    @functools.cached_property
    def test_arrays(self) -> dict:
        return jax.device_put(in_memory(self._data.test), self._replicated)

    def chunk(self, start: int, length: int) -> dict:
        """What the chunk of steps ``start .. start+length-1`` takes: the training arrays."""
        del start, length
        return self.train_arrays

    def probe(self, run: int, step: int) -> dict:
        """What a one-step chunk of run ``run`` alone at ``step`` takes."""
        del run, step
        return self.train_arrays

    def evaluate(self, task: Task, params: Any, task_state: Any) -> dict[str, Any]:
        return task.evaluate(params, task_state, self.test_arrays)


class HostFeed:
    """Batches and test chunks read on the host with Grain (see docs/modules.md)."""

    def __init__(
        self,
        data: Dataset,
        mesh: jax.sharding.Mesh,
        data_keys: Sequence[jax.Array],
        batch_size: int,
        chunk_length: int,
        total_steps: int,
        prefetch: int,
        stacked: bool,
    ):
        self._data, self._mesh = data, mesh
        self._chunk_length, self._total = chunk_length, total_steps
        self._keys, self._batch_size = list(data_keys), batch_size
        self._reader = stream.ChunkReader(
            data.train,
            data_keys,
            batch_size,
            mesh,
            stacked=stacked,
            prefetch=prefetch,
        )
        self._replicated = parallel.replicated(mesh)

    @functools.cached_property
    def test_arrays(self) -> dict:
        """The first chunk of the test split (what a task's plot is given), read on first use."""
        return next(stream.test_chunks(self._data.test, TEST_READ_CHUNK, self._replicated))[1]

    def chunk(self, start: int, length: int) -> dict:
        return self._reader.batches(start, length, self._total, self._chunk_length)

    def probe(self, run: int, step: int) -> dict:
        reader = stream.ChunkReader(
            self._data.train,
            [self._keys[run]],
            self._batch_size,
            self._mesh,
            stacked=False,
            prefetch=1,
        )
        return reader.read(step, 1)

    def evaluate(self, task: Task, params: Any, task_state: Any) -> dict[str, Any]:
        assert task.evaluate_sums is not None  # `check` refuses the Grain path without it
        totals: dict[str, Any] = {}
        count = 0
        for examples, arrays in stream.test_chunks(
            self._data.test, TEST_READ_CHUNK, self._replicated
        ):
            sums = task.evaluate_sums(params, task_state, arrays)
            totals = {k: totals.get(k, 0) + v for k, v in sums.items()}
            count += examples
        return {name: np.asarray(jax.device_get(total)) / count for name, total in totals.items()}


def make(
    configs: Sequence[Any], data: Dataset, mesh: jax.sharding.Mesh, stacked: bool = False
) -> "DeviceFeed | HostFeed":
    """The feed of a loop over runs of ``configs`` (one config per run); ``stacked``: the runs
    are stacked on a leading axis of one program (their batches too)."""
    train = configs[0].train
    if train.data_pipeline != "grain":
        return DeviceFeed(data, mesh)
    return HostFeed(
        data,
        mesh,
        [data_key(c.seed) for c in configs],
        train.batch_size,
        train.log_every,
        train.steps,
        train.prefetch,
        stacked,
    )


def check(config, task: Task) -> None:
    """`UserError` if ``task`` cannot run on the input path ``config`` asks for."""
    if config.train.data_pipeline == "grain" and task.evaluate_sums is None:
        raise UserError(
            f"config.train.data_pipeline='grain' streams the test split in chunks, "
            f"which needs the task's evaluate_sums; config.task={config.task!r} "
            f"defines none: use config.train.data_pipeline='device'"
        )


def example_batch(config, task: Task, seed: int) -> dict | None:
    """The batch of step 0 read on the host for the Grain path (None on the device path, whose
    init samples it on the device)."""
    if config.train.data_pipeline != "grain":
        return None
    return stream.first_batch(task.data.train, data_key(seed), config.train.batch_size)
