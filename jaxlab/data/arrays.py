"""Your own arrays, from ``.npz`` / ``.npy`` files on a local or remote path (never unpickled).

`load` (``config.data.loader = "jaxlab.data.arrays:load"``) reads a train and a test split, each
a ``.npz`` or ``.npy`` file, a directory of ``.npy`` files or an ``.array_record`` file.
"""

import os
import zipfile
from typing import Any

import numpy as np

from jaxlab import paths
from jaxlab.data import records
from jaxlab.data.dataset import Dataset, split_by_permutation
from jaxlab.errors import UserError

NPZ_MAGIC, NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"  # a zip archive; numpy's array format


def load(
    train: str = "",
    test: str = "",
    test_fraction: float = 0.0,
    split_seed: int = 0,
    keys: tuple = (),
) -> Dataset:
    if not train:
        raise UserError(
            "config.data.train is not set: give the path of a .npz file, a .npy file "
            "or a directory of .npy files"
        )
    if test and test_fraction:
        raise UserError(
            f"config.data.test={test!r} and config.data.test_fraction="
            f"{test_fraction} both set the test split; set one of them"
        )
    if not test and not 0.0 < test_fraction < 1.0:
        raise UserError(
            f"without config.data.test, config.data.test_fraction must be in (0, 1), "
            f"got {test_fraction}"
        )
    train_arrays = read_split(train, "config.data.train", keys)
    if not test:
        return split_by_permutation(train_arrays, test_fraction, split_seed)
    return paired(train_arrays, read_split(test, "config.data.test", keys), f"{test!r}")


def paired(train_arrays, test_arrays, test_name: str) -> Dataset:
    """The dataset of two splits, checked to hold the same arrays, of the same example shapes
    and dtypes."""
    if set(test_arrays) != set(train_arrays):
        raise UserError(
            f"the test split {test_name} holds the arrays {_names(test_arrays)}, the "
            f"train split {_names(train_arrays)}: both need the same names"
        )
    for name, array in train_arrays.items():
        other = test_arrays[name]
        if (other.shape[1:], other.dtype) != (array.shape[1:], array.dtype):
            raise UserError(
                f"array {name!r}: examples of shape {array.shape[1:]} and dtype "
                f"{array.dtype} in the train split but {other.shape[1:]} and "
                f"{other.dtype} in the test split"
            )
    return Dataset(train=train_arrays, test=test_arrays)


def read_split(location: str, what: str, keys: tuple = ()) -> dict[str, np.ndarray]:
    """The arrays of one split (see docs/modules.md), checked."""
    source = paths.path(location, what)
    arrays: Any  # a dict of arrays, or a RecordSplit read on demand
    if source.is_dir():
        files = sorted(source.glob("*.npy"))
        if not files:
            raise UserError(f"{what}: the directory {source} holds no .npy files")
        arrays = {file.stem: _read(file, what) for file in files}
    elif not source.exists():
        raise UserError(f"{what}: {source} does not exist")
    elif source.suffix == records.SUFFIX:
        arrays = records.RecordSplit(source, what, keys)
    elif source.suffix in (".npz", ".npy"):
        arrays = _read(source, what)
        if source.suffix == ".npy":
            arrays = {source.stem: arrays}
    else:
        raise UserError(
            f"{what}: {source} is not a .npz file, a .npy file, a directory of "
            f".npy files or an {records.SUFFIX} file"
        )
    if keys and not isinstance(arrays, records.RecordSplit):
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise UserError(
                f"config.data.keys names {', '.join(map(repr, missing))}, which "
                f"{source} does not hold (it holds {_names(arrays)})"
            )
        arrays = {k: arrays[k] for k in keys}
    _check_examples(arrays, source, what)
    return arrays


def _read(file, what: str):
    """A .npy file's array, or a .npz file's dict of arrays."""
    magic = NPZ_MAGIC if file.suffix == ".npz" else NPY_MAGIC
    try:
        with file.open("rb") as handle:
            if handle.read(len(magic)) != magic:
                raise UserError(
                    f"{what}: {file} is not a {file.suffix} file (it does not start "
                    f"with the format's signature)"
                )
            handle.seek(0)
            if file.suffix == ".npy" and not paths.is_remote(file):  # read lazily, page by page
                return np.load(os.fspath(file), mmap_mode="r", allow_pickle=False)
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return {name: loaded[name] for name in loaded.files}
            return loaded
    except UserError:
        raise
    except ValueError as error:
        if "Object arrays cannot be loaded" in str(error) or "Python objects" in str(error):
            raise UserError(
                f"{what}: {file} holds an object array (dtype=object), which could "
                f"only be read by unpickling it; save numeric arrays instead"
            ) from None
        raise UserError(f"{what}: {file} is not a readable {file.suffix} file: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{what}: {file} is not a readable {file.suffix} file: {error}") from None


def _check_examples(arrays: dict[str, np.ndarray], source, what: str) -> None:
    if not arrays:
        raise UserError(f"{what}: {source} holds no arrays")
    for name, array in arrays.items():
        if array.ndim == 0:
            raise UserError(
                f"{what}: array {name!r} of {source} is a scalar; arrays need a "
                f"leading example axis"
            )
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise UserError(
            f"{what}: the arrays of {source} differ in their number of examples "
            f"({shown}); every array needs one row per example"
        )
    if not next(iter(lengths.values())):
        raise UserError(f"{what}: the arrays of {source} hold no examples")


def _names(arrays: dict) -> str:
    return ", ".join(sorted(arrays)) or "(none)"
