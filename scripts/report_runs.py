"""What the reproduction reports share: their command line, where their runs go, how their studies
are trained or read back, and the line that says how a report was made (wall time, machine, load,
package versions)."""

import argparse
import contextlib
import importlib.metadata
import json
import os
import pathlib
import platform
import tempfile
import time
from collections.abc import Callable, Iterator

import jax

from jaxlab import parallel


@contextlib.contextmanager
def runs_directory(requested: str | None) -> Iterator[pathlib.Path]:
    """``requested``, or a temporary directory removed afterwards, with JAX's compilation cache
    in it: the seeds of one variant compile to the same programs, so each compiles once. On a
    CPU host JAX gets one device per core, as under ``jaxlab sweep --vmap``."""
    parallel.cpu_device_per_core()
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(requested or tmp)
        jax.config.update("jax_compilation_cache_dir", str(directory / "compilation_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        yield directory


def provenance(start: float) -> str:
    """The first line of a report begun at ``time.time() == start``. The package versions are
    those whose numerics decide the tables (a new jax or flax moves them by a few tenths)."""
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("jax", "jaxlib", "flax", "optax", "numpy")
    )
    return (
        f"Wall time of the whole report: {(time.time() - start) / 60:.1f} min on "
        f"{os.cpu_count()} visible CPUs ({platform.machine()}), 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end; {versions}."
    )


def arguments(description: str, runs: pathlib.Path, quick: str) -> argparse.Namespace:
    """The reports' flags: ``--workdir``, ``--quick`` (``quick`` says what it trains) and
    ``--from-json`` (rewrite from ``runs`` without training)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", help="where the sweeps go (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true", help=f"{quick}; prints only")
    parser.add_argument(
        "--from-json",
        action="store_true",
        help=f"rewrite the report from {runs.name} without training",
    )
    return parser.parse_args()


def record(
    args: argparse.Namespace,
    runs: pathlib.Path,
    studies: dict[str, str],
    run_study: Callable[[pathlib.Path, str, str], list[dict]],
    extra: Callable[[list[dict]], dict] = lambda rows: {},
) -> dict:
    """The report's record: read from ``runs`` with ``--from-json``; else ``{"rows": ...}``, every
    study of ``studies`` (directory -> preset) trained or resumed by ``run_study(workdir, study,
    preset)`` in `runs_directory`, updated with ``extra(rows)``, and its `provenance` line."""
    if args.from_json:
        return json.loads(runs.read_text())
    start = time.time()
    with runs_directory(args.workdir) as workdir:
        rows = [
            row for study, preset in studies.items() for row in run_study(workdir, study, preset)
        ]
        result = {"rows": rows, **extra(rows)}
    return {**result, "machine": provenance(start)}
