"""Presets and overrides: turning strings into a typed, validated `ConfigDict`.

`parse_preset` parses a preset (``"variant=symmetric,mlp=False"``) against an experiment's typed
defaults; `apply_overrides` applies dotted-key overrides, each checked against its type.
"""

import ast
import copy
import difflib
import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from jaxlab.errors import UserError


def parse_preset(arg: str | None, defaults: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """Parses ``"k=v,k2=v2"`` against ``defaults`` (name -> typed default); returns all keys."""
    values = dict(defaults)
    for item in filter(None, (part.strip() for part in (arg or "").split(","))):
        key, sep, text = item.partition("=")
        key = key.strip()
        if key not in defaults:
            close = closest(key, list(defaults))
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UserError(
                f"unknown preset key {key!r} in {arg!r}; {hint}"
                f"this experiment's preset keys are: {', '.join(defaults) or '(none)'}"
            )
        if not sep:
            if not isinstance(defaults[key], bool):
                raise UserError(
                    f"malformed preset item {item!r} in {arg!r}: expected key=value "
                    f"(only boolean keys may stand alone)"
                )
            text = "True"
        values[key] = parse_value(text.strip(), defaults[key], f"preset key {key!r}")
    return ml_collections.ConfigDict(values)


def closest(key: str, known: Sequence[str], count: int = 3) -> list[str]:
    """The ``known`` dotted keys ``key`` most likely means, best first: the same last part in
    another section, an abbreviation of the last part (``lr``: ``learning_rate``, by its words'
    initials or letters in order), then spelling (difflib's ratio over the key and its last
    part)."""
    leaf = key.rsplit(".", 1)[-1].lower()

    def score(candidate: str) -> tuple[float, float]:
        other = candidate.rsplit(".", 1)[-1].lower()
        spelling = difflib.SequenceMatcher(None, key.lower(), candidate.lower()).ratio()
        if other == leaf:
            return 3.0, spelling
        if leaf == "".join(word[0] for word in other.split("_") if word):
            return 2.0, spelling
        if len(leaf) > 2 and leaf[0] == other[0] and _in_order(leaf, other):
            return 1.5, spelling
        return max(spelling, difflib.SequenceMatcher(None, leaf, other).ratio()), spelling

    scored = sorted(((score(k), k) for k in known), key=lambda item: item[0], reverse=True)
    return [k for (s, _), k in scored if s >= 0.6][:count]


def _in_order(letters: str, word: str) -> bool:
    """Whether ``letters`` appear in ``word`` in order (``lr`` in ``learning_rate``)."""
    rest = iter(word)
    return all(letter in rest for letter in letters)


def parse_value(text: str, default: Any, what: str) -> Any:
    """Parses ``text`` into the type of ``default``; raises `UserError` naming the expected type."""
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise UserError(f"{what} expects a bool (true/false), got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise UserError(f"{what} expects an int, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise UserError(f"{what} expects a float, got {text!r}") from None
    if isinstance(default, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if default is None:
            return text
        raise UserError(
            f"{what} expects a {type(default).__name__} literal, got {text!r}"
        ) from None
    if default is not None and not isinstance(value, type(default)):
        if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
            return type(default)(value)
        raise UserError(f"{what} expects a {type(default).__name__}, got {text!r}")
    return value


def get_leaf(config: ml_collections.ConfigDict, key: str) -> Any:
    """The value at dotted ``key`` (``"optimizer.learning_rate"``) of ``config``."""
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def set_leaf(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets dotted ``key`` of ``config`` to ``value`` (a field holding a FieldReference passes the
    value on to the fields that refer to it)."""
    parent, _, leaf = key.rpartition(".")
    node = get_leaf(config, parent) if parent else config
    node[leaf] = value


def flatten(tree: Mapping[str, Any] | ml_collections.ConfigDict) -> dict[str, Any]:
    """Dotted key -> leaf of a nested config or dict: ``{"train": {"steps": 5}}`` ->
    ``{"train.steps": 5}``."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, (Mapping, ml_collections.ConfigDict)):
            flat.update({f"{name}.{key}": leaf for key, leaf in flatten(value).items()})
        else:
            flat[name] = value
    return flat


def flat_keys(config: ml_collections.ConfigDict) -> list[str]:
    """All leaf keys of ``config`` as dotted paths."""
    return list(flatten(config))


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """Returns a copy of ``config`` with ``overrides`` (dotted key -> value or string) applied.

    String values are parsed against the default's type; other values must already have it (an int
    is accepted where a float is expected). An unknown key names the closest existing keys.
    """
    config = copy.deepcopy(config)  # FieldReferences kept: an override reaches the fields using it
    known = flat_keys(config)
    for key, value in overrides.items():
        key = key.removeprefix("config.")
        if key not in known:
            close = closest(key, known)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UserError(f"unknown config key {key!r}{hint}")
        set_leaf(config, key, _typed(value, get_leaf(config, key), f"config.{key}"))
    return config


def _typed(value: Any, default: Any, what: str) -> Any:
    if isinstance(value, str):
        return parse_value(value, default, what)
    if (
        default is None
        or isinstance(value, type(default))
        and not (isinstance(value, bool) and not isinstance(default, bool))
    ):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise UserError(
        f"{what} expects a {type(default).__name__}, got {value!r} ({type(value).__name__})"
    )


def as_overrides(config: ml_collections.ConfigDict) -> str:
    """Every leaf of ``config`` as the command-line override that sets it, with its type, one per
    line: ``--config.train.steps=3000  # int`` (what `jaxlab config` prints)."""
    return "\n".join(
        f"--config.{key}={shlex.quote(_as_text(value))}  # {type(value).__name__}"
        for key, value in flatten(config).items()
    )


def _as_text(value: Any) -> str:
    """``value`` written so that `parse_value` reads it back."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else repr(value)


def to_json(config: ml_collections.ConfigDict) -> str:
    """The resolved config as stable, readable JSON (what goes into ``workdir/config.json``)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
