"""What the reproduction reports share: where their runs go, and the line that says how a report
was made (wall time, machine, load, package versions)."""

import contextlib
import importlib.metadata
import os
import pathlib
import platform
import tempfile
import time
from collections.abc import Iterator

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
