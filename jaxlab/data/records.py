"""Splits stored as ArrayRecord files: one record per example, a msgpack dict of its arrays.

`write` writes examples as records; `RecordSplit` reads a file lazily as a mapping from array
name to a `RecordColumn` of one row per example.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from etils import epath
from flax import serialization

from jaxlab.errors import UserError

SUFFIX = ".array_record"
WRITER_OPTIONS = "group_size:1"  # random access: every record in a chunk of its own
READ_ROWS = 4096  # records per read when a whole column is asked for


def write(destination: epath.Path, slices: Iterable[Mapping[str, np.ndarray]]) -> None:
    """Writes the examples of ``slices`` (each a dict of arrays, one row per example) as records,
    in order."""
    writer = ArrayRecordWriter(str(destination), WRITER_OPTIONS)
    try:
        for arrays in slices:
            for i in range(len(next(iter(arrays.values())))):
                writer.write(
                    serialization.msgpack_serialize(
                        {name: np.asarray(array[i]) for name, array in arrays.items()}
                    )
                )
    finally:
        writer.close()


class RecordSplit(Mapping):
    """The arrays of the ArrayRecord file ``path``, read lazily (see docs/modules.md)."""

    def __init__(self, path: epath.Path, what: str, keys: Sequence[str] = ()):
        from grain.sources import ArrayRecordDataSource  # imported here: only record splits need it

        self.path, self._what = path, what
        try:
            self._source = ArrayRecordDataSource(str(path))
            size = len(self._source)
            first = self._decode(self._source[0], 0) if size else {}
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - whatever the reader raises on a bad file
            why = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserError(
                f"{what}: {path} is not a readable ArrayRecord file ({why}); write "
                f"it with jaxlab data convert"
            ) from None
        if not first:
            raise UserError(f"{what}: {path} holds no examples")
        missing = [k for k in keys if k not in first]
        if missing:
            raise UserError(
                f"config.data.keys names {', '.join(map(repr, missing))}, which "
                f"{path} does not hold (it holds {', '.join(sorted(first))})"
            )
        self._signature = {name: (value.shape, value.dtype) for name, value in first.items()}
        self._kept = list(keys) or list(first)
        self._columns = {
            name: RecordColumn(
                self, name, (size, *self._signature[name][0]), self._signature[name][1]
            )
            for name in self._kept
        }

    def __getitem__(self, name: str) -> "RecordColumn":
        return self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def read(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Every array's rows ``indices``, each record read once."""
        keys = [int(i) for i in np.asarray(indices).ravel()]
        records = [
            self._decode(raw, key) for raw, key in zip(self._source.__getitems__(keys), keys)
        ]
        shape = np.shape(indices)
        return {
            name: np.stack([r[name] for r in records]).reshape(*shape, *self._signature[name][0])
            for name in self._kept
        }

    def _decode(self, raw: bytes, index: int) -> dict[str, np.ndarray]:
        try:
            record = serialization.msgpack_restore(raw)
        except Exception as error:  # noqa: BLE001 - a damaged record
            raise UserError(
                f"{self._what}: record {index} of {self.path} does not decode "
                f"({type(error).__name__}); write it with jaxlab data convert"
            ) from None
        if not isinstance(record, dict):
            raise UserError(f"{self._what}: record {index} of {self.path} is not a dict of arrays")
        record = {name: np.asarray(value) for name, value in record.items()}
        signature = getattr(self, "_signature", None)
        if (
            signature is not None
            and {n: (v.shape, v.dtype) for n, v in record.items()} != signature
        ):
            raise UserError(
                f"{self._what}: record {index} of {self.path} holds other arrays "
                f"(names, shapes or dtypes) than record 0; every example needs the "
                f"same ones"
            )
        return record


class RecordColumn:
    """One array of a `RecordSplit`: ``shape``, ``dtype``, rows read when indexed."""

    def __init__(self, split: RecordSplit, name: str, shape: tuple, dtype: np.dtype):
        self._split, self._name = split, name
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices) -> np.ndarray:
        if isinstance(indices, slice):
            indices = np.arange(len(self))[indices]
        return self._split.read(indices)[self._name]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole column, read in slices of `READ_ROWS` records (only this column kept)."""
        array = np.concatenate(
            [
                self[np.arange(first, min(first + READ_ROWS, len(self)))]
                for first in range(0, len(self), READ_ROWS)
            ]
        )
        return array if dtype is None else array.astype(dtype)
