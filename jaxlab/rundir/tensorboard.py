"""The ``tensorboard`` metric writer: one event file per run, derived from the records.

Opened, it replaces the workdir's event files by one that holds the config (as text, and as
hyperparameters for TensorBoard's HParams plugin) and replays the kept records at their recorded
wall times: TensorBoard then shows each step once, in order, on a time axis without jumps, however
often the run was killed and resumed.
"""

import json
import math
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from etils import epath
from tensorboardX import summary
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import masked_crc32c

from jaxlab import config as config_lib
from jaxlab import paths
from jaxlab.rundir.workdir import EVENTS_PREFIX

CONFIG_TAG = "config"


def _event_record(event: Event) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the serialised event, its masked CRC-32C."""
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def scalar_events(record: Mapping[str, Any]) -> bytes:
    """The finite scalars of one record as one event at its step and wall time."""
    values = [
        Summary.Value(tag=name, simple_value=value)
        for name, value in record.items()
        if name not in ("step", "time") and isinstance(value, (int, float)) and math.isfinite(value)
    ]
    if not values:
        return b""
    wall_time = record.get("time", time.time())
    return _event_record(
        Event(wall_time=wall_time, step=record["step"], summary=Summary(value=values))
    )


def config_events(config: ml_collections.ConfigDict, wall_time: float) -> bytes:
    """The config as a text summary (JSON in a code block) and its scalar leaves as the
    session's hyperparameters (HParams plugin; the metrics are the run's scalar tags)."""
    text = "```\n" + config_lib.to_json(config) + "\n```"
    flat = config_lib.flatten(json.loads(config_lib.to_json(config)))
    hyperparameters = {k: v for k, v in flat.items() if isinstance(v, (str, bool, int, float))}
    _, session_start, _ = summary.hparams(hyperparameters, {})
    return b"".join(
        _event_record(Event(wall_time=wall_time, step=0, summary=s))
        for s in (summary.text(CONFIG_TAG, text), session_start)
    )


class TensorBoardWriter:
    """Writes ``events.out.tfevents.*`` in the workdir (module docstring)."""

    def __init__(
        self, workdir: epath.Path, config: ml_collections.ConfigDict, kept: Sequence[dict]
    ):
        stale = sorted(workdir.glob(f"{EVENTS_PREFIX}*"))
        start = kept[0].get("time", time.time()) if kept else time.time()
        header = _event_record(Event(wall_time=start, file_version="brain.Event:2"))
        self._events = paths.AppendFile(
            workdir / f"{EVENTS_PREFIX}{int(time.time())}.{socket.gethostname()}.jaxlab",
            header + config_events(config, start) + b"".join(scalar_events(r) for r in kept),
        )
        for path in stale:
            if path.name != self._events.path.name:
                path.unlink()

    def write(self, record: Mapping[str, Any]) -> None:
        self._events.append(scalar_events(record))

    def close(self) -> None:
        self._events.close()
