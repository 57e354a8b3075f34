"""Where metrics go: ``metrics.jsonl`` (one JSON object per logged step) and TensorBoard events.

``metrics.jsonl`` is the record; the TensorBoard event file is derived from it. On resume the
lines of steps after the restored step are dropped, and the event files are replaced by one new
file that replays the kept lines: TensorBoard then shows each step once, in order, however often
the run was killed. Only process 0 writes.
"""
import json
import math
import socket
import struct
import time
from typing import Any

import jax
import numpy as np
from etils import epath
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import masked_crc32c

from jaxlab import paths
from jaxlab.workdir import EVENTS_PREFIX, METRICS_FILE


def _plain(value: Any) -> Any:
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def read_metrics(workdir: epath.Path) -> list[dict]:
    """Every line of ``workdir/metrics.jsonl`` (empty when there is none).

    A last line without its newline (the process was killed while writing it) is left out.
    """
    path = workdir / METRICS_FILE
    if not path.exists():
        return []
    text = path.read_text()
    complete = text if text.endswith("\n") else text[:text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _event_record(event: Event) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the serialised event, its masked CRC-32C."""
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc32c(header)) + data
            + struct.pack("<I", masked_crc32c(data)))


def scalar_events(record: dict[str, Any], wall_time: float) -> bytes:
    """The finite scalars of one metrics record as one TensorBoard event at ``record["step"]``."""
    values = [Summary.Value(tag=name, simple_value=value) for name, value in record.items()
              if name != "step" and isinstance(value, (int, float)) and math.isfinite(value)]
    if not values:
        return b""
    return _event_record(Event(wall_time=wall_time, step=record["step"],
                               summary=Summary(value=values)))


class MetricsLog:
    """Appends records; ``latest`` holds the newest value of every metric logged so far."""

    def __init__(self, workdir: epath.Path, resume_step: int):
        kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
        self.latest = {k: v for r in kept for k, v in r.items()}
        self._enabled = jax.process_index() == 0
        if not self._enabled:
            return
        self._metrics = paths.AppendFile(
            workdir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept).encode())
        stale = sorted(workdir.glob(f"{EVENTS_PREFIX}*"))
        now = time.time()
        header = _event_record(Event(wall_time=now, file_version="brain.Event:2"))
        self._events = paths.AppendFile(
            workdir / f"{EVENTS_PREFIX}{int(now)}.{socket.gethostname()}.jaxlab",
            header + b"".join(scalar_events(r, now) for r in kept))
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
