"""What every run's config holds, and the checks that make a bad value one clear `UserError`
before anything is written (rather than a crash, a NaN or a silently wrong run later).

A run's config has ``seed``, ``task`` (a reference, `jaxlab.config.references`), ``optimizer`` and
``train`` with the keys of `REQUIRED`; the task's own sections are the task's to check.
"""

import copy
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxlab import config as config_lib
from jaxlab import parallel, paths, sharding
from jaxlab.config import references
from jaxlab.errors import UserError

# Optional settings every config has (added where an experiment leaves them out), so that they can
# be overridden like any other key.
FRAMEWORK_DEFAULTS = {
    "train.skip_nonfinite_steps": False,
    "train.data_pipeline": "device",
    "train.prefetch": 2,
    "train.grad_accum_steps": 1,  # micro-batches per step (jaxlab.loop.step)
    "train.compute_dtype": "float32",  # or "bfloat16": what models compute in (jaxlab.models)
    # Start a new run from another run's parameters: "WORKDIR[:STEP]" and a regular expression
    # selecting parameter paths ("" takes all) (jaxlab.rundir.init_from).
    "train.init_from": "",
    "train.init_from_paths": "",
    "train.ema_decay": None,  # d in [0, 1): keep an EMA of the parameters (jaxlab.loop.step)
    # The device mesh (jaxlab.parallel): -1 takes the devices the other axes leave; trial 0
    # splits a vmapped sweep's trials over as many devices as divide their number.
    "mesh.trial": 0,
    "mesh.data": -1,
    "mesh.fsdp": 1,
    "mesh.tensor": 1,
    # Where the state's leaves live (jaxlab.sharding): logical axis -> mesh axis ("" keeps whole).
    **{f"sharding.{name}": axis for name, axis in sharding.DEFAULT_RULES.items()},
    "sharding.fsdp_min_size": sharding.DEFAULT_FSDP_MIN_SIZE,
    # What a run records besides metrics.jsonl: metric writers, comma-separated
    # (jaxlab.rundir.writers), and the steps "A:B" (steps A+1..B, whole chunks) that a
    # jax.profiler trace covers, written to WORKDIR/profile ("" traces nothing).
    "log.writers": "tensorboard",
    "log.profile_steps": "",
}
# Where the state lives and what is recorded, not what the run computes: a run may resume with
# these changed, and the framework adds them where an experiment leaves them out.
FREE_SECTIONS = ("mesh", "sharding", "log")
COMPUTE_DTYPES = ("float32", "bfloat16")
PIPELINES = ("device", "grain")  # batches drawn on the device, or read on the host (Grain)
REQUIRED: dict[str, dict[str, type]] = {  # section -> key -> type
    "train": {
        "steps": int,
        "batch_size": int,
        "log_every": int,
        "eval_every": int,
        "checkpoint_every": int,
        "keep_checkpoints": int,
    },
    "optimizer": {
        "name": str,
        "learning_rate": float,
        "weight_decay": float,
        "warmup_steps": int,
        "schedule": str,
        "grad_clip_norm": float,
    },
}
MAX_STEP = 2**31 - 1  # the train state's step counter is an int32
SEEDS = 2**32  # PRNGKey(seed) keeps 32 bits without x64: larger seeds would collide


def with_framework_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` (FieldReferences kept) with each of `FRAMEWORK_DEFAULTS` it lacks."""
    config = copy.deepcopy(config)
    for key, value in FRAMEWORK_DEFAULTS.items():
        section, leaf = key.split(".")
        if section in FREE_SECTIONS and section not in config:
            with config.unlocked():
                config[section] = ml_collections.ConfigDict()
        if (
            section in config
            and isinstance(config[section], ml_collections.ConfigDict)
            and leaf not in config[section]
        ):
            with config[section].unlocked():
                config[section][leaf] = value
    return config


def absolute_data_paths(data: dict[str, Any], base: pathlib.Path) -> dict[str, Any]:
    """A copy of the ``config.data`` section whose relative local paths are made absolute against
    ``base``: every string (but the loader) that holds a path separator or names a file or
    directory that exists under ``base``. So ``config.json`` names the same files from any
    working directory (``jaxlab eval``, a resume, a sweep's workers)."""
    out = {}
    for key, value in data.items():
        if (
            key != "loader"
            and isinstance(value, str)
            and value
            and not paths.is_remote(value)
            and not references.is_file_reference(value)
        ):
            path = pathlib.Path(value).expanduser()
            if path.is_absolute():
                value = str(path)
            elif os.sep in value or (base / path).exists():
                value = os.path.normpath(base / path)
        out[key] = value
    return out


def validate(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any] | None = None
) -> ml_collections.ConfigDict:
    """A copy of ``config`` as a run needs it: `FRAMEWORK_DEFAULTS` added, ``overrides`` (dotted
    key -> value or string, `jaxlab.config.apply_overrides`) applied, relative file references and
    data paths made absolute against the working directory (`absolute_data_paths`), and every
    setting checked (`UserError` naming the bad key and what was expected)."""
    config = config_lib.apply_overrides(with_framework_defaults(config), overrides or {})
    tree = references.absolute_file_references(config.to_dict(), pathlib.Path.cwd())
    if isinstance(tree.get("data"), dict):
        tree["data"] = absolute_data_paths(tree["data"], pathlib.Path.cwd())
    config = ml_collections.ConfigDict(tree)
    _check_present(config)
    _check_finite(config)
    if not 0 <= config.seed < SEEDS:
        raise UserError(
            f"config.seed must be in 0..{SEEDS - 1} (PRNGKey keeps 32 bits), got {config.seed}"
        )
    references.resolve(config.task, "config.task")
    train, opt = config.train, config.optimizer
    for key in ("steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
        if not 0 < train[key] <= MAX_STEP:
            raise UserError(
                f"config.train.{key} must be positive, got {train[key]}"
                if train[key] <= 0
                else f"config.train.{key}={train[key]} is past the step counter's range "
                f"(int32, at most {MAX_STEP})"
            )
    for key in ("eval_every", "checkpoint_every"):
        if train[key] % train.log_every:
            raise UserError(
                f"config.train.{key}={train[key]} must be a multiple of "
                f"config.train.log_every={train.log_every} (steps run in chunks of "
                f"log_every inside one compiled program)"
            )
    if train.data_pipeline not in PIPELINES:
        raise UserError(
            f"config.train.data_pipeline must be one of {', '.join(PIPELINES)}, got "
            f"{train.data_pipeline!r}"
        )
    if train.grad_accum_steps < 1 or train.batch_size % train.grad_accum_steps:
        raise UserError(
            f"config.train.grad_accum_steps={train.grad_accum_steps} must be a positive divisor "
            f"of config.train.batch_size={train.batch_size} (each step's batch is split into "
            f"that many micro-batches)"
        )
    if train.compute_dtype not in COMPUTE_DTYPES:
        raise UserError(
            f"config.train.compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got "
            f"{train.compute_dtype!r}"
        )
    if train.ema_decay is not None and not (
        isinstance(train.ema_decay, (int, float)) and 0 <= train.ema_decay < 1
    ):
        raise UserError(
            f"config.train.ema_decay must be a number in [0, 1) (or None: no EMA), got "
            f"{train.ema_decay!r}"
        )
    if train.prefetch < 1:
        raise UserError(f"config.train.prefetch must be at least 1, got {train.prefetch}")
    if train.keep_checkpoints < 1:
        raise UserError(
            f"config.train.keep_checkpoints must be at least 1, got {train.keep_checkpoints}"
        )
    if opt.learning_rate <= 0:
        raise UserError(f"config.optimizer.learning_rate must be positive, got {opt.learning_rate}")
    for key in ("weight_decay", "grad_clip_norm", "warmup_steps"):
        if opt[key] < 0:
            raise UserError(f"config.optimizer.{key} must be zero or positive, got {opt[key]}")
    _check_layout(config)
    profile_range(config)
    return config


def profile_range(config: ml_collections.ConfigDict) -> tuple[int, int] | None:
    """(A, B) of ``config.log.profile_steps = "A:B"`` (the steps A+1..B), or None when empty;
    `UserError` unless 0 <= A < B <= config.train.steps."""
    text = config.log.profile_steps
    if not isinstance(text, str):
        raise UserError(f'config.log.profile_steps must be a string "A:B", got {text!r}')
    if not text:
        return None
    first, _, last = text.partition(":")
    try:
        start, stop = int(first), int(last)
    except ValueError:
        start, stop = -1, -1
    if not 0 <= start < stop <= config.train.steps:
        raise UserError(
            f'config.log.profile_steps must be "A:B" with 0 <= A < B <= config.train.steps='
            f"{config.train.steps} (a trace of steps A+1..B), got {text!r}"
        )
    return start, stop


def _check_layout(config: ml_collections.ConfigDict) -> None:
    """``config.mesh`` holds sizes of the mesh's axes, ``config.sharding`` mesh axes."""
    parallel.check_sizes(config.mesh)
    for name, axis in config.sharding.items():
        if name == "fsdp_min_size":
            if not isinstance(axis, int) or axis < 0:
                raise UserError(f"config.sharding.fsdp_min_size must be an int >= 0, got {axis!r}")
        elif axis not in ("", *parallel.RUN_AXES):
            raise UserError(
                f"config.sharding.{name} must name a mesh axis ({', '.join(parallel.RUN_AXES)}) "
                f"or be '' (kept whole), got {axis!r}"
            )


def _check_present(config: ml_collections.ConfigDict) -> None:
    if not isinstance(config.get("seed"), int) or isinstance(config.get("seed"), bool):
        raise UserError(f"config.seed must be an int, got {config.get('seed')!r}")
    if not isinstance(config.get("task"), str):
        raise UserError(
            "config.task must reference the task's make_task function, e.g. "
            "'jaxlab.tasks.classification:make_task' or 'my_task.py:make_task'"
        )
    for section, keys in REQUIRED.items():
        if not isinstance(config.get(section), ml_collections.ConfigDict):
            raise UserError(
                f"the config has no {section} section (config.{section} with {', '.join(keys)})"
            )
        for key, kind in keys.items():
            if key not in config[section]:
                raise UserError(
                    f"config.{section} has no {key} (a {kind.__name__}); every run "
                    f"needs {', '.join(f'{section}.{k}' for k in keys)}"
                )
            value = config[section][key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number if kind is float else type(value) is kind):
                raise UserError(f"config.{section}.{key} must be a {kind.__name__}, got {value!r}")


def _check_finite(config: ml_collections.ConfigDict) -> None:
    """Every float leaf is finite: a NaN or Inf setting would only show up later as a NaN loss."""
    for key, value in config_lib.flatten(config).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"config.{key} must be a finite number, got {value}")
