"""Writing a sweep and planning its runs.

`axis`, `fixed`, `product` and `zipit` write a sweep (a list of override dicts, one per run);
`plan` resolves and validates every run's config and names each run's workdir (`run_name`).
"""

import dataclasses
import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from jaxlab import config as config_lib
from jaxlab.config import references, registry, run_config
from jaxlab.errors import UserError
from jaxlab.sweep import space

MAX_NAME_CHARS = 120

Point = dict[str, Any]  # the overrides of one run


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
        raise UserError(
            f"zipped sweep axes must have the same length, got lengths {[len(a) for a in axes]}"
        )
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


def key_and_values(text: str) -> tuple[str, str]:
    """``"config.a=1,2,3"`` (a command-line ``--sweep``/``--zip``) -> ("config.a", "1,2,3")."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise UserError(f"malformed sweep {text!r}; write --sweep config.KEY=VALUE1,VALUE2")
    return key.strip(), values


def parse_axis(text: str) -> list[Point]:
    """``"config.a=1,2,3"`` -> its points, values as text."""
    key, values = key_and_values(text)
    return axis(key, [v.strip() for v in values.split(",")])


def command_line_points(
    sweeps: Sequence[str], zips: Sequence[str], samples: int = 0, seed: int = 0
) -> list[Point]:
    """The product of the ``--sweep`` axes that list values, the ``--zip`` axes zipped
    together, and ``samples`` draws of the ``--sweep`` axes that are spaces
    (`jaxlab.sweep.space`, seeded with ``seed``)."""
    listed, spaces = space.split([key_and_values(text) for text in sweeps])
    axes = [axis(key, [v.strip() for v in values.split(",")]) for key, values in listed]
    if zips:
        zipped = [key_and_values(text) for text in zips]
        if space.split(zipped)[1]:
            raise UserError("--zip takes lists of values; sample spaces with --sweep")
        axes.append(zipit(*(parse_axis(text) for text in zips)))
    if spaces and not samples:
        raise UserError(
            f"{', '.join(spaces)}: a sampled space needs --samples N (how many runs to draw)"
        )
    if samples:
        axes.append(space.sampled(spaces, samples, seed))
    return product(*axes)


def experiment_points(spec: str, extra_dirs: Sequence[str] = ()) -> list[Point]:
    """The experiment file's ``get_sweep(preset)``; a `UserError` if it defines none."""
    path, preset = registry.resolve(spec, extra_dirs)
    get_sweep = getattr(registry.import_experiment(path), "get_sweep", None)
    if not callable(get_sweep):
        raise UserError(
            f"experiment {path.stem} defines no get_sweep(arg); pass --sweep "
            f"config.KEY=V1,V2 on the command line"
        )
    try:
        points = [{_strip(k): v for k, v in dict(p).items()} for p in get_sweep(preset)]
    except UserError:
        raise
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a failing get_sweep: one line
        raise UserError(
            f"get_sweep({preset!r}) of {path} failed: {references.describe_error(error)}"
        ) from None
    if not points:
        raise UserError(f"get_sweep({preset!r}) of {path.stem} returned no runs")
    return points


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    overrides: Point  # swept key -> value, typed as in the resolved config
    config: ml_collections.ConfigDict  # resolved and validated


def plan(
    base: str | ml_collections.ConfigDict,
    points: Sequence[Point],
    fixed_overrides: Mapping[str, Any] | None = None,
    extra_dirs: Sequence[str] = (),
) -> list[Run]:
    """Resolves and validates every run's config; raises `UserError` naming the bad run."""
    if not points:
        raise UserError("the sweep has no runs")
    fixed_overrides = {_strip(k): v for k, v in (fixed_overrides or {}).items()}
    runs: list[Run] = []
    names: dict[str, Point] = {}
    for point in points:
        point = {_strip(k): v for k, v in point.items()}
        overrides = {**fixed_overrides, **point}
        try:
            if isinstance(base, str):
                config = registry.load_config(base, overrides, extra_dirs)
            else:
                config = run_config.validate(base, overrides)
        except UserError as error:
            shown = ", ".join(f"{k}={v}" for k, v in point.items())
            raise UserError(f"sweep run ({shown}): {error}") from None
        typed = {key: config_lib.get_leaf(config, key) for key in point}
        name = run_name(typed)
        if name in names:
            raise UserError(
                f"two runs of the sweep have the same overrides: {names[name]} and {point}"
            )
        names[name] = point
        runs.append(Run(name, typed, config))
    return runs


def run_name(overrides: Mapping[str, Any]) -> str:
    """``"optimizer.learning_rate=0.001,seed=1"``: a directory name made of the overrides."""
    if not overrides:
        return "base"
    return directory_name(",".join(f"{k}={v}" for k, v in overrides.items()))


def directory_name(text: str) -> str:
    """``text`` as a directory name: characters other than ``A-Za-z0-9._=,+-`` made ``_``, and a
    name over `MAX_NAME_CHARS` cut, with a digest of the whole text to keep it unique."""
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)
    if len(name) > MAX_NAME_CHARS:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME_CHARS - 11]}-{digest}"
    return name
