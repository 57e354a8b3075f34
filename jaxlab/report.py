"""``jaxlab report DIR``: for a run, its final metrics as a table and its curves as a PNG; for a
sweep, the runs' table sorted by a metric with the mean ± std over seeds of each setting, that
metric against each swept value, and the curves of each setting (`jaxlab.plots`); for a
population-based training, also each run's hyperparameter schedule and lineage."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath
from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

from jaxlab import paths, plots
from jaxlab.errors import UserError
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.metrics_log import read_metrics
from jaxlab.rundir.workdir import (
    METRICS_FILE,
    METRICS_PLOT,
    SWEEP_CURVES_PLOT,
    SWEEP_FILE,
    SWEEP_LINEAGE_PLOT,
    SWEEP_METRIC_PLOT,
)
from jaxlab.sweep.pbt import read_lineage
from jaxlab.sweep.plan import Point
from jaxlab.sweep.results import (
    DONE,
    SEED_KEY,
    STOPPED,
    collect,
    markdown_table,
    read_result,
    read_sweep,
    seed_means_table,
    setting_label,
    settings,
    table_columns,
)


def report(location: str, metric: str | None = None, descending: bool = False) -> str:
    """Writes the plots of a run or of a sweep (`sweep_report`) and returns a Markdown table."""
    workdir = paths.path(location, "workdir")
    if (workdir / SWEEP_FILE).is_file():
        return sweep_report(workdir, metric, descending)
    records = read_metrics(workdir)
    if not records:
        raise UserError(f"no metrics in {workdir / METRICS_FILE}: is {workdir} a jaxlab workdir?")
    series = plots.scalar_series(records)
    plots.plot_metrics({workdir.name: series}, workdir / METRICS_PLOT, title=run_title(workdir))
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


def run_title(workdir: epath.Path) -> str:
    """``NAME (EXPERIMENT)``: the run's directory name and the experiment its config names."""
    tree = workdir_lib.read_config_tree(workdir) or {}
    experiment = tree.get("experiment")
    return f"{workdir.name} ({experiment})" if experiment else workdir.name


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
    stopped = [row for row in rows if row["status"] == STOPPED]
    if stopped:  # a scheduler's search: each run's value at the step it reached
        plot_search([*done, *stopped], swept, metric, sweep_dir / SWEEP_METRIC_PLOT)
    else:
        plot_against_swept(done, swept, metric, sweep_dir / SWEEP_METRIC_PLOT)
    plot_sweep_curves(sweep_dir, runs, sweep_dir / SWEEP_CURVES_PLOT)
    plotted = [sweep_dir / SWEEP_METRIC_PLOT, sweep_dir / SWEEP_CURVES_PLOT]
    lineages = {name: read_lineage(sweep_dir / name) for name in runs}
    if any(lineages.values()):
        plot_lineage(lineages, sweep_dir / SWEEP_LINEAGE_PLOT)
        plotted.append(sweep_dir / SWEEP_LINEAGE_PLOT)
    order = "descending" if descending else "ascending"
    means = seed_means_table(rows, swept)
    return "\n".join(
        [
            markdown_table(ordered, table_columns(ordered)),
            "",
            f"sorted by {metric} ({order}); {len(done)} of {len(rows)} runs done",
            *_best(ordered, runs, metric, lineages),
            *(["", means] if means else []),
            f"plots: {', '.join(map(str, plotted))}",
        ]
    )


def _best(
    ordered: Sequence[dict],
    runs: Mapping[str, Point],
    metric: str,
    lineages: Mapping[str, list[dict]],
) -> list[str]:
    """The line naming the best finished run by ``metric`` with its overrides, and for a run
    of a population-based training a line with its schedule."""
    best = next((r for r in ordered if r["status"] == DONE and _finite(r.get(metric))), None)
    if best is None:
        return []
    overrides = " ".join(f"--config.{k}={v}" for k, v in runs[best["run"]].items())
    lines = [f"best: {best['run']} ({metric}={best[metric]:.6g}): {overrides}"]
    if lineage := lineages.get(best["run"]):
        changes = [
            f"step {entry['step']}"
            + (f" from {entry['parent']}" if entry["parent"] else "")
            + ": "
            + ", ".join(f"{k}={v:.6g}" for k, v in entry["values"].items())
            for index, entry in enumerate(lineage)
            if index == 0 or entry["parent"] or entry["values"] != lineage[index - 1]["values"]
        ]
        lines.append(f"its schedule (population-based training): {'; '.join(changes)}")
    return lines


def _order(value: Any) -> tuple[bool, float, str]:
    """A sort key putting numbers first, in order, then the rest by their text."""
    numeric = isinstance(value, (int, float))
    return (not numeric, float(value) if numeric else 0.0, "" if numeric else str(value))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plot_against_swept(
    rows: Sequence[dict], swept: Sequence[str], metric: str, path: epath.Path
) -> None:
    """One panel per swept key (the seed only when nothing else is swept): ``metric`` against
    the key's values, mean ± sample std over the runs that differ only in the seed, one line for
    each setting of the other swept keys; a log axis for positive values spanning a factor 10."""
    keys = settings(swept) or [SEED_KEY]
    fig = Figure(figsize=(4.5 * len(keys) + 2, 3.6))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        others = [k for k in keys if k != key]
        lines: dict[str, dict[Any, list[float]]] = {}
        for row in rows:
            if _finite(row.get(metric)):
                label = setting_label(row, others) if others else ""
                lines.setdefault(label, {}).setdefault(row.get(key), []).append(row[metric])
        for label, points in sorted(lines.items()):
            xs = sorted(points, key=_order)
            numeric = all(isinstance(x, (int, float)) for x in xs)
            positions = xs if numeric else list(range(len(xs)))
            means = [float(np.mean(points[x])) for x in xs]
            stds = [float(np.std(points[x], ddof=1)) if len(points[x]) > 1 else 0.0 for x in xs]
            ax.errorbar(positions, means, yerr=stds, marker="o", capsize=3, label=label or None)
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
        if len(lines) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.suptitle(f"{path.parent.name}: final {metric}")
    paths.save_figure(fig, path)


def plot_search(rows: Sequence[dict], swept: Sequence[str], metric: str, path: epath.Path) -> None:
    """One panel per swept key: each run's ``metric`` at the last step it reached (its rung, for
    a run a scheduler stopped), coloured by that step; log axes as in `plot_against_swept`."""
    keys = [k for k in swept if k != SEED_KEY] or [SEED_KEY]
    reached = sorted({row["step"] for row in rows})
    colours = dict(zip(reached, plots.palette(len(reached))))
    fig = Figure(figsize=(4.5 * len(keys) + 2, 3.6), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for step in reached:
            points = [
                (row[key], row[metric])
                for row in rows
                if row["step"] == step and _finite(row.get(metric)) and _finite(row.get(key))
            ]
            if points:
                xs, ys = zip(*points)
                final = step == reached[-1]
                label = f"step {step} ({'done' if final else 'stopped'})"
                marker = "o" if final else "x"
                ax.scatter(xs, ys, color=colours[step], marker=marker, label=label)
        if _log_scale(rows, key):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{path.parent.name}: {metric} at the step each run reached")
    paths.save_figure(fig, path)


def _log_scale(rows: Sequence[dict], key: str) -> bool:
    """Positive numeric values spanning a factor 10 or more (learning rates) get a log axis."""
    values = [row.get(key) for row in rows]
    numbers = [v for v in values if isinstance(v, (int, float)) and v > 0]
    if not values or len(numbers) < len(values):
        return False
    return max(numbers) / min(numbers) >= 10


def plot_sweep_curves(sweep_dir: epath.Path, runs: Mapping[str, Point], path: epath.Path) -> None:
    """The curves of each setting of the swept keys but the seed: mean over its runs' seeds,
    with a band of ± one sample std (`jaxlab.plots.plot_metrics`); a cross ends the curves of a
    setting whose runs a scheduler stopped, at the rung where it stopped them."""
    keys = settings(list(dict.fromkeys(k for overrides in runs.values() for k in overrides)))
    by_setting: dict[str, list[dict[str, plots.Series]]] = {}
    statuses: dict[str, set[str]] = {}
    ordered = sorted(runs.items(), key=lambda item: [_order(item[1].get(k)) for k in keys])
    for name, overrides in ordered:  # the legend in the order of the values
        series = plots.scalar_series(read_metrics(sweep_dir / name))
        if series:
            label = setting_label(overrides, keys)
            by_setting.setdefault(label, []).append(series)
            statuses.setdefault(label, set()).add(read_result(sweep_dir / name)["status"])
    groups: dict[str, dict[str, plots.Series]] = {}
    spreads: dict[str, dict[str, list[float]]] = {}
    for label, members in by_setting.items():
        metrics = set.intersection(*(set(m) for m in members))
        groups[label], spreads[label] = {}, {}
        for metric in sorted(metrics):
            mean, spread = plots.mean_and_spread([m[metric] for m in members])
            groups[label][metric], spreads[label][metric] = mean, spread
    seeds = max((len(m) for m in by_setting.values()), default=0)
    title = f"{sweep_dir.name}: {len(runs)} runs" + (
        f", mean ± std over up to {seeds} seeds" if seeds > 1 else ""
    )
    stopped = [label for label, found in statuses.items() if found == {STOPPED}]
    plots.plot_metrics(groups, path, title, spreads, stopped)


def plot_lineage(lineages: Mapping[str, list[dict]], path: epath.Path) -> None:
    """A population-based training's runs (``lineages``: name -> its `LINEAGE_FILE` entries): one
    panel per perturbed key with each run's value in force against the step, and a panel of the
    runs against the step, a line from the parent to the run at each step it copied one."""
    named = {name: entries for name, entries in lineages.items() if entries}
    keys = list(dict.fromkeys(k for entries in named.values() for k in entries[0]["values"]))
    fig = Figure(figsize=(4.5 * (len(keys) + 1) + 2.5, 3.6), layout="constrained")
    axes = fig.subplots(1, len(keys) + 1, squeeze=False).flat
    colours = dict(zip(named, plots.palette(len(named))))
    ends = {name: _last_step(path.parent / name) for name in named}
    rows = {name: row for row, name in enumerate(named)}
    for ax, key in zip(axes, keys):
        for name, entries in named.items():
            steps = [e["step"] for e in entries] + [ends[name]]
            values = [e["values"][key] for e in entries]
            ax.step(steps, [*values, values[-1]], where="post", color=colours[name], label=name)
        values = [e["values"][key] for entries in named.values() for e in entries]
        if min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    tree = axes[len(keys)]
    shift = 0.012 * max(ends.values(), default=1)  # copies at one step side by side
    copies: dict[int, int] = {}
    for name, entries in named.items():
        tree.plot([0, ends[name]], [rows[name]] * 2, color=colours[name], lw=2)
        for entry in entries:
            if entry["parent"] in rows:
                order = copies[entry["step"]] = copies.get(entry["step"], -1) + 1
                x = entry["step"] + order * shift
                tree.annotate(
                    "",
                    (x, rows[name]),
                    (x, rows[entry["parent"]]),
                    arrowprops={"arrowstyle": "->", "color": colours[entry["parent"]], "lw": 1.5},
                )
    tree.set_yticks(range(len(rows)), [str(row) for row in range(len(rows))])
    tree.set_xlabel("step")
    tree.set_ylabel("run (legend order)")
    tree.set_title("copies: parent -> run")
    fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    fig.suptitle(f"{path.parent.name}: population-based training")
    paths.save_figure(fig, path)


def _last_step(run_dir: epath.Path) -> int:
    """The step of a run's newest record (0 without any)."""
    records = read_metrics(run_dir, warn=False)
    return records[-1]["step"] if records else 0
