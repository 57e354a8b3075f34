"""Where metrics go: ``metrics.jsonl``, the record (one JSON object per logged step, with its
wall-clock ``time``), and the metric writers of ``config.log.writers`` (`jaxlab.rundir.writers`),
which are derived from it. On resume the lines of steps after the restored step (and unreadable
lines) are dropped and the writers are opened with the kept records. Only process 0 writes.
"""

import json
import time
import warnings
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from jaxlab import paths
from jaxlab.rundir import writers
from jaxlab.rundir.workdir import METRICS_FILE


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


TIME = "time"  # a record's wall-clock time (unix seconds), not a metric


class MetricsLog:
    """Appends records; ``latest`` holds the newest value of every metric logged so far.

    Started from ``kept``, the records of the run up to the step it resumes from (`read_metrics`,
    cut back): ``metrics.jsonl`` is rewritten to hold exactly those, and the writers of ``config``
    are opened with them.
    """

    def __init__(self, workdir: epath.Path, config: ml_collections.ConfigDict, kept: list[dict]):
        self.latest = {k: v for r in kept for k, v in r.items() if k != TIME}
        self._enabled = jax.process_index() == 0
        if not self._enabled:
            return
        self._metrics = paths.AppendFile(
            workdir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept).encode()
        )
        self._writers: list[writers.MetricWriter] = []
        try:
            for name in writers.names(config):
                self._writers.append(writers.open_one(name, workdir, config, kept))
        except BaseException:
            self.close()
            raise

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        """Records ``metrics`` at ``step``, stamped with the time."""
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.latest.update(record)
        if not self._enabled:
            return
        record[TIME] = round(time.time(), 3)
        self._metrics.append((json.dumps(record) + "\n").encode())
        for writer in self._writers:
            writer.write(record)

    def close(self) -> None:
        if self._enabled:
            self._metrics.close()
            for writer in self._writers:
                writer.close()
