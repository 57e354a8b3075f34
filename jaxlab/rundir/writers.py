"""Metric writers: where a run's records go besides ``metrics.jsonl``, named in
``config.log.writers`` (comma-separated; default ``tensorboard``).

A writer is made by a factory ``(workdir, config, kept) -> MetricWriter``: ``kept`` are the
records the run had up to the step it starts from (empty for a new run; after a resume, those up
to the restored checkpoint's step). It then receives each new record (`MetricWriter.write`) and is
closed when the run stops. A record is ``{"step": int, "time": unix seconds, name: value, ...}``;
values are numbers or nested lists of numbers (a task may record arrays). Only process 0 writes.

The built-in writers are ``tensorboard`` (`jaxlab.rundir.tensorboard`) and ``wandb``
(`jaxlab.rundir.wandb_writer`, the optional extra ``jaxlab[wandb]``); `register` adds another.
"""

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import ml_collections
from etils import epath

from jaxlab.errors import UserError
from jaxlab.rundir import tensorboard, wandb_writer


class MetricWriter(Protocol):
    """Receives a run's records (module docstring)."""

    def write(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


WriterFactory = Callable[[epath.Path, ml_collections.ConfigDict, Sequence[dict]], MetricWriter]

_FACTORIES: dict[str, WriterFactory] = {}
_NEEDS: dict[str, str] = {}  # writer name -> the module it imports, to refuse it up front


def register(name: str, factory: WriterFactory, *, needs: str = "") -> None:
    """Makes ``name`` selectable in ``config.log.writers``. ``needs``: a module the factory
    imports, checked when a run starts (one error line naming it instead of a traceback)."""
    _FACTORIES[name] = factory
    if needs:
        _NEEDS[name] = needs


def names(config: ml_collections.ConfigDict) -> list[str]:
    """The writers ``config.log.writers`` names, each checked to exist and to be importable."""
    chosen = [name.strip() for name in config.log.writers.split(",") if name.strip()]
    for name in chosen:
        if name not in _FACTORIES:
            raise UserError(
                f"config.log.writers names an unknown writer {name!r}; known: "
                f"{', '.join(sorted(_FACTORIES))} (jaxlab.rundir.writers.register adds one)"
            )
        module = _NEEDS.get(name)
        if module and importlib.util.find_spec(module) is None:
            raise UserError(
                f"config.log.writers names {name!r}, which needs the {module} package: "
                f"pip install 'jaxlab[{name}]'"
            )
    return list(dict.fromkeys(chosen))


def open_one(
    name: str, workdir: epath.Path, config: ml_collections.ConfigDict, kept: Sequence[dict]
) -> MetricWriter:
    """The writer ``name``, opened on ``workdir`` with the ``kept`` records."""
    return _FACTORIES[name](workdir, config, kept)


register("tensorboard", tensorboard.TensorBoardWriter)
register("wandb", wandb_writer.WandbWriter, needs="wandb")
