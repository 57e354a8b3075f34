"""The experiment registry: names (and file paths) to configs.

`list_experiments` lists the experiment files on the search path, `resolve` splits a spec into
file and preset, and `load_config` returns an experiment's validated config.
"""

import copy
import dataclasses
import importlib.util
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import ml_collections

from jaxlab import config as config_lib
from jaxlab.config import references, run_config
from jaxlab.errors import UserError


def builtin_dir() -> pathlib.Path:
    """Where the package ``jaxlab.experiments`` is: the repository's ``experiments/`` folder in an
    editable install, ``jaxlab/experiments`` in an installed wheel."""
    spec = importlib.util.find_spec("jaxlab.experiments")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("jaxlab's built-in experiments are not installed: run `pip install -e .`")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


ENV_VAR = "JAXLAB_EXPERIMENTS"


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    path: pathlib.Path
    description: str
    preset: Mapping[str, Any]
    error: str = ""  # why the file cannot be loaded ("" when it can)


def search_dirs(extra_dirs: Sequence[str] = ()) -> list[pathlib.Path]:
    """The directories experiments are looked up in, first first; `UserError` for a missing one."""
    env_dirs = [d for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d]
    named = [(d, "--experiments-dir") for d in extra_dirs] + [(d, ENV_VAR) for d in env_dirs]
    dirs = []
    for name, source in named:
        directory = pathlib.Path(name).expanduser()
        if not directory.is_dir():
            raise UserError(f"experiments directory {directory} (from {source}) does not exist")
        dirs.append(directory)
    return dirs + [builtin_dir()]


def list_experiments(extra_dirs: Sequence[str] = ()) -> list[Experiment]:
    """Every experiment on the search path (an earlier directory shadows a later one); a file that
    cannot be loaded is listed with its ``error``."""
    found: dict[str, Experiment] = {}
    for directory in search_dirs(extra_dirs):
        for path in sorted(directory.glob("*.py")):
            if path.stem.startswith("_") or path.stem in found:
                continue
            try:
                found[path.stem] = _describe(path)
            except UserError as error:
                found[path.stem] = Experiment(path.stem, path, "", {}, error=str(error))
    return sorted(found.values(), key=lambda e: e.name)


def _describe(path: pathlib.Path) -> Experiment:
    module = import_experiment(path)
    doc = (module.__doc__ or "").strip()
    return Experiment(
        name=path.stem,
        path=path,
        description=doc.splitlines()[0] if doc else "",
        preset=dict(getattr(module, "PRESET", {})),
    )


def import_experiment(path: pathlib.Path) -> ModuleType:
    """Executes the experiment file ``path`` afresh (edits are seen without a restart)."""
    if path.suffix != ".py":
        raise UserError(
            f"{path} is not an experiment file: expected a Python file NAME.py with get_config(arg)"
        )
    module_name = f"jaxlab_experiment_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as error:
        raise UserError(
            f"experiment file {path} calls sys.exit({error.code!r}) when loaded; an "
            f"experiment file defines get_config(arg) and exits nothing"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure of the file is reported, one line
        raise UserError(
            f"experiment file {path} fails to load: {references.describe_error(error)}"
        ) from None
    if not callable(getattr(module, "get_config", None)):
        raise UserError(f"experiment file {path} defines no get_config(arg) function")
    return module


def resolve(spec: str, extra_dirs: Sequence[str] = ()) -> tuple[pathlib.Path, str]:
    """Splits a spec into (experiment file, preset string)."""
    target, _, preset = spec.partition(":")
    if target.endswith(".py") or os.sep in target:
        path = pathlib.Path(target).expanduser()
        if not path.is_file():
            raise UserError(f"experiment file {path} does not exist")
        return path, preset
    for directory in search_dirs(extra_dirs):
        path = directory / f"{target}.py"
        if path.is_file():
            return path, preset
    known = [e.name for e in list_experiments(extra_dirs)]
    raise UserError(
        f"unknown experiment {target!r}; known experiments: {', '.join(known)} "
        f"(run `jaxlab list`, or pass a path to an experiment file)"
    )


def load_config(
    spec: str, overrides: Mapping[str, Any] | None = None, extra_dirs: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """The validated config of an experiment spec with ``overrides`` (dotted key -> value) applied.

    ``config.experiment`` records the spec, so a workdir knows which experiment it holds.
    """
    path, preset = resolve(spec, extra_dirs)
    module = import_experiment(path)
    try:
        config = module.get_config(preset)
    except UserError as error:
        raise UserError(f"experiment {path.stem}: {error}") from None
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a failing get_config: one line
        raise UserError(
            f"get_config({preset!r}) of {path} failed: {references.describe_error(error)}"
        ) from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise UserError(
            f"get_config({preset!r}) of {path} returned a {type(config).__name__}, "
            f"expected an ml_collections.ConfigDict"
        )
    config = copy.deepcopy(config)  # FieldReferences kept for the overrides
    for key, value in config_lib.flatten(config).items():
        if references.is_file_reference(value):
            config_lib.set_leaf(
                config, key, references.absolute_file_reference(value, path.resolve().parent)
            )
    with config.unlocked():
        config.experiment = f"{path.stem}:{preset}" if preset else path.stem
    _refuse_preset_keys_as_overrides(module, path.stem, config, overrides or {})
    return run_config.validate(config, overrides)


def _refuse_preset_keys_as_overrides(
    module: ModuleType,
    name: str,
    config: ml_collections.ConfigDict,
    overrides: Mapping[str, Any],
) -> None:
    """`UserError` for an override of a key that is not in the config but is a preset key."""
    presets = getattr(module, "PRESET", {})
    keys = set(config_lib.flat_keys(config))
    for key in overrides:
        bare = key.removeprefix("config.")
        if bare in presets and bare not in keys:
            raise UserError(
                f"{bare!r} is a preset key of {name}, not a config key: write "
                f"{name}:{bare}=VALUE (its preset keys: {', '.join(presets)})"
            )
