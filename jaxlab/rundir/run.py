"""What one run owns on the host, apart from its state on the device (`jaxlab.loop.program`):
its workdir, checkpoints and metrics log, the step its state has reached, its newest saved step,
and why it stopped if it diverged; and how it ended (`Outcome`)."""

import contextlib
import dataclasses
import warnings
from typing import Any

import jax
import ml_collections
from etils import epath

from jaxlab.errors import NonFiniteError
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.checkpoint import Checkpoints
from jaxlab.rundir.metrics_log import LogWarning, MetricsLog, read_metrics
from jaxlab.rundir.workdir import CHECKPOINT_DIR, METRICS_FILE

DONE, FAILED = "done", "failed"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a run ended: `DONE` with its final metrics, or `FAILED` (NaN/Inf) with the metrics
    of the step that failed (and ``step``) and the error."""

    status: str
    metrics: dict[str, Any]
    error: str = ""


class Run:
    """One run's host side, opened on its workdir (locked by the caller, `workdir.claim`):
    `restore`, then `start`; then `record`, `save` and `fail` as it trains."""

    def __init__(
        self, workdir: epath.Path, config: ml_collections.ConfigDict, stack: contextlib.ExitStack
    ):
        self.workdir, self.config, self._stack = workdir, config, stack
        self.checkpoints = stack.enter_context(
            Checkpoints(workdir / CHECKPOINT_DIR, keep=config.train.keep_checkpoints, owner=True)
        )
        self.step = 0  # the step the run's state has reached
        self.saved: int | None = None  # its newest saved step
        self.restored = 0  # the step it resumed from
        self.failure: NonFiniteError | None = None  # why it stopped, if it diverged
        self._logged = read_metrics(workdir)
        self.log: MetricsLog | None = None

    @property
    def live(self) -> bool:
        """Whether the run has steps left to train and has not diverged."""
        return self.failure is None and self.step < self.config.train.steps

    def restore(self, template: Any) -> Any | None:
        """The state of the newest readable checkpoint that the metrics log covers (``template``
        gives its structure and shardings), or None when there is none: the run starts anew."""
        newest = self._logged[-1]["step"] if self._logged else None
        restored = self.checkpoints.restore_latest(template, newest=newest)
        if restored is None:
            return None
        self.step, state = restored
        self.saved = self.restored = self.step
        return state

    def start(self) -> None:
        """Writes ``config.json`` and opens the metrics log, cut back to the restored step."""
        workdir_lib.write_config(self.workdir, self.config)
        last = self._logged[-1]["step"] if self._logged else 0
        if self.step and last < self.step:
            warnings.warn(
                f"{self.workdir / METRICS_FILE} records no step after {last}, and no checkpoint "
                f"it covers reads: the records up to step {self.step} are lost (the training is "
                f"not: it resumes from step {self.step})",
                LogWarning,
                stacklevel=2,
            )
        kept = [record for record in self._logged if record["step"] <= self.step]
        self.log = self._stack.enter_context(
            contextlib.closing(MetricsLog(self.workdir, self.config, kept))
        )

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        """Writes the record of ``step`` (fetching values still on the device), keys in order."""
        assert self.log is not None, "start() opens the log"
        self.log.write(step, {name: jax.device_get(value) for name, value in metrics.items()})

    def save(self, state: Any) -> None:
        """Hands a checkpoint of the run's state at its step to Orbax (written asynchronously)."""
        self.checkpoints.save(self.step, state)
        self.saved = self.step

    def fail(self, error: NonFiniteError) -> None:
        """The run diverged: it is neither updated nor saved from now on."""
        self.failure = error

    def outcome(self, wall_time: float) -> Outcome:
        """`DONE` with the final metrics (and ``wall_time``, unless the run had finished before
        this session), or `FAILED` with the failing step's metrics."""
        if self.failure is not None:
            metrics = {**self.failure.metrics, "step": self.failure.step}
            return Outcome(FAILED, metrics, str(self.failure))
        assert self.log is not None
        if self.restored >= self.config.train.steps:  # finished before: no time to report
            return Outcome(DONE, {**self.log.latest, "step": self.step})
        return Outcome(DONE, {**self.log.latest, "step": self.step, "wall_time_s": wall_time})

    @property
    def latest(self) -> dict[str, Any]:
        """The newest recorded value of each metric, and the step of the newest record."""
        assert self.log is not None
        return self.log.latest

    @property
    def last_recorded(self) -> int | None:
        """The step of the newest record."""
        return self.latest.get("step")
