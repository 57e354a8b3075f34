"""``jaxlab data convert``: what you have, as the files the Grain input path streams.

`convert` writes a source that `jaxlab.data.arrays` reads, or the MNIST or CIFAR-10 files, into a
new directory holding ``train`` and ``test`` as ``.npy`` files or ArrayRecord files.
"""

import os
import shutil
from collections.abc import Mapping

import numpy as np
from etils import epath

from jaxlab import paths
from jaxlab.data import arrays, cifar10, mnist, records
from jaxlab.data.dataset import permutation_split, take
from jaxlab.errors import UserError

SOURCES = ("arrays", "mnist", "cifar10")
FORMATS = ("npy", "array_record")
COPY_ROWS = 4096  # rows read and written at a time


def convert(
    source: str,
    destination: str,
    *,
    kind: str = "arrays",
    fmt: str = "npy",
    test: str = "",
    test_fraction: float = 0.0,
    split_seed: int = 0,
) -> list[str]:
    """Writes ``source`` to the new directory ``destination``; returns one line per split."""
    if kind not in SOURCES:
        raise UserError(f"--from must be one of {', '.join(SOURCES)}, got {kind!r}")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    target = paths.path(destination, "destination")
    if paths.is_remote(target):
        raise UserError(f"destination {target}: write the files locally, then copy them")
    if target.exists():
        raise UserError(f"destination {target} exists; give a new directory")
    splits = _read(source, kind, test, test_fraction, split_seed)
    partial = target.parent / f".{target.name}.converting-{os.getpid()}"
    partial.mkdir(parents=True)
    try:
        for name, (split_arrays, rows) in splits.items():
            _write(split_arrays, rows, partial, name, fmt)
        partial.rename(target)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return [
        f"{name}: {len(rows)} examples, arrays "
        + ", ".join(f"{key} {tuple(v.shape[1:])} {v.dtype}" for key, v in a.items())
        for name, (a, rows) in splits.items()
    ]


Split = tuple[Mapping[str, np.ndarray], np.ndarray]  # arrays, and which of their rows in order


def _read(
    source: str, kind: str, test: str, test_fraction: float, split_seed: int
) -> dict[str, Split]:
    """{"train": split, "test": split}, each arrays and the rows of them it holds."""

    def whole(arrays: Mapping[str, np.ndarray]) -> Split:
        return arrays, np.arange(len(next(iter(arrays.values()))))

    if kind in ("mnist", "cifar10"):
        if test or test_fraction:
            raise UserError(
                f"--from {kind} keeps the distribution's own test split; leave out "
                f"--test and --test-fraction"
            )
        data = (mnist if kind == "mnist" else cifar10).load(source)
        return {"train": whole(data.train), "test": whole(data.test)}
    if test and test_fraction:
        raise UserError("give the test split as --test PATH or --test-fraction F, not both")
    if not test and not 0.0 < test_fraction < 1.0:
        raise UserError("give the test split: --test PATH, or --test-fraction F in (0, 1)")
    train = arrays.read_split(source, "source")
    if test:
        data = arrays.paired(train, arrays.read_split(test, "--test"), test)
        return {"train": whole(data.train), "test": whole(data.test)}
    train_rows, test_rows = permutation_split(
        len(next(iter(train.values()))), test_fraction, split_seed
    )
    return {"train": (train, train_rows), "test": (train, test_rows)}


def _write(
    split_arrays: Mapping, rows: np.ndarray, directory: epath.Path, split: str, fmt: str
) -> None:
    """Rows ``rows`` of ``split_arrays``, in that order, as ``directory/split`` in ``fmt``,
    read and written `COPY_ROWS` at a time."""
    slices = (
        take(split_arrays, rows[first : first + COPY_ROWS])
        for first in range(0, len(rows), COPY_ROWS)
    )
    if fmt == "array_record":
        records.write(directory / f"{split}{records.SUFFIX}", slices)
        return
    (directory / split).mkdir()
    outputs = {
        name: np.lib.format.open_memmap(
            os.fspath(directory / split / f"{name}.npy"),
            mode="w+",
            dtype=array.dtype,
            shape=(len(rows), *array.shape[1:]),
        )
        for name, array in split_arrays.items()
    }
    for first, values in zip(range(0, len(rows), COPY_ROWS), slices):
        for name, value in values.items():
            outputs[name][first : first + len(value)] = value
    for out in outputs.values():
        out.flush()
