"""Datasets as in-memory arrays, and batches as a pure function of (key, step).

``config.data.loader`` references the function that loads a run's data (`load`); the built-in
loaders are ``jaxlab.data.digits:load``, ``jaxlab.data.toy2d:load``, ``jaxlab.data.mnist:load``,
``jaxlab.data.cifar10:load`` and ``jaxlab.data.arrays:load`` (your own ``.npz`` / ``.npy`` files).
"""

from collections.abc import Mapping

from jaxlab import references
from jaxlab.data.dataset import Dataset, in_memory, split_by_permutation, take
from jaxlab.data.sampling import batch_indices, sample_batch
from jaxlab.errors import UserError

__all__ = [
    "Dataset",
    "batch_indices",
    "in_memory",
    "load",
    "sample_batch",
    "split_by_permutation",
    "take",
]


def load(data_config: Mapping) -> Dataset:
    """Calls ``data_config.loader`` with the section's other keys as keyword arguments."""
    if "loader" not in data_config:
        raise UserError(
            "config.data has no loader: set config.data.loader to a reference such "
            "as 'jaxlab.data.digits:load' or 'my_data.py:load'"
        )
    dataset = references.call(data_config, "loader", "config.data")
    if not isinstance(dataset, Dataset):
        raise UserError(
            f"config.data.loader={data_config['loader']!r} returned a "
            f"{type(dataset).__name__}, expected a jaxlab.data.Dataset"
        )
    return dataset
