"""The curves of `jaxlab report` and `jaxlab compare`: one panel per metric, where ``train/X``,
``eval/X`` and ``eval/ema/X`` share X's panel (eval solid, the parameters' EMA dotted, train
dashed), one colour per group of curves (a run, or a sweep's setting drawn as its mean over seeds
with a band of ± one sample standard deviation), the legend outside the panels, and a log axis
where a metric spans more than two decades."""

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath
from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone
from matplotlib.lines import Line2D

from jaxlab import paths

Series = tuple[list[int], list[float]]  # steps, values
STYLES: dict[str, Any] = {"eval": "-", "eval/ema": ":", "train": "--"}
LAST = ("learning_rate", "steps_per_s")  # the bookkeeping panels come after the metrics


def scalar_series(records: Sequence[Mapping]) -> dict[str, Series]:
    """metric name -> (steps, values) of every scalar metric in ``records`` (not their time)."""
    series: dict[str, Series] = {}
    for record in records:
        for name, value in record.items():
            if name not in ("step", "time") and isinstance(value, (int, float)):
                steps, values = series.setdefault(name, ([], []))
                steps.append(record["step"])
                values.append(float(value))
    return series


def mean_and_spread(runs: Sequence[Series]) -> tuple[Series, list[float]]:
    """The mean curve of ``runs`` at the steps all of them logged, and the sample standard
    deviation there (zeros for a single run)."""
    common = sorted(set.intersection(*(set(steps) for steps, _ in runs)))
    table = np.array([[dict(zip(*run))[step] for step in common] for run in runs])
    spread = table.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(common))
    return (common, table.mean(axis=0).tolist()), spread.tolist()


def _panel_of(metric: str) -> tuple[str, str]:
    """(panel, split): ``"eval/loss"`` -> ``("loss", "eval")``; ``"perf/steps_per_s"`` ->
    ``("steps_per_s", "perf")``."""
    split, _, name = metric.rpartition("/")
    return name, split


def palette(count: int) -> list:
    """``count`` distinguishable colours: tab10, or viridis beyond ten."""
    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    return [colormaps["viridis"](i / max(count - 1, 1)) for i in range(count)]


def plot_metrics(
    groups: Mapping[str, Mapping[str, Series]],
    path: epath.Path,
    title: str,
    spreads: Mapping[str, Mapping[str, list[float]]] | None = None,
    stopped: Collection[str] = (),
) -> None:
    """Writes the panels of the module docstring for ``groups`` (label -> metric -> series;
    ``spreads``: label -> metric -> the band's half-width at each of the series' steps); the
    curves of the ``stopped`` labels (runs a scheduler stopped) end in a cross."""
    panels: dict[str, list[str]] = {}
    for series in groups.values():
        for metric in series:
            panel, _ = _panel_of(metric)
            if metric not in panels.setdefault(panel, []):
                panels[panel].append(metric)
    names = sorted(panels, key=lambda p: (p in LAST, p != "loss", p))
    if not names:
        return
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.2 * cols + (2.5 if len(groups) > 1 else 0), 3.2 * rows + 0.6))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    colours = dict(zip(groups, palette(len(groups))))
    splits_used: set[str] = set()
    for ax, panel in zip(axes.flat, names):
        positive: list[float] = []
        for label, series in groups.items():
            for metric in panels[panel]:
                if metric not in series:
                    continue
                steps, values = series[metric]
                split = _panel_of(metric)[1]
                splits_used.add(split)
                ax.plot(
                    steps,
                    values,
                    STYLES.get(split, "-"),
                    color=colours[label],
                    marker=("o" if split == "eval" else ".") if len(steps) < 30 else None,
                    markersize=4,
                    alpha=0.6 if split == "train" else 0.95,
                )
                if label in stopped and steps:
                    ax.plot(steps[-1], values[-1], "x", color="k", markersize=7, zorder=3)
                band = (spreads or {}).get(label, {}).get(metric)
                if band is not None and any(band):
                    low = np.subtract(values, band)
                    high = np.add(values, band)
                    ax.fill_between(steps, low, high, color=colours[label], alpha=0.15, lw=0)
                positive.extend(v for v in values if np.isfinite(v))
        if positive and min(positive) > 0 and max(positive) / min(positive) > 100:
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    handles = [
        Line2D([], [], linestyle=STYLES[split], color="0.3", label=split)
        for split in STYLES
        if split in splits_used
    ]
    if stopped:
        handles.append(
            Line2D([], [], marker="x", color="k", ls="none", label="stopped by the scheduler")
        )
    if len(groups) > 1:
        handles += [Line2D([], [], color=colours[label], lw=2, label=label) for label in groups]
        fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    elif handles:
        axes.flat[0].legend(handles=handles, fontsize=7)
    fig.suptitle(title)
    paths.save_figure(fig, path)
