"""JAX's persistent compilation cache, which `jaxlab train` turns on: a relaunch of the same
program loads the compiled executables from disk instead of compiling them again.

The directory is ``$JAXLAB_COMPILATION_CACHE`` (``off`` disables it), by default
``~/.cache/jaxlab/jax``. Every compilation that takes at least 0.1 s is cached.
"""

import os
import pathlib

import jax

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
