"""The ``wandb`` metric writer (the optional extra ``jaxlab[wandb]``): one Weights & Biases run
per jaxlab run, continued across resumes.

The W&B run's id and the newest step sent to it are kept in ``workdir/wandb.json``. A resumed run
opens the same W&B run (``resume="allow"``) and sends only the records past that step: the steps
a killed run had sent and then retrains are not sent again (jaxlab's resume is exact, so they
would be equal), and W&B shows each step once. W&B's own settings come from its environment
variables: ``WANDB_PROJECT`` (default ``jaxlab``), ``WANDB_ENTITY``, ``WANDB_MODE=offline`` (no
network; ``wandb sync WORKDIR/wandb/offline-run-*`` uploads later, into the same run). The run is
named after the workdir, grouped by the sweep when it is one of a sweep's runs, and given the
config.
"""

import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from etils import epath

from jaxlab import paths
from jaxlab.rundir.workdir import SWEEP_FILE

STATE_FILE = "wandb.json"  # {"id": the W&B run id, "step": the newest step sent}


class WandbWriter:
    def __init__(
        self, workdir: epath.Path, config: ml_collections.ConfigDict, kept: Sequence[dict]
    ):
        import wandb

        self._state_path = workdir / STATE_FILE
        state = _read_state(self._state_path) or {"id": uuid.uuid4().hex[:12], "step": 0}
        self._id, self._sent = state["id"], state["step"]
        sweep = workdir.parent if (workdir.parent / SWEEP_FILE).is_file() else None
        self._run = wandb.init(
            id=self._id,
            resume="allow",
            dir=os.fspath(workdir),
            project=os.environ.get("WANDB_PROJECT") or "jaxlab",
            name=workdir.name,
            group=sweep.name if sweep else None,
            config=config.to_dict(),
            reinit="create_new",  # the runs of a vmapped sweep share one process
            settings=wandb.Settings(console="off", silent=True),
        )
        for record in kept:  # those a killed run had not sent yet
            self.write(record)

    def write(self, record: Mapping[str, Any]) -> None:
        step = record["step"]
        if step <= self._sent:
            return
        values = {
            name: value
            for name, value in record.items()
            if name not in ("step", "time")
            and isinstance(value, (int, float))
            and math.isfinite(value)
        }
        self._run.log(values, step=step)
        self._sent = step
        paths.write_atomic(self._state_path, json.dumps({"id": self._id, "step": step}))

    def close(self) -> None:
        self._run.finish()


def _read_state(path: epath.Path) -> dict | None:
    """The kept id and step, or None where there is none (or it is damaged: a new W&B run)."""
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(state, dict) and isinstance(state.get("id"), str):
        if isinstance(state.get("step"), int):
            return state
    return None
