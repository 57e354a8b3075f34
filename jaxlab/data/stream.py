"""The Grain input path (``config.train.data_pipeline = "grain"``): batches read from files.

For data that does not fit, replicated, in every device's memory: `ChunkReader` reads the
training loop's chunks on the host, sharded over the devices; `test_chunks` the test split.
"""

import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from jaxlab import parallel
from jaxlab.data.dataset import take
from jaxlab.data.sampling import batch_indices


@functools.partial(jax.jit, static_argnums=(2, 3))
def steps_indices(
    data_key: jax.Array, steps: np.ndarray, batch_size: int, num_examples: int
) -> jax.Array:
    """``(len(steps), batch_size)``: the example indices of each of ``steps`` (`batch_indices`,
    compiled once per chunk length)."""
    return jax.vmap(batch_indices, in_axes=(None, 0, None, None))(
        data_key, steps, batch_size, num_examples
    )


def index_device() -> jax.Device:
    """Where the batches' example indices are computed: this process's first CPU device (the
    same integer arithmetic as on the accelerator), or its first device where JAX_PLATFORMS
    leaves out the CPU."""
    try:
        return jax.local_devices(backend="cpu")[0]
    except RuntimeError:
        return jax.local_devices()[0]


class ChunkReader:
    """The batches of the training loop's chunks for runs with data keys ``data_keys``;
    ``stacked``: their batches stacked on a leading axis (runs stacked in one program)."""

    def __init__(
        self,
        split: Mapping[str, Any],
        data_keys: Sequence[jax.Array],
        batch_size: int,
        mesh: Mesh,
        *,
        stacked: bool,
        prefetch: int,
    ):
        self.split, self.batch_size, self.prefetch = split, batch_size, prefetch
        self.num_examples = len(next(iter(split.values())))
        self._keys = [jax.device_put(key, index_device()) for key in data_keys]
        self._stacked = stacked
        self._sharding = (
            parallel.stacked_batch_sharded(mesh) if stacked else parallel.batch_sharded(mesh, 1)
        )
        self._indexing = threading.Lock()
        self._stream: tuple[int, Iterator] | None = None  # (next start, chunks read ahead)

    def _global_shape(self, length: int, name: str) -> tuple[int, ...]:
        example = self.split[name].shape[1:]
        runs = (len(self._keys),) if self._stacked else ()
        return (*runs, length, self.batch_size, *example)

    def _rows_of_this_process(self, length: int) -> slice:
        """The rows of the global batch that land on this process's devices."""
        name = next(iter(self.split))
        shape = self._global_shape(length, name)
        axis = len(shape) - len(self.split[name].shape)  # the batch axis
        parts = {
            index[axis].indices(self.batch_size)[:2]  # type: ignore[index]  # never None here
            for index in self._sharding.addressable_devices_indices_map(shape).values()
        }
        start, stop = min(p[0] for p in parts), max(p[1] for p in parts)
        return slice(start, stop)

    def read(self, start: int, length: int) -> dict[str, jax.Array]:
        """The batches of steps ``start .. start+length-1``, as global arrays."""
        steps = np.arange(start, start + length, dtype=np.int32)
        rows = self._rows_of_this_process(length)
        with self._indexing:  # one thread at a time: each program compiled once, not per thread
            indices = [
                np.asarray(steps_indices(key, steps, self.batch_size, self.num_examples))[:, rows]
                for key in self._keys
            ]
        per_run = [take(self.split, run_indices) for run_indices in indices]
        local = (
            {name: np.stack([r[name] for r in per_run]) for name in per_run[0]}
            if self._stacked
            else per_run[0]
        )
        return {
            name: jax.make_array_from_process_local_data(
                self._sharding, value, self._global_shape(length, name)
            )
            for name, value in local.items()
        }

    def chunks(self, start: int, stop: int, length: int) -> Iterator[tuple[int, int, dict]]:
        """(first step, length, batches) of the chunks from ``start`` to ``stop``, read ahead by
        Grain's worker threads."""
        import grain  # imported here: runs that keep their data on the device never load it

        starts = list(range(start, stop, length))
        spans = grain.MapDataset.source(starts).map(
            lambda first: (
                first,
                min(length, stop - first),
                self.read(first, min(length, stop - first)),
            )
        )
        return iter(
            spans.to_iter_dataset(
                grain.ReadOptions(num_threads=self.prefetch, prefetch_buffer_size=self.prefetch)
            )
        )

    def batches(
        self, start: int, length: int, stop: int, chunk_length: int
    ) -> dict[str, jax.Array]:
        """The batches of the chunk at ``start``: the next of the chunks read ahead, or a new
        read-ahead from ``start`` when the loop asks for another chunk than expected."""
        if self._stream is None or self._stream[0] != start:
            self._stream = (start, self.chunks(start, stop, chunk_length))
        first, got, batches = next(self._stream[1])
        assert (first, got) == (start, length), (first, got, start, length)
        self._stream = (start + length, self._stream[1])
        return batches


def first_batch(
    split: Mapping[str, Any], data_key: jax.Array, batch_size: int
) -> dict[str, np.ndarray]:
    """The batch of step 0 (what a model is initialised on), read on the host."""
    indices = steps_indices(
        jax.device_put(data_key, index_device()),
        np.zeros(1, np.int32),
        batch_size,
        len(next(iter(split.values()))),
    )[0]
    return take(split, np.asarray(indices))


def test_chunks(
    split: Mapping[str, Any], chunk: int, sharding: NamedSharding
) -> Iterator[tuple[int, dict[str, jax.Array]]]:
    """(examples, arrays) of consecutive chunks of at most ``chunk`` examples of ``split``, each
    placed with ``sharding`` (every process reads the whole chunk)."""
    total = len(next(iter(split.values())))
    for first in range(0, total, chunk):
        rows = take(split, np.arange(first, min(first + chunk, total)))
        yield (
            len(next(iter(rows.values()))),
            {
                name: jax.make_array_from_process_local_data(sharding, value, value.shape)
                for name, value in rows.items()
            },
        )
