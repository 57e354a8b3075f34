"""Sweeps: many runs of one experiment that differ in config overrides.

A sweep is a list of override dicts (dotted key -> value), one per run. It is written

* on the command line: ``--sweep config.a=1,2 --sweep config.seed=0,1`` (the product of the
  lists) and ``--zip config.b=3,4 --zip config.c=5,6`` (lists that vary together);
* in an experiment file, as ``get_sweep(arg) -> list[dict]`` built with `axis`, `fixed`,
  `product` and `zipit` (the idiom of big_vision's ``get_hyper``);
* from Python: ``jaxlab.sweep(config, sweep, workdir)``.

Every run's config is resolved and validated before anything starts: one bad override fails the
whole sweep with a `UserError` and nothing written. Each run trains in ``WORKDIR/RUN_NAME`` (named
from its overrides), in its own process (`jaxlab.sweep_backends`), or together with the others
in one vmapped program (`jaxlab.sweep_vmap`). Re-running a sweep skips its finished runs and
resumes the unfinished ones from their checkpoints. ``results.csv`` and ``results.md`` hold one
row per run: overrides, status, final metrics, wall time, error.
"""
import csv
import dataclasses
import hashlib
import itertools
import json
import os
import re
from typing import Any, Iterable, Mapping, Sequence

import ml_collections
from etils import epath

from jaxlab import config as config_lib
from jaxlab import paths, registry
from jaxlab.errors import UserError

SWEEP_FILE = "sweep.json"  # the sweep's runs: name -> overrides
RESULT_FILE = "sweep_result.json"  # in a run's workdir: {"status", "metrics", "error"}
RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
DONE, FAILED, PENDING = "done", "failed", "pending"
MAX_NAME_CHARS = 120

Point = dict[str, Any]  # the overrides of one run


# --- writing sweeps --------------------------------------------------------------------------

def axis(key: str, values: Iterable[Any]) -> list[Point]:
    """One swept key: ``[{key: v} for v in values]``."""
    points = [{_strip(key): value} for value in values]
    if not points:
        raise UserError(f"sweep axis {key!r} has no values")
    return points


def fixed(key: str, value: Any) -> list[Point]:
    """A key held at one value in every run."""
    return [{_strip(key): value}]


def product(*axes: Sequence[Point]) -> list[Point]:
    """Every combination of one point from each axis (the first axis varies slowest)."""
    return [_merge(combination) for combination in itertools.product(*axes)]


def zipit(*axes: Sequence[Point]) -> list[Point]:
    """The i-th points of all axes together; the axes must have the same length."""
    lengths = {len(a) for a in axes}
    if len(lengths) > 1:
        raise UserError(f"zipped sweep axes must have the same length, got lengths "
                        f"{[len(a) for a in axes]}")
    return [_merge(points) for points in zip(*axes)]


def _merge(points: Iterable[Point]) -> Point:
    merged: Point = {}
    for point in points:
        for key, value in point.items():
            if key in merged:
                raise UserError(f"config.{key} is swept twice in one sweep")
            merged[key] = value
    return merged


def _strip(key: str) -> str:
    return key.removeprefix("config.")


def parse_axis(text: str) -> list[Point]:
    """``"config.a=1,2,3"`` (a command-line ``--sweep``/``--zip``) -> its points, values as text."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise UserError(f"malformed sweep {text!r}; write --sweep config.KEY=VALUE1,VALUE2")
    return axis(key.strip(), [v.strip() for v in values.split(",")])


def command_line_points(sweeps: Sequence[str], zips: Sequence[str]) -> list[Point]:
    """The product of the ``--sweep`` axes and of the ``--zip`` axes zipped together."""
    axes = [parse_axis(text) for text in sweeps]
    if zips:
        axes.append(zipit(*(parse_axis(text) for text in zips)))
    return product(*axes)


def experiment_points(spec: str, extra_dirs: Sequence[str] = ()) -> list[Point]:
    """The experiment file's ``get_sweep(preset)``; a `UserError` if it defines none."""
    path, preset = registry.resolve(spec, extra_dirs)
    get_sweep = getattr(registry.import_experiment(path), "get_sweep", None)
    if not callable(get_sweep):
        raise UserError(f"experiment {path.stem} defines no get_sweep(arg); pass --sweep "
                        f"config.KEY=V1,V2 on the command line")
    points = [{_strip(k): v for k, v in dict(p).items()} for p in get_sweep(preset)]
    if not points:
        raise UserError(f"get_sweep({preset!r}) of {path.stem} returned no runs")
    return points


# --- planning: validation and names ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    overrides: Point  # swept key -> value, typed as in the resolved config
    config: ml_collections.ConfigDict  # resolved and validated


def plan(base: str | ml_collections.ConfigDict, points: Sequence[Point],
         fixed_overrides: Mapping[str, Any] | None = None,
         extra_dirs: Sequence[str] = ()) -> list[Run]:
    """Resolves and validates every run's config; raises `UserError` naming the bad run."""
    if not points:
        raise UserError("the sweep has no runs")
    fixed_overrides = {_strip(k): v for k, v in (fixed_overrides or {}).items()}
    runs, names = [], {}
    for point in points:
        point = {_strip(k): v for k, v in point.items()}
        overrides = {**fixed_overrides, **point}
        try:
            if isinstance(base, str):
                config = registry.load_config(base, overrides, extra_dirs)
            else:
                config = registry.validate(config_lib.apply_overrides(base, overrides))
        except UserError as error:
            shown = ", ".join(f"{k}={v}" for k, v in point.items())
            raise UserError(f"sweep run ({shown}): {error}") from None
        typed = {key: config_lib.get_leaf(config, key) for key in point}
        name = run_name(typed)
        if name in names:
            raise UserError(f"two runs of the sweep have the same overrides: {names[name]} and "
                            f"{point}")
        names[name] = point
        runs.append(Run(name, typed, config))
    return runs


def run_name(overrides: Mapping[str, Any]) -> str:
    """``"optimizer.learning_rate=0.001,seed=1"``: a directory name made of the overrides."""
    if not overrides:
        return "base"
    text = ",".join(f"{k}={v}" for k, v in overrides.items())
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)
    if len(name) > MAX_NAME_CHARS:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        name = f"{name[:MAX_NAME_CHARS - 11]}-{digest}"
    return name


# --- results ---------------------------------------------------------------------------------

def read_sweep(workdir: epath.Path) -> dict[str, Point]:
    """The runs (name -> overrides) of the sweep in ``workdir``; `UserError` if it is none."""
    path = workdir / SWEEP_FILE
    if not path.is_file():
        raise UserError(f"{workdir} is not a sweep directory: {path} does not exist")
    return json.loads(path.read_text())


def read_result(run_dir: epath.Path) -> dict[str, Any]:
    """A run's recorded outcome: ``{"status": PENDING}`` when it has none."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return {"status": PENDING}
    return json.loads(path.read_text())


def write_result(run_dir: epath.Path, status: str, metrics: Mapping[str, Any] | None = None,
                 error: str = "") -> None:
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
        rows.append({"run": name, **overrides, "status": result["status"],
                     **{k: v for k, v in sorted(metrics.items())}, "wall_time_s": wall,
                     "error": result.get("error", "")})
    return rows


def write_tables(workdir: epath.Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``results.csv`` (full precision) and ``results.md`` (4-6 significant digits): same rows."""
    columns = table_columns(rows)
    with open(os.fspath(workdir / RESULTS_CSV), "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows({c: "" if row.get(c) is None else row[c] for c in columns} for row in rows)
    (workdir / RESULTS_MD).write_text(markdown_table(rows, columns) + "\n")


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


# --- running ---------------------------------------------------------------------------------

def sweep(config: str | ml_collections.ConfigDict, sweep: Sequence[Point],
          workdir: str | os.PathLike, *, parallel: int = 1, vmap: bool = False,
          backend: str = "local", address: str | None = None,
          fixed_overrides: Mapping[str, Any] | None = None, extra_dirs: Sequence[str] = (),
          quiet: bool = True) -> list[dict[str, Any]]:
    """Runs every point of ``sweep`` on ``config`` (a spec like ``"name:preset"``, or a
    ConfigDict) under ``workdir``; returns the results table (one dict per run).

    ``parallel`` runs at a time, each in its own process (``backend="local"``) or as a Ray task
    (``backend="ray"``, on the cluster at ``address``); with ``vmap=True`` all runs train in one
    compiled program instead. Finished runs are skipped, unfinished ones resumed. Raises
    `UserError` before anything is written if any run's config is bad.
    """
    from jaxlab import sweep_backends  # the runners import this module's result helpers

    if parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {parallel}")
    if backend not in ("local", "ray"):
        raise UserError(f"--backend must be 'local' or 'ray', got {backend!r}")
    if vmap and backend != "local":
        raise UserError("--vmap trains in this process; it cannot be combined with --backend ray")
    if address and backend != "ray":
        raise UserError("--address is for --backend ray")
    workdir = paths.path(workdir, "sweep directory")
    if paths.is_remote(workdir):
        raise UserError(f"sweep directory {workdir}: sweeps run in a local directory (a mounted "
                        f"bucket works); single runs take remote workdirs")
    runs = plan(config, sweep, fixed_overrides, extra_dirs)
    todo = [run for run in runs if read_result(workdir / run.name)["status"] != DONE]
    if vmap:
        from jaxlab import sweep_vmap
        groups = sweep_vmap.check_and_group(todo, workdir)  # raises before anything is written
    elif backend == "ray":
        sweep_backends.require_ray()

    workdir.mkdir(parents=True, exist_ok=True)
    overrides = {run.name: run.overrides for run in runs}
    (workdir / SWEEP_FILE).write_text(json.dumps(overrides, indent=2, default=str))
    if vmap:
        for group in groups:
            sweep_vmap.train_group(group, workdir, quiet=quiet)
    elif backend == "ray":
        sweep_backends.run_on_ray(todo, workdir, parallel, address, quiet=quiet)
    else:
        sweep_backends.run_in_processes(todo, workdir, parallel, quiet=quiet)
    rows = collect(workdir, overrides)
    write_tables(workdir, rows)
    return rows
