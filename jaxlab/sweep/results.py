"""A sweep's record: its runs, each run's outcome, and the results table.

``SWEEP_FILE`` lists the runs (name -> overrides); each run's ``RESULT_FILE`` holds its status,
final metrics and error; ``RESULTS_CSV`` / ``RESULTS_MD`` hold one row per run. A run without a
recorded outcome is `RUNNING` while a live process holds its workdir's lock, else `PENDING`.
"""

import csv
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.rundir import workdir as workdir_lib
from jaxlab.rundir.run import DONE, FAILED  # a run's recorded outcome
from jaxlab.rundir.workdir import RESULT_FILE, RESULTS_CSV, RESULTS_MD, SWEEP_FILE
from jaxlab.sweep.plan import Point

PENDING, RUNNING = "pending", "running"  # a run without one
STOPPED = "stopped"  # left behind at a rung by a scheduler (`jaxlab.sweep.halving`)


def announce(name: str, status: str, quiet: bool) -> None:
    """One line on a run's new status (unless ``quiet``)."""
    if not quiet:
        print(f"jaxlab sweep: {name}: {status}", flush=True)


def read_sweep(workdir: epath.Path) -> dict[str, Point]:
    """The runs (name -> overrides) of the sweep in ``workdir``; `UserError` if it is none."""
    path = workdir / SWEEP_FILE
    if not path.is_file():
        raise UserError(f"{workdir} is not a sweep directory: {path} does not exist")
    try:
        runs = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        runs = error
    if not isinstance(runs, dict) or not all(isinstance(v, dict) for v in runs.values()):
        raise UserError(
            f"{path} is damaged (not the JSON object of runs jaxlab writes); run the "
            f"sweep's command again to rewrite it"
        )
    return runs


def write_sweep(workdir: epath.Path, runs: Mapping[str, Point]) -> None:
    paths.write_atomic(workdir / SWEEP_FILE, json.dumps(dict(runs), indent=2, default=str))


def read_result(run_dir: epath.Path) -> dict[str, Any]:
    """A run's recorded outcome; without one, ``{"status": RUNNING}`` while a live process holds
    the run's workdir, else ``{"status": PENDING}``. A damaged record counts as none (with a
    warning): the run resumes from its checkpoints and records its outcome anew."""
    path = run_dir / RESULT_FILE
    if path.is_file():
        try:
            result = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            result = None
        if isinstance(result, dict) and result.get("status") in (DONE, FAILED, STOPPED):
            return result
        warnings.warn(
            f"{path} is damaged; the run counts as unfinished and resumes from its "
            f"checkpoints when the sweep runs again",
            stacklevel=2,
        )
    return {"status": RUNNING if workdir_lib.holder(run_dir) else PENDING}


def write_result(
    run_dir: epath.Path, status: str, metrics: Mapping[str, Any] | None = None, error: str = ""
) -> None:
    result = {"status": status, "metrics": dict(metrics or {}), "error": error}
    run_dir.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(run_dir / RESULT_FILE, json.dumps(result, default=float))


def collect(workdir: epath.Path, runs: Mapping[str, Point]) -> list[dict[str, Any]]:
    """One row per run (``runs``: name -> overrides): name, overrides, status, final metrics,
    wall time, error."""
    rows = []
    for name, overrides in runs.items():
        result = read_result(workdir / name)
        metrics = dict(result.get("metrics", {}))
        wall = metrics.pop("wall_time_s", None)
        rows.append(
            {
                "run": name,
                **overrides,
                "status": result["status"],
                **{k: v for k, v in sorted(metrics.items())},
                "wall_time_s": wall,
                "error": result.get("error", ""),
            }
        )
    return rows


def write_tables(
    workdir: epath.Path, rows: Sequence[Mapping[str, Any]], swept: Sequence[str] = ()
) -> None:
    """``results.csv`` (full precision) and ``results.md`` (4-6 significant digits): same rows;
    ``results.md`` then the mean ± std over seeds of each setting of the ``swept`` keys."""
    columns = table_columns(rows)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows({c: "" if row.get(c) is None else row[c] for c in columns} for row in rows)
    paths.write_atomic(workdir / RESULTS_CSV, text.getvalue())
    markdown = markdown_table(rows, columns) + "\n"
    if means := seed_means_table(rows, swept):
        markdown += "\n" + means + "\n"
    paths.write_atomic(workdir / RESULTS_MD, markdown)


SEED_KEY = "seed"


def settings(swept: Sequence[str]) -> list[str]:
    """The swept keys that make a setting: all but the seed."""
    return [key for key in swept if key != SEED_KEY]


def setting_label(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``lr=0.01, width=64`` (each key's last part), or ``all runs`` with no keys."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={row.get(key)}" for key in keys) or "all runs"


def seed_means_table(rows: Sequence[Mapping[str, Any]], swept: Sequence[str]) -> str:
    """Markdown: for each setting of the swept keys other than the seed, the number of finished
    runs and each final train/eval metric's mean ± sample std over them; "" unless the seed is
    swept and some setting has several finished runs."""
    done = [row for row in rows if row.get("status") == DONE]
    keys = settings(swept)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in done:
        groups.setdefault(setting_label(row, keys), []).append(row)
    if SEED_KEY not in swept or all(len(group) < 2 for group in groups.values()):
        return ""
    metrics = sorted(
        {
            k
            for row in done
            for k, v in row.items()
            if k.startswith(("train/", "eval/"))
            and k != "train/learning_rate"
            and isinstance(v, (int, float))
        }
    )
    table = []
    for group in groups.values():
        line: dict[str, Any] = {key: group[0].get(key) for key in keys}
        line["runs"] = len(group)
        for metric in metrics:
            values = [row[metric] for row in group if isinstance(row.get(metric), (int, float))]
            if values:
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                line[metric] = f"{float(np.mean(values)):.4g} ± {std:.2g}"
        table.append(line)
    return "mean ± sample std over seeds:\n\n" + markdown_table(table, [*keys, "runs", *metrics])


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns and c not in ("wall_time_s", "error"))
    return columns + ["wall_time_s", "error"]


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = (_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
