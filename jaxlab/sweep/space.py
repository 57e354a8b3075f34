"""Sampled search spaces: a key's values drawn at random instead of listed.

On the command line a ``--sweep`` value may be a distribution, drawn ``--samples N`` times with
``--search-seed S`` (default 0), so the same command gives the same runs (and resumes them)::

    --sweep 'config.optimizer.learning_rate=loguniform(1e-4,1e-1)'   # log-uniform in [a, b]
    --sweep 'config.model.dropout=uniform(0,0.5)'                      # uniform in [a, b]
    --sweep 'config.model.depth=intuniform(1,4)'                       # an integer in a..b
    --sweep 'config.model.attention=choice(full,symmetric)'            # one of the values

The sampled keys are drawn together, once per sample; listed axes (``--sweep config.seed=0,1``)
multiply the samples, so 8 samples of a learning rate with 3 seeds are 24 runs. Floats are kept to
6 significant digits (the run names show them). An experiment's ``get_sweep`` writes the same with
`sampled` and the distribution classes. Every malformed space is a `UserError`.
"""

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxlab.errors import UserError

SIGNIFICANT_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self):
        _check_bounds(self.low, self.high)

    def draw(self, rng: np.random.Generator) -> float:
        return rounded(rng.uniform(self.low, self.high))


@dataclasses.dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def __post_init__(self):
        _check_bounds(self.low, self.high)
        if self.low <= 0:
            raise UserError(f"a log-uniform space needs 0 < low, got low={self.low}")

    def draw(self, rng: np.random.Generator) -> float:
        return rounded(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclasses.dataclass(frozen=True)
class IntUniform:
    low: int
    high: int  # included

    def __post_init__(self):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)):
            raise UserError("intuniform takes two integers")
        _check_bounds(self.low, self.high)

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))


@dataclasses.dataclass(frozen=True)
class Choice:
    values: tuple

    def __post_init__(self):
        if not self.values:
            raise UserError("choice() needs at least one value")

    def draw(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]


Distribution = Uniform | LogUniform | IntUniform | Choice
KINDS = {"uniform": Uniform, "loguniform": LogUniform, "intuniform": IntUniform, "choice": Choice}
_CALL = re.compile(r"^\s*([a-z]+)\((.*)\)\s*$", re.DOTALL)


def _check_bounds(low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise UserError(f"the bounds must be finite with low < high, got {low} and {high}")


def rounded(value: float) -> float:
    """``value`` kept to `SIGNIFICANT_DIGITS` (the runs' directory names show it)."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def parse(text: str) -> Distribution | None:
    """The distribution ``text`` writes (``"loguniform(1e-4,1e-1)"``), or None when it is a
    list of values; `UserError` for a malformed one."""
    match = _CALL.match(text)
    if match is None or match[1] not in KINDS:
        if match is not None and "(" in text and text.strip().endswith(")"):
            raise UserError(
                f"unknown search space {match[1]!r} in {text!r}; the spaces are {', '.join(KINDS)}"
            )
        return None
    kind, arguments = match[1], [a.strip() for a in match[2].split(",") if a.strip()]
    if kind == "choice":
        return Choice(tuple(arguments))
    if len(arguments) != 2:
        raise UserError(f"{text!r}: {kind} takes two bounds, got {len(arguments)}")
    number = int if kind == "intuniform" else float
    try:
        low, high = (number(a) for a in arguments)
    except ValueError:
        what = "an integer" if number is int else "a number"
        raise UserError(f"{text!r}: each bound of {kind} must be {what}") from None
    try:
        return KINDS[kind](low, high)  # type: ignore[call-arg]
    except UserError as error:
        raise UserError(f"{text!r}: {error}") from None


def sampled(space: Mapping[str, Distribution], samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """``samples`` points, each drawing every key of ``space`` (``config.`` optional, in the
    mapping's order) from a generator seeded with ``seed``."""
    if samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}")
    if not space:
        raise UserError("--samples needs a sampled space (e.g. --sweep 'config.KEY=uniform(0,1)')")
    rng = np.random.default_rng(seed)
    return [
        {key.removeprefix("config."): dist.draw(rng) for key, dist in space.items()}
        for _ in range(samples)
    ]


def split(axes: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict[str, Distribution]]:
    """The ``(key, values text)`` axes that list values, and the keys whose text is a space."""
    listed, spaces = [], {}
    for key, text in axes:
        distribution = parse(text)
        if distribution is None:
            listed.append((key, text))
        else:
            spaces[key] = distribution
    return listed, spaces
