"""Datasets as in-memory arrays, and batches as a pure function of (key, step).

``config.data.loader`` references the function that loads a run's data (`load`); the built-in
loaders are ``jaxlab.data.digits:load``, ``jaxlab.data.toy2d:load``, ``jaxlab.data.mnist:load``,
``jaxlab.data.cifar10:load`` and ``jaxlab.data.arrays:load`` (your own ``.npz`` / ``.npy`` files).
"""

import contextlib
import contextvars
from collections.abc import Iterator, Mapping

from jaxlab.config import references
from jaxlab.data.dataset import Dataset, in_memory, split_by_permutation, take
from jaxlab.data.sampling import batch_indices, sample_batch
from jaxlab.errors import UserError

__all__ = [
    "Dataset",
    "batch_indices",
    "in_memory",
    "load",
    "reusing",
    "sample_batch",
    "split_by_permutation",
    "take",
]


_REUSED: contextvars.ContextVar[tuple[dict, Dataset] | None] = contextvars.ContextVar(
    "reused", default=None
)


def _plain(section: Mapping) -> dict:
    to_dict = getattr(section, "to_dict", None)
    return to_dict() if to_dict is not None else dict(section)


@contextlib.contextmanager
def reusing(data_config: Mapping, dataset: Dataset) -> Iterator[None]:
    """Within it, `load` of a section equal to ``data_config`` returns ``dataset``, loaded before
    (a vmapped sweep builds each trial's task inside its trace: the data is loaded once)."""
    token = _REUSED.set((_plain(data_config), dataset))
    try:
        yield
    finally:
        _REUSED.reset(token)


def load(data_config: Mapping) -> Dataset:
    """Calls ``data_config.loader`` with the section's other keys as keyword arguments."""
    reused = _REUSED.get()
    if reused is not None and reused[0] == _plain(data_config):
        return reused[1]
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
