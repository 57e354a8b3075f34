"""``jaxlab compare RUN_OR_SWEEP...``: runs that need not be one sweep side by side. A sweep
directory stands for each of its runs. Returns a Markdown table with one row per run: the config
keys whose values differ between the runs, then each run's final metrics; writes their curves
overlaid (`jaxlab.plots`) to a PNG."""

import json
from collections.abc import Sequence
from typing import Any

from etils import epath

from jaxlab import config as config_lib
from jaxlab import paths, plots
from jaxlab.errors import UserError
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.metrics_log import read_metrics
from jaxlab.rundir.workdir import CONFIG_FILE, SWEEP_FILE
from jaxlab.sweep.results import markdown_table, read_sweep

SHOWN_METRICS = ("train/", "eval/")  # the final metrics in the table


def runs_of(locations: Sequence[str]) -> dict[str, epath.Path]:
    """Label -> workdir of every run the ``locations`` name (a sweep's runs labelled
    ``SWEEP/RUN``); `UserError` for a location that is neither a run nor a sweep."""
    found: dict[str, epath.Path] = {}
    for location in locations:
        directory = paths.path(location, "run")
        if (directory / SWEEP_FILE).is_file():
            members = [
                (f"{directory.name}/{name}", directory / name) for name in read_sweep(directory)
            ]
        elif (directory / CONFIG_FILE).is_file():
            members = [(directory.name, directory)]
        else:
            raise UserError(
                f"{directory} is neither a run (no {CONFIG_FILE}) nor a sweep (no {SWEEP_FILE})"
            )
        for label, workdir in members:
            if label in found and found[label] != workdir:
                label = str(workdir)  # two runs of one name: their paths tell them apart
            found[label] = workdir
    if len(found) < 2:
        raise UserError(
            f"compare needs two runs or more, found {len(found)} in {', '.join(locations)}"
        )
    return found


def compare(locations: Sequence[str], output: str) -> str:
    """Writes the overlaid curves to ``output`` and returns the table (module docstring)."""
    runs = runs_of(locations)
    configs = {label: _flat_config(workdir) for label, workdir in runs.items()}
    keys = sorted(
        key
        for key in set().union(*configs.values())
        if len({json.dumps(flat.get(key), sort_keys=True) for flat in configs.values()}) > 1
    )
    records = {label: read_metrics(workdir) for label, workdir in runs.items()}
    finals = {label: _final(rows) for label, rows in records.items()}
    metrics = sorted({name for final in finals.values() for name in final if name != "step"})
    rows = [
        {"run": label, **{k: configs[label].get(k, "(absent)") for k in keys}, **finals[label]}
        for label in runs
    ]
    destination = paths.path(output, "output")
    plots.plot_metrics(
        {label: plots.scalar_series(rows_) for label, rows_ in records.items() if rows_},
        destination,
        title=f"{len(runs)} runs",
    )
    same = "" if keys else "the runs' configs are equal"
    return "\n".join(
        [
            markdown_table(rows, ["run", *keys, "step", *metrics]),
            "",
            *([same] if same else []),
            f"curves: {destination}",
        ]
    )


def _flat_config(workdir: epath.Path) -> dict[str, Any]:
    tree = workdir_lib.read_config_tree(workdir)
    if tree is None:
        raise UserError(f"{workdir / CONFIG_FILE} is missing or damaged")
    return config_lib.flatten(tree)


def _final(records: list[dict]) -> dict[str, Any]:
    """The newest value of each scalar train/eval metric, and the step of the newest record."""
    final: dict[str, Any] = {}
    for record in records:
        final.update(
            {
                k: v
                for k, v in record.items()
                if k.startswith(SHOWN_METRICS)
                and k != "train/learning_rate"
                and isinstance(v, (int, float))
            }
        )
    if records:
        final["step"] = records[-1]["step"]
    return final
