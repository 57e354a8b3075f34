"""JAX's persistent compilation cache, which `jaxlab train` turns on: a relaunch of the same
program loads the compiled executables from disk instead of compiling them again.

The directory is ``$JAXLAB_COMPILATION_CACHE`` (``off`` disables it), by default
``~/.cache/jaxlab/jax``. Every compilation that takes at least 0.1 s is cached.

On CPU a mesh that shards the train state (``config.mesh.fsdp`` or ``tensor`` above 1) turns
the cache off for the rest of the process (`refuse_sharded_cpu`): measured with jaxlib 0.10.2,
XLA's CPU runtime deadlocks in the collectives of such an executable loaded from the cache, while
the same program compiled afresh runs. Data-parallel meshes, GPUs and TPUs keep the cache.
"""

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache as persistent_cache

ENV_VAR = "JAXLAB_COMPILATION_CACHE"
DEFAULT_DIR = pathlib.Path.home() / ".cache" / "jaxlab" / "jax"


def enable() -> pathlib.Path | None:
    """Points JAX at the cache directory; returns it (None when disabled)."""
    setting = os.environ.get(ENV_VAR, str(DEFAULT_DIR))
    if setting.lower() == "off":
        return None
    directory = pathlib.Path(setting).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return directory


def refuse_sharded_cpu(mesh: jax.sharding.Mesh) -> None:
    """Turns the persistent cache off for this process when ``mesh`` is a CPU mesh that shards
    the train state (the deadlock in the module docstring); call before the mesh's first compile."""
    if mesh.devices.flat[0].platform == "cpu" and mesh.shape["fsdp"] * mesh.shape["tensor"] > 1:
        jax.config.update("jax_enable_compilation_cache", False)
        persistent_cache.reset_cache()  # forget a cache an earlier compile opened
