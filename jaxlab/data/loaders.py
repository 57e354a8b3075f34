"""``config.data.name`` -> a module ``jaxlab.data.<name>`` whose ``load(**kwargs)`` gives a Dataset."""
import importlib
import inspect
import pkgutil

import ml_collections

import jaxlab.data
from jaxlab.data.dataset import Dataset
from jaxlab.errors import UserError

_NOT_LOADERS = {"dataset", "sampling", "loaders"}


def load(data_config: ml_collections.ConfigDict) -> Dataset:
    """Loads the dataset that ``data_config`` names, with its other keys as arguments."""
    names = sorted(m.name for m in pkgutil.iter_modules(jaxlab.data.__path__)
                   if m.name not in _NOT_LOADERS)
    if data_config.name not in names:
        raise UserError(f"unknown dataset {data_config.name!r}; known datasets: {', '.join(names)}")
    kwargs = {k: v for k, v in data_config.items() if k != "name"}
    load_fn = importlib.import_module(f"jaxlab.data.{data_config.name}").load
    accepted = inspect.signature(load_fn).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(f"dataset {data_config.name!r} does not take config.data."
                        f"{', config.data.'.join(unknown)}; it takes: {', '.join(accepted) or '-'}")
    return load_fn(**kwargs)
