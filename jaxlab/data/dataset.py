"""The dataset every task works with: train and test splits of arrays that share their leading
(example) axis. An array may be in memory, a memory-mapped ``.npy`` file, or a column of an
ArrayRecord file (`jaxlab.data.records`); `take` reads rows of any of them."""

import dataclasses
import mmap
from collections.abc import Mapping

import numpy as np

from jaxlab.data import records
from jaxlab.errors import UserError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test splits, each a mapping from name to an array-like (see the module
    docstring) of one row per example. Each split needs at least one array of at least one
    example, and an array in both splits the same example shape (``shape[1:]``); only shapes
    are read, never the arrays."""

    train: Mapping[str, np.ndarray]
    test: Mapping[str, np.ndarray]

    def __post_init__(self):
        for split_name, split in (("train", self.train), ("test", self.test)):
            if not split:
                raise UserError(f"the {split_name} split holds no arrays, expected at least one")
            for name, array in split.items():
                if not array.shape or not array.shape[0]:
                    raise UserError(
                        f"array {name!r} of the {split_name} split has shape "
                        f"{array.shape}, expected at least one example (row)"
                    )
        for name, array in self.train.items():
            if name in self.test and array.shape[1:] != self.test[name].shape[1:]:
                raise UserError(
                    f"array {name!r}: examples of shape {array.shape[1:]} in the "
                    f"train split but {self.test[name].shape[1:]} in the test split, "
                    f"expected the same shape in both"
                )

    @property
    def num_train(self) -> int:
        return len(next(iter(self.train.values())))


def take(split: Mapping[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``indices`` (any shape) of every array of ``split``, as arrays in memory. A
    memory-mapped file's pages are released again after the read, so that streaming a dataset
    larger than memory keeps the process small (the kernel's page cache keeps what it can)."""
    if isinstance(split, records.RecordSplit):
        return split.read(np.asarray(indices).tolist())
    rows = {name: np.asarray(array[indices]) for name, array in split.items()}
    for array in split.values():
        mapped = getattr(array, "_mmap", None)  # a numpy.memmap's mapping
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)
    return rows


def in_memory(split: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every array of ``split`` read whole into memory. A memory map is copied, never passed on
    as a view (JAX's CPU backend would alias it instead of copying, leaving device arrays backed
    by a file that may change under them); an array already in memory is passed as it is."""
    return {
        name: np.array(array) if isinstance(array, np.memmap) else np.asarray(array)
        for name, array in split.items()
    }


def split_by_permutation(arrays: dict[str, np.ndarray], test_fraction: float, seed: int) -> Dataset:
    """A reproducible random train/test split of ``arrays`` (the test split is never trained on),
    read into memory."""
    train_idx, test_idx = permutation_split(len(next(iter(arrays.values()))), test_fraction, seed)
    return Dataset(
        train={k: v[train_idx] for k, v in arrays.items()},
        test={k: v[test_idx] for k, v in arrays.items()},
    )


def permutation_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) example indices of `split_by_permutation`'s split of ``n`` examples."""
    order = np.random.default_rng(seed).permutation(n)
    num_test = int(round(n * test_fraction))
    if not 0 < num_test < n:
        raise UserError(
            f"a test fraction of {test_fraction} of {n} examples leaves an empty "
            f"train or test split"
        )
    return order[num_test:], order[:num_test]
