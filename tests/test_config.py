"""Presets and overrides: typed parsing, and errors that say what was wrong."""

import ml_collections
import pytest

import jaxlab
from jaxlab.config import apply_overrides, parse_preset
from jaxlab.errors import UserError
from tests.conftest import REPO

DEFAULTS = dict(variant="full", mlp=True, depth=6, rate=0.5)


def test_preset_parses_typed_values_and_bare_bools():
    preset = parse_preset("variant=symmetric,mlp=False,depth=2,rate=1", DEFAULTS)
    assert preset.to_dict() == dict(variant="symmetric", mlp=False, depth=2, rate=1.0)
    assert parse_preset("mlp", dict(DEFAULTS, mlp=False)).mlp is True
    assert parse_preset("", DEFAULTS).to_dict() == DEFAULTS


@pytest.mark.parametrize(
    "arg, message",
    [
        ("depth=two", "expects an int"),
        ("colour=red", "unknown preset key 'colour'"),
        ("depth", "malformed preset item 'depth'"),
        ("mlp=maybe", "expects a bool"),
    ],
)
def test_preset_errors(arg, message):
    with pytest.raises(UserError, match=message):
        parse_preset(arg, DEFAULTS)


def test_overrides_are_typed_against_defaults():
    config = ml_collections.ConfigDict(
        dict(train=dict(steps=10, lr=0.1, name="a", flag=False), shape=(1, 2))
    )
    new = apply_overrides(
        config,
        {
            "train.steps": "20",
            "config.train.lr": "1e-3",
            "train.flag": "true",
            "shape": "(3, 4)",
            "train.name": "b",
        },
    )
    assert (new.train.steps, new.train.lr, new.train.flag, new.shape, new.train.name) == (
        20,
        1e-3,
        True,
        (3, 4),
        "b",
    )
    assert apply_overrides(config, {"train.lr": 1}).train.lr == 1.0  # int accepted for a float
    assert config.train.steps == 10  # the original is untouched


def test_unknown_override_key_names_closest_keys(smoke_config):
    with pytest.raises(UserError, match=r"unknown config key 'train.stepz'.*train\.steps"):
        apply_overrides(smoke_config, {"train.stepz": "5"})


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train.steps", "abc", "config.train.steps expects an int"),
        ("train.steps", 2.5, "config.train.steps expects a int"),
        ("optimizer.learning_rate", "fast", "expects a float"),
        ("model.mlp", "perhaps", "expects a bool"),
    ],
)
def test_wrong_override_type_names_expected_type(smoke_config, key, value, expected):
    with pytest.raises(UserError, match=expected):
        apply_overrides(smoke_config, {key: value})


def test_load_config_from_name_preset_and_path():
    config = jaxlab.load_config(
        "minimal_transformer:mlp=False,depth=3", overrides={"train.steps": 100}
    )
    assert (config.model.mlp, config.model.depth, config.train.steps) == (False, 3, 100)
    assert config.experiment == "minimal_transformer:mlp=False,depth=3"
    from tests.conftest import REPO

    by_path = jaxlab.load_config(f"{REPO}/experiments/minimal_transformer.py:smoke")
    assert by_path.train.steps == jaxlab.load_config("minimal_transformer:smoke").train.steps


def test_unknown_experiment_lists_known_ones():
    with pytest.raises(UserError, match="unknown experiment 'nope'.*minimal_transformer"):
        jaxlab.load_config("nope")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train.steps", 0, "must be positive"),
        ("train.batch_size", -8, "must be positive"),
        ("train.eval_every", 7, "multiple of config.train.log_every"),
    ],
)
def test_invalid_values_are_rejected(key, value, expected):
    with pytest.raises(UserError, match=expected):
        jaxlab.load_config("minimal_transformer:smoke", overrides={key: value})


def test_user_experiment_directory(tmp_path, monkeypatch):
    (tmp_path / "my_exp.py").write_text(
        '"""My own experiment."""\n'
        "import jaxlab\n"
        "from jaxlab.config import parse_preset\n"
        "PRESET = dict(steps=7)\n"
        "def get_config(arg):\n"
        "    config = jaxlab.load_config('minimal_transformer:smoke')\n"
        "    config.train.steps = parse_preset(arg, PRESET).steps\n"
        "    return config\n"
    )
    monkeypatch.setenv("JAXLAB_EXPERIMENTS", str(tmp_path))
    names = {e.name: e for e in jaxlab.list_experiments()}
    assert names["my_exp"].description == "My own experiment."
    assert "minimal_transformer" in names
    config = jaxlab.load_config("my_exp:steps=3")
    assert (config.train.steps, config.experiment) == (3, "my_exp:steps=3")


def test_an_override_reaches_the_fields_an_experiment_links_to_it(tmp_path):
    source = (REPO / "experiments" / "mlp_moons.py").read_text()
    linked = source.replace(
        "    return config",
        "    config.train.checkpoint_every = config.train.get_ref('eval_every')\n    return config",
    )
    assert linked != source
    (tmp_path / "linked.py").write_text(linked)
    config = jaxlab.load_config(
        str(tmp_path / "linked.py"), {"train.eval_every": "40", "train.log_every": "20"}
    )
    assert config.train.eval_every == config.train.checkpoint_every == 40
    again = jaxlab.load_config(str(tmp_path / "linked.py"))  # the file's own values untouched
    assert again.train.checkpoint_every == again.train.eval_every


@pytest.mark.parametrize(
    "spec, overrides, message",
    [
        (
            "mlp_moons",
            {"optimizer.lr": "0.1"},
            "unknown config key 'optimizer.lr'; did you mean optimizer.learning_rate or",
        ),
        ("mlp_moons", {"train.ckpt_every": "5"}, "did you mean train.checkpoint_every or"),
        ("mlp_moons", {"seeds": "1"}, "did you mean seed or data.seed"),
        ("mlp_moons:smok", {}, "unknown preset key 'smok' in 'smok'; did you mean smoke?"),
        (
            "mlp_moons",
            {"smoke": "True"},
            "'smoke' is a preset key of mlp_moons, not a config key: write "
            "mlp_moons:smoke=VALUE (its preset keys: noise, smoke)",
        ),
    ],
)
def test_a_mistyped_key_is_answered_with_the_closest_keys_first(spec, overrides, message):
    with pytest.raises(UserError) as error:
        jaxlab.load_config(spec, overrides)
    assert message in str(error.value)
