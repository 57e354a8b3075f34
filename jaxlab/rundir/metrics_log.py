"""Where metrics go: ``metrics.jsonl`` (one JSON object per logged step) and TensorBoard events.

``metrics.jsonl`` is the record; the TensorBoard event file is derived from it. On resume the lines
of steps after the restored step (and unreadable lines) are dropped, and the event files are
replaced by one new file that replays the kept lines: TensorBoard then shows each step once, in
order, however often the run was killed. Only process 0 writes.
"""

import json
import math
import socket
import struct
import time
import warnings
from typing import Any

import jax
import numpy as np
from etils import epath
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import masked_crc32c

from jaxlab import paths
from jaxlab.rundir.workdir import EVENTS_PREFIX, METRICS_FILE


def _plain(value: Any) -> Any:
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


class LogWarning(UserWarning):
    """Lines of ``metrics.jsonl`` were unreadable and are left out."""


def read_metrics(workdir: epath.Path, *, warn: bool = True) -> list[dict]:
    """The records of ``workdir/metrics.jsonl`` (empty when there is none), in order.

    A line that is not a JSON object with an integer ``step`` past the previous record's (what a
    power loss or a disk error leaves: NUL bytes, a line cut short) is left out, with a
    `LogWarning` naming it unless ``warn`` is false (for a file that another process is still
    appending to, whose last line may be half written).
    """
    path = workdir / METRICS_FILE
    if not path.exists():
        return []
    records: list[dict] = []
    dropped: list[int] = []
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        last_step = records[-1]["step"] if records else 0
        if (
            isinstance(record, dict)
            and isinstance(record.get("step"), int)
            and record["step"] > last_step
            and number < len(lines)
        ):
            records.append(record)
        else:
            dropped.append(number)
    if dropped and warn:
        warnings.warn(
            f"{path}: left out {len(dropped)} unreadable line(s) (line "
            f"{', '.join(map(str, dropped[:5]))}{', ...' if len(dropped) > 5 else ''}):"
            f" a torn write or a damaged file",
            LogWarning,
            stacklevel=2,
        )
    return records


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


def scalar_events(record: dict[str, Any], wall_time: float) -> bytes:
    """The finite scalars of one metrics record as one TensorBoard event at ``record["step"]``."""
    values = [
        Summary.Value(tag=name, simple_value=value)
        for name, value in record.items()
        if name != "step" and isinstance(value, (int, float)) and math.isfinite(value)
    ]
    if not values:
        return b""
    return _event_record(
        Event(wall_time=wall_time, step=record["step"], summary=Summary(value=values))
    )


class MetricsLog:
    """Appends records; ``latest`` holds the newest value of every metric logged so far.

    Started from ``kept``, the records of the run up to the step it resumes from (`read_metrics`,
    cut back): the files are rewritten to hold exactly those.
    """

    def __init__(self, workdir: epath.Path, kept: list[dict]):
        self.latest = {k: v for r in kept for k, v in r.items()}
        self._enabled = jax.process_index() == 0
        if not self._enabled:
            return
        self._metrics = paths.AppendFile(
            workdir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept).encode()
        )
        stale = sorted(workdir.glob(f"{EVENTS_PREFIX}*"))
        now = time.time()
        header = _event_record(Event(wall_time=now, file_version="brain.Event:2"))
        self._events = paths.AppendFile(
            workdir / f"{EVENTS_PREFIX}{int(now)}.{socket.gethostname()}.jaxlab",
            header + b"".join(scalar_events(r, now) for r in kept),
        )
        for path in stale:
            if path.name != self._events.path.name:
                path.unlink()

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.latest.update(record)
        if not self._enabled:
            return
        self._metrics.append((json.dumps(record) + "\n").encode())
        self._events.append(scalar_events(record, time.time()))

    def close(self) -> None:
        if self._enabled:
            self._metrics.close()
            self._events.close()
