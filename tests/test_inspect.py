"""`jaxlab config` (every key as the override that sets it), `jaxlab inspect` (parameters,
sharding, FLOPs, memory, compile time of a run before it trains) and `jaxlab --version`."""

import math
import re
import shlex

import jax
import pytest

import jaxlab
from jaxlab import cli
from jaxlab import config as config_lib
from jaxlab.errors import USAGE_ERROR
from jaxlab.loop.train import prepare


def test_config_prints_every_key_as_the_override_that_sets_it(capsys):
    assert cli.main(["config", "gedi:smoke", "--config.train.steps=7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "--config.train.steps=7  # int" in lines
    assert "--config.mesh.fsdp=1  # int" in lines
    assert "--config.train.skip_nonfinite_steps=false  # bool" in lines
    # each line, given back as an override, sets what it shows: the same config comes out
    flags = [arg for line in lines for arg in shlex.split(line.split("  # ")[0])]
    again = jaxlab.load_config("gedi:smoke", cli._split_overrides(flags))
    assert config_lib.to_json(again) == config_lib.to_json(
        jaxlab.load_config("gedi:smoke", {"train.steps": 7})
    )


def _inspect(capsys, *args):
    assert cli.main(["inspect", *args]) == 0
    return capsys.readouterr().out


def _total(out):
    return int(re.search(r"^total: ([\d,]+) parameters$", out, re.M)[1].replace(",", ""))


def test_inspect_counts_the_parameters_and_the_flops_of_a_step(capsys):
    out = _inspect(capsys, "mlp_moons:smoke")
    config = jaxlab.load_config("mlp_moons:smoke")
    state = prepare(config).state
    assert _total(out) == sum(x.size for x in jax.tree.leaves(state["params"]))
    assert "sharding" not in out.splitlines()[2]  # a data-parallel mesh: no sharding column
    kernels = [x.size for x in jax.tree.leaves(state["params"]) if x.ndim == 2]
    forward = 2 * config.train.batch_size * sum(kernels)  # multiply-adds of the dense layers
    flops = float(re.search(r"^FLOPs per step .* (\S+) on the 8 device\(s\)$", out, re.M)[1])
    assert 2.5 * forward < flops < 4 * forward  # forward + backward, about 3 x forward
    assert re.search(r"compile time of the one-step chunk: \d+\.\d\d s$", out, re.M)
    assert re.search(r"temporaries \d+\.\d\d MiB", out)


def test_inspect_shows_where_each_parameter_lives_on_a_sharded_mesh(capsys):
    out = _inspect(
        capsys,
        "minimal_transformer:smoke",
        "--config.mesh.fsdp=4",
        "--config.mesh.tensor=2",
        "--config.sharding.fsdp_min_size=64",
    )
    assert "mesh data=1 fsdp=4 tensor=2 (8 cpu device(s))" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("params/")}
    assert rows["params/block0/mlp_in/kernel"].endswith("('fsdp', 'tensor')")
    assert rows["params/head/bias"].endswith("()")
    assert math.prod((16, 32)) == int(rows["params/block0/mlp_in/kernel"].split()[-3])


def test_inspect_reads_a_workdir_and_a_bad_spec_is_one_line(tmp_path, capsys):
    config = jaxlab.load_config("mlp_moons:smoke", {"train.steps": 2, "train.log_every": 1})
    jaxlab.train(config, tmp_path / "run", quiet=True, devices=jax.devices()[:1])
    out = _inspect(capsys, str(tmp_path / "run"), "--config.train.batch_size=128")
    assert out.startswith(f"{tmp_path / 'run'}: mesh data=8 fsdp=1 tensor=1 (8 cpu device(s))")
    assert _total(out) == 4482
    assert cli.main(["inspect", "no_such_experiment"]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("jaxlab: error: ") and err.count("\n") == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"jaxlab {jaxlab.__version__}\n"


def test_the_help_is_plain_text_with_examples_that_parse(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "examples:" in text
    examples = [
        line.strip().split("  ")[0].split()
        for line in text.split("examples:")[1].splitlines()
        if line.startswith("  jaxlab ")
    ]
    assert len(examples) >= 8
    parser = cli._parser()
    for words in examples:  # each example is a command the parser takes (up to a line break)
        if words[-1] != "\\":
            parser.parse_known_args(words[1:])
