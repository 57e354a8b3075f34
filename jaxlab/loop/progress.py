"""What a run shows while it trains. On a terminal, tqdm's bar (steps/s, time left, the latest
loss and evaluation); in a Jupyter or Colab notebook its notebook bar (a text bar in the cell
where ipywidgets is missing). Off a terminal (a file, a pipe, nohup, SLURM, a pod's ssh command),
a line on stderr at each evaluation and at most every ``$JAXLAB_PROGRESS_SECONDS`` (default 30)
seconds between them::

    jaxlab: step 400/3000 (13%) 85.2 steps/s ETA 31s train/loss=0.1234 eval/accuracy=0.95

With ``quiet``, nothing."""

import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import tqdm

ENV_VAR = "JAXLAB_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (Jupyter, Colab, VS Code notebooks)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def bar(total: int, initial: int, *, shown: bool) -> tqdm.tqdm:
    """A progress bar of ``total`` steps starting at ``initial``; a disabled one unless
    ``shown`` and there is a terminal or a notebook to show it in."""
    settings = dict(total=total, initial=initial, unit="step")
    if shown and in_notebook():
        if importlib.util.find_spec("ipywidgets") is not None:  # the notebook bar's widgets
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(**settings)
        return tqdm.tqdm(**settings, file=sys.stderr, mininterval=0.5)
    return tqdm.tqdm(
        **settings, file=sys.stderr, dynamic_ncols=True, disable=not (shown and sys.stderr.isatty())
    )


class Progress:
    """The bar on a terminal or in a notebook, else the lines of the module docstring; nothing
    unless ``shown``. A context manager; `update` after each written chunk."""

    def __init__(self, total: int, initial: int, *, shown: bool):
        self.total = total
        self._bar = bar(total, initial, shown=shown)
        self._lines = shown and self._bar.disable
        self._interval = _seconds()
        self._start = (time.monotonic(), initial)
        self._since: tuple[float, int] | None = None  # after the first chunk (its compile)
        self._last_line = time.monotonic()
        self._latest: dict[str, Any] = {}

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bar.close()

    def update(self, step: int, train: Mapping[str, Any], evaluation: Mapping[str, Any]) -> None:
        """Step ``step`` reached with the chunk's ``train`` metrics and (at an evaluation) its
        ``evaluation`` metrics (``eval/...``)."""
        shown = _scalars(evaluation) if evaluation else _evaluations(self._latest)
        self._latest = {"train/loss": train["loss"], **shown}
        if not self._lines:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(
                {k.removeprefix("train/"): f"{float(v):.4g}" for k, v in self._latest.items()}
            )
            return
        now = time.monotonic()
        if evaluation or step == self.total or now - self._last_line >= self._interval:
            self._last_line = now
            print(self._line(step, now), file=sys.stderr, flush=True)
        if self._since is None:
            self._since = (now, step)

    def _line(self, step: int, now: float) -> str:
        """Steps/s since the first chunk ended (before it, since the start: compile included)."""
        start_time, start_step = (
            self._since if self._since and step > self._since[1] else self._start
        )
        rate = (step - start_step) / max(now - start_time, 1e-9)
        left = (
            f" ETA {_duration((self.total - step) / rate)}"
            if rate > 0 and step < self.total
            else ""
        )
        metrics = " ".join(f"{k}={float(v):.4g}" for k, v in self._latest.items())
        percent = 100 * step // self.total
        return f"jaxlab: step {step}/{self.total} ({percent}%) {rate:.1f} steps/s{left} {metrics}"


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics that are one number (a task may also evaluate arrays, e.g. a spectrum)."""
    return {k: v for k, v in metrics.items() if np.ndim(v) == 0}


def _evaluations(latest: Mapping[str, Any]) -> dict[str, Any]:
    """The latest evaluation's metrics, kept until the next one."""
    return {k: v for k, v in latest.items() if k.startswith("eval/")}


def _seconds() -> float:
    text = os.environ.get(ENV_VAR, "")
    try:
        return float(text) if text else DEFAULT_SECONDS
    except ValueError:
        warnings.warn(
            f"{ENV_VAR}={text!r} is not a number of seconds; using {DEFAULT_SECONDS:g}",
            stacklevel=2,
        )
        return DEFAULT_SECONDS


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
