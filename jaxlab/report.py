"""``jaxlab report DIR``: for a run, its final metrics as a table and its curves as a PNG; for a
sweep, the runs' table sorted by a metric, that metric against each swept value (mean ± std over
seeds) and the training curves of all runs."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from etils import epath
from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.rundir.metrics_log import read_metrics
from jaxlab.rundir.workdir import (
    METRICS_FILE,
    METRICS_PLOT,
    SWEEP_CURVES_PLOT,
    SWEEP_FILE,
    SWEEP_METRIC_PLOT,
)
from jaxlab.sweep.results import DONE, collect, markdown_table, read_sweep, table_columns

SEED_KEY = "seed"


def scalar_series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """metric name -> (steps, values) for every scalar metric in ``records``."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)):
                steps, values = series.setdefault(name, ([], []))
                steps.append(record["step"])
                values.append(float(value))
    return series


def report(location: str, metric: str | None = None, descending: bool = False) -> str:
    """Writes the plots of a run or of a sweep (`sweep_report`) and returns a Markdown table."""
    workdir = paths.path(location, "workdir")
    if (workdir / SWEEP_FILE).is_file():
        return sweep_report(workdir, metric, descending)
    records = read_metrics(workdir)
    if not records:
        raise UserError(f"no metrics in {workdir / METRICS_FILE}: is {workdir} a jaxlab workdir?")
    series = scalar_series(records)
    plot_curves(series, workdir / METRICS_PLOT, title=str(workdir))
    rows = [
        f"| {name} | {steps[-1]} | {values[-1]:.4g} |"
        for name, (steps, values) in sorted(series.items())
    ]
    return "\n".join(
        [
            "| metric | step | value |",
            "|---|---|---|",
            *rows,
            "",
            f"curves: {workdir / METRICS_PLOT}",
        ]
    )


def plot_curves(
    series: dict[str, tuple[list[int], list[float]]], path: epath.Path, title: str
) -> None:
    """One small panel per metric, against the step."""
    names = sorted(series)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4 * cols, 3 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = series[name]
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    _save(fig, axes, len(names), title, path)


def sweep_report(sweep_dir: epath.Path, metric: str | None = None, descending: bool = False) -> str:
    """The sweep's table sorted by ``metric`` (default ``eval/loss``, else ``train/loss``;
    failed and pending runs last); writes `SWEEP_METRIC_PLOT` and `SWEEP_CURVES_PLOT`."""
    runs = read_sweep(sweep_dir)
    rows = collect(sweep_dir, runs)
    done = [row for row in rows if row["status"] == DONE]
    if not done:
        raise UserError(
            f"no finished runs in the sweep {sweep_dir} (statuses: "
            f"{', '.join(sorted({r['status'] for r in rows}))})"
        )
    available = sorted(
        {k for row in done for k, v in row.items() if "/" in k and isinstance(v, (int, float))}
    )
    metric = metric or next(
        (m for m in ("eval/loss", "train/loss") if m in available),
        available[0] if available else None,
    )
    if metric not in available:
        raise UserError(f"unknown metric {metric!r}; the runs have: {', '.join(available)}")
    sign = -1.0 if descending else 1.0
    ordered = sorted(
        rows,
        key=lambda r: (
            not _finite(r.get(metric)),
            sign * r[metric] if _finite(r.get(metric)) else 0.0,
        ),
    )
    swept = list(dict.fromkeys(k for overrides in runs.values() for k in overrides))
    plot_against_swept(done, swept, metric, sweep_dir / SWEEP_METRIC_PLOT)
    curves = {name: scalar_series(read_metrics(sweep_dir / name)) for name in runs}
    plot_sweep_curves(
        {n: c for n, c in curves.items() if c}, sweep_dir / SWEEP_CURVES_PLOT, title=str(sweep_dir)
    )
    order = "descending" if descending else "ascending"
    return "\n".join(
        [
            markdown_table(ordered, table_columns(ordered)),
            "",
            f"sorted by {metric} ({order}); {len(done)} of {len(rows)} runs done",
            f"plots: {sweep_dir / SWEEP_METRIC_PLOT}, {sweep_dir / SWEEP_CURVES_PLOT}",
        ]
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plot_against_swept(
    rows: Sequence[dict], swept: Sequence[str], metric: str, path: epath.Path
) -> None:
    """One panel per swept key (the seed only when nothing else is swept): ``metric`` against
    the key's values, mean ± std over the runs that differ only in the seed, one line for each
    setting of the other swept keys."""
    keys = [k for k in swept if k != SEED_KEY] or [SEED_KEY]
    fig = Figure(figsize=(4.5 * len(keys), 3.5))
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        others = [k for k in keys if k != key]
        lines: dict[tuple, dict[Any, list[float]]] = {}
        for row in rows:
            if _finite(row.get(metric)):
                label = tuple(row.get(k) for k in others)
                lines.setdefault(label, {}).setdefault(row.get(key), []).append(row[metric])
        for label, points in sorted(lines.items(), key=lambda item: str(item[0])):
            xs = sorted(
                points,
                key=lambda x: (
                    not isinstance(x, (int, float)),
                    str(x) if not isinstance(x, (int, float)) else x,
                ),
            )
            numeric = all(isinstance(x, (int, float)) for x in xs)
            positions = xs if numeric else list(range(len(xs)))
            means = [float(np.mean(points[x])) for x in xs]
            stds = [float(np.std(points[x])) for x in xs]
            name = ", ".join(f"{k}={v}" for k, v in zip(others, label)) or None
            ax.errorbar(positions, means, yerr=stds, marker="o", capsize=3, label=name)
            if not numeric:
                ax.set_xticks(positions, [str(x) for x in xs])
        if key != SEED_KEY and _log_scale(rows, key):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"final {metric}")
        ax.set_title(
            "mean ± std over seeds"
            if SEED_KEY in swept and key != SEED_KEY
            else f"{metric} per run"
        )
        ax.grid(alpha=0.3)
        if len(lines) > 1 and len(lines) <= 10:
            ax.legend(fontsize=7)
    fig.tight_layout()
    paths.save_figure(fig, path)


def _log_scale(rows: Sequence[dict], key: str) -> bool:
    """Positive numeric values spanning more than a factor 10 (learning rates) get a log axis."""
    values = [row.get(key) for row in rows]
    numbers = [v for v in values if isinstance(v, (int, float)) and v > 0]
    if not values or len(numbers) < len(values):
        return False
    return max(numbers) / min(numbers) > 10


def plot_sweep_curves(
    curves: dict[str, dict[str, tuple[list[int], list[float]]]], path: epath.Path, title: str
) -> None:
    """One panel per metric, one line per run."""
    names = sorted({metric for series in curves.values() for metric in series})
    if not names:
        return
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        for run, series in sorted(curves.items()):
            if name in series:
                steps, values = series[name]
                ax.plot(steps, values, label=run, alpha=0.8)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if len(curves) <= 10:
        axes.flat[0].legend(fontsize=6)
    _save(fig, axes, len(names), title, path)


def _save(fig, axes, used: int, title: str, path: epath.Path) -> None:
    """Blanks the unused panels, titles the figure and writes it to ``path``."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    paths.save_figure(fig, path)
