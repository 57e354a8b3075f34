"""``config.log.profile_steps = "A:B"``: a `jax.profiler` trace of steps A+1..B, in whole chunks
(``config.train.log_every`` steps each: the trace starts before the chunk holding step A+1 and
stops once the chunk holding step B has run), written to ``WORKDIR/profile`` (the first run's
workdir in a vmapped sweep). TensorBoard's profile plugin reads it (``tensorboard --logdir
WORKDIR/profile``), and ``WORKDIR/profile/plugins/profile/*/*.trace.json.gz`` opens in Perfetto
(ui.perfetto.dev). Tracing does not change what is computed."""

from typing import Any

import jax
import ml_collections
from etils import epath

from jaxlab.config.run_config import profile_range

PROFILE_DIR = "profile"


class Profiler:
    """Starts and stops the trace around the chunks of the range; a context manager that stops
    an unfinished trace (an interruption, an error) on the way out."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: epath.Path):
        self._range = profile_range(config)
        self._directory = workdir / PROFILE_DIR
        self._tracing = False

    def __enter__(self) -> "Profiler":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._tracing:
            jax.profiler.stop_trace()
            self._tracing = False

    def before(self, start: int) -> None:
        """Called before dispatching the chunk from step ``start``."""
        if self._range and not self._tracing and self._range[0] <= start < self._range[1]:
            jax.profiler.start_trace(str(self._directory), create_perfetto_trace=True)
            self._tracing = True

    def reached(self, step: int) -> None:
        """Called once the metrics of the chunk to step ``step`` are on the host: stops the trace
        once the range is covered."""
        if self._tracing and self._range and step >= self._range[1]:
            jax.profiler.stop_trace()
            self._tracing = False
