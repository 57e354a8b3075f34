"""A vmapped sweep's trials split over the mesh's ``trial`` axis: the mesh chosen for a group,
results equal to replicated trials with data-parallel batches, and the CPU devices the CLI gives
a vmapped sweep."""

import os
import re
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

import jaxlab
from jaxlab import cli, parallel, tasks
from jaxlab.errors import UserError
from jaxlab.rundir.checkpoint import Checkpoints
from jaxlab.sweep import axis, product
from jaxlab.sweep.trials import TrialGroup, TrialProgram
from tests.test_cli import jaxlab_cli


@pytest.mark.parametrize(
    "sizes, devices, trials, shape",
    [
        ({"trial": 0, "data": -1}, 8, 64, (8, 1, 1, 1)),  # every device holds whole trials
        ({"trial": 0, "data": -1}, 8, 6, (2, 1, 1, 1)),  # gcd(6, 8) = 2 devices, 3 trials each
        ({"trial": 0, "data": -1}, 8, 1, (1, 1, 1, 1)),  # a group of one: its batch whole, too
        ({"trial": 0, "data": -1}, 8, None, (1, 8, 1, 1)),  # a single run: data parallel
        ({"trial": 0, "data": 2}, 8, 64, (4, 2, 1, 1)),  # each batch over 2 devices, as asked
        ({"trial": 0, "data": 2}, 8, 2, (2, 2, 1, 1)),
        ({"trial": 4, "data": -1}, 8, 64, (4, 2, 1, 1)),
        ({"trial": 1, "data": -1}, 8, 64, (1, 8, 1, 1)),  # replicated trials
    ],
)
def test_the_trial_axis_takes_as_many_devices_as_divide_the_trials(sizes, devices, trials, shape):
    assert parallel.mesh_shape(sizes, devices, trials) == shape


@pytest.mark.parametrize(
    "sizes, trials, message",
    [
        ({"trial": 3, "data": -1}, 64, "config.mesh.trial=3 does not divide the 64 trials"),
        ({"trial": 2, "data": -1}, None, "does not divide the 1 trials trained as one program (a "),
        ({"trial": 8, "data": 2}, 64, "needs 16 devices; there are 8"),
    ],
)
def test_a_trial_axis_that_does_not_fit_is_one_line(sizes, trials, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parallel.mesh_shape(sizes, 8, trials)


def test_a_negative_trial_axis_is_refused_by_the_config_check():
    with pytest.raises(UserError, match=r"config.mesh.trial must be a positive int or 0"):
        jaxlab.load_config("mlp_moons:smoke", {"mesh.trial": -1})


def test_each_device_holds_whole_trials_of_the_stacked_state():
    configs = [jaxlab.load_config("mlp_moons:smoke", {"seed": s}) for s in range(16)]
    group = TrialGroup.of(configs)
    mesh = parallel.make_mesh(None, group.base.mesh, group.size)
    assert dict(mesh.shape) == {"trial": 8, "data": 1, "fsdp": 1, "tensor": 1}
    state = TrialProgram(group, tasks.build(group.base), mesh).init()
    for leaf in jax.tree.leaves(state):
        assert leaf.sharding.spec[0] == "trial"
        assert [shard.data.shape[0] for shard in leaf.addressable_shards] == [2] * 8


@pytest.mark.slow  # two 8-trial sweeps; test_sweep.py compares 2 trials over devices too
def test_trials_over_devices_equal_replicated_trials_with_data_parallel_batches(tmp_path):
    points = product(axis("seed", [0, 1, 2, 3]), axis("optimizer.learning_rate", [1e-3, 3e-3]))
    rows = {}
    for name, mesh in {"over devices": {}, "replicated": {"mesh.trial": 1}}.items():
        rows[name] = jaxlab.sweep(
            "mlp_moons:smoke", points, tmp_path / name, vmap=True, fixed_overrides=mesh
        )
    assert [row["status"] for row in rows["over devices"]] == ["done"] * 8
    template = None
    for split, whole in zip(rows["over devices"], rows["replicated"]):
        assert split["run"] == whole["run"]
        metrics = [k for k in split if k.startswith(("train/", "eval/")) and k != "train/time"]
        assert "eval/accuracy" in metrics
        for key in metrics:
            np.testing.assert_allclose(split[key], whole[key], rtol=1e-5, atol=1e-6, err_msg=key)
        states = []
        for name in rows:
            with Checkpoints(tmp_path / name / split["run"] / "checkpoints", keep=3) as saved:
                template = template or jaxlab.restore(tmp_path / name / split["run"])[2]
                states.append(saved.restore(split["step"], template))
        chex.assert_trees_all_close(states[0], states[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flags", ["", "--xla_force_host_platform_device_count=3"])
def test_a_vmapped_sweep_process_gets_one_cpu_device_per_core_unless_told(flags):
    env = {**os.environ, "XLA_FLAGS": flags}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    code = (
        "from jaxlab import parallel; parallel.cpu_device_per_core(); "
        "import jax; print(len(jax.devices('cpu')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    expected = 3 if flags else len(os.sched_getaffinity(0))
    assert int(out.stdout) == expected


def _bytes_per_device(seeds: int) -> int:
    configs = [jaxlab.load_config("mlp_moons:smoke", {"seed": s}) for s in range(seeds)]
    group = TrialGroup.of(configs)
    task = tasks.build(group.base)
    mesh = parallel.make_mesh(None, group.base.mesh, group.size)
    return TrialProgram(group, task, mesh).bytes_per_device(task.data.train)


@pytest.mark.slow  # three 16-trial programs and two estimates
def test_a_group_over_the_memory_limit_trains_as_several_programs_with_equal_results(
    tmp_path, capsys
):
    points = [{"seed": s} for s in range(16)]
    whole = jaxlab.sweep("mlp_moons:smoke", points, tmp_path / "whole", vmap=True)
    limit = _bytes_per_device(8)  # 1 trial per device fits, 2 (16 trials on 8 devices) do not
    assert _bytes_per_device(16) > limit
    split = jaxlab.sweep(
        "mlp_moons:smoke", points, tmp_path / "split", vmap=True, quiet=False, group_memory=limit
    )
    sizes = re.findall(r"cut into groups of up to (\d+) runs", capsys.readouterr().out)
    assert sizes == ["8"]  # two programs of 8 runs
    assert [row["status"] for row in split] == ["done"] * 16
    for a, b in zip(whole, split):
        for key in ("train/loss", "eval/loss", "eval/accuracy"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_a_run_over_the_memory_limit_alone_is_one_line_and_no_run_is_written(tmp_path):
    with pytest.raises(UserError, match=r"one run of this vmapped sweep needs about .* MiB of"):
        jaxlab.sweep(
            "mlp_moons:smoke", [{"seed": 0}, {"seed": 1}], tmp_path, vmap=True, group_memory=1000
        )
    assert not any(path.is_dir() for path in tmp_path.iterdir())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--vmap", "--group-memory", "12XB"], "--group-memory must be a size like 512MiB"),
        (["--group-memory", "1GiB"], "--group-memory bounds the programs of --vmap; add --vmap"),
        (["--vmap", "--group-memory", "0"], "--group-memory must be a positive size, got 0"),
    ],
)
def test_a_bad_group_memory_is_one_line(flags, message, tmp_path):
    result = jaxlab_cli(
        "sweep", "mlp_moons:smoke", "--workdir", str(tmp_path / "s"), "--sweep",
        "config.seed=0,1", *flags,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("jaxlab: error: ")
    assert message in lines[0] and not (tmp_path / "s").exists()


def test_group_memory_sizes_read_as_bytes():
    assert [cli._size(t) for t in ("512MiB", "2GiB", "1.5GB", "1000000", "64k")] == [
        512 * 2**20,
        2 * 2**30,
        1_500_000_000,
        1_000_000,
        64_000,
    ]
