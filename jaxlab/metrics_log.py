"""Where metrics go: ``metrics.jsonl`` (one JSON object per logged step) and TensorBoard events.

Only process 0 writes. On resume, lines of steps after the restored step are dropped, so each step
appears once.
"""
import json
import math
import os
import pathlib
from typing import Any

import jax
import numpy as np
from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


def _plain(value: Any) -> Any:
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def read_metrics(workdir: pathlib.Path) -> list[dict]:
    """Every line of ``workdir/metrics.jsonl`` (empty when there is none).

    A last line without its newline (the process was killed while writing it) is left out.
    """
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    text = path.read_text()
    complete = text if text.endswith("\n") else text[:text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


class MetricsLog:
    """Appends records; ``latest`` holds the newest value of every metric logged so far."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self._path = pathlib.Path(workdir) / METRICS_FILE
        self._enabled = jax.process_index() == 0
        kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
        self.latest = {k: v for r in kept for k, v in r.items()}
        if not self._enabled:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self._path)
        self._file = self._path.open("a")
        self._tensorboard = SummaryWriter(str(workdir))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.latest.update(record)
        if not self._enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self._tensorboard.add_scalar(name, value, step)

    def close(self) -> None:
        if self._enabled:
            self._file.close()
            self._tensorboard.close()
