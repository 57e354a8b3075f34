"""CIFAR-10 from the batch files of its *binary* distribution in a directory.

`load` (``config.data.loader = "jaxlab.data.cifar10:load"``) returns images ``x`` and labels
``label`` of the 50,000/10,000 train/test split, every batch file checked first.
"""

import numpy as np
from etils import epath

from jaxlab import paths
from jaxlab.data.dataset import Dataset
from jaxlab.errors import UserError

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
SIDE, CHANNELS = 32, 3
RECORD_BYTES = 1 + SIDE * SIDE * CHANNELS
RECORDS_PER_BATCH = 10_000  # in every batch file of the distribution
SUBDIRECTORY = "cifar-10-batches-bin"


def load(directory: str = "data/cifar10") -> Dataset:
    root = paths.path(directory, "config.data.directory")
    expected = ", ".join(TRAIN_FILES + TEST_FILES)
    if not root.is_dir():
        raise UserError(
            f"CIFAR-10 directory {root} does not exist; expected it to hold the binary "
            f"version's files {expected} (set config.data.directory)"
        )
    if (root / SUBDIRECTORY).is_dir():
        root = root / SUBDIRECTORY
    missing = [name for name in TRAIN_FILES + TEST_FILES if not (root / name).is_file()]
    if missing:
        raise UserError(
            f"CIFAR-10 files missing from {root}: {', '.join(missing)}; expected the "
            f"binary version's files {expected} (not the Python version's pickles)"
        )
    return Dataset(
        train=_read_batches([root / n for n in TRAIN_FILES]),
        test=_read_batches([root / n for n in TEST_FILES]),
    )


def _read_batches(files: list[epath.Path]) -> dict[str, np.ndarray]:
    records_KR = np.concatenate([_read_records(file) for file in files])
    images = records_KR[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)
    return {"x": np.ascontiguousarray(images), "label": records_KR[:, 0].astype(np.int32)}


def _read_records(path: epath.Path) -> np.ndarray:
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size % RECORD_BYTES:
        raise UserError(
            f"{path} is truncated or not a CIFAR-10 binary batch: {raw.size} bytes is "
            f"not a multiple of the {RECORD_BYTES}-byte record"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    if len(records) != RECORDS_PER_BATCH:
        raise UserError(
            f"{path} holds {len(records):,} records, expected {RECORDS_PER_BATCH:,} "
            f"({RECORDS_PER_BATCH * RECORD_BYTES:,} bytes) as every CIFAR-10 binary "
            f"batch does"
        )
    if records[:, 0].max() > 9:
        raise UserError(
            f"{path} is not a CIFAR-10 binary batch: label byte {records[:, 0].max()} "
            f"is not in 0..9"
        )
    return records
