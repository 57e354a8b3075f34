"""Parameters sharded over a named mesh (data, fsdp, tensor): the same training as one device,
memory that shrinks with the mesh, checkpoints restored onto another mesh, one-line errors."""

import math
import signal

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache as persistent_cache

import jaxlab
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare
from tests.conftest import read_jsonl

MESHES = {  # name -> (config.mesh overrides, devices)
    "one device": ({}, 1),
    "DP(8)": ({}, 8),
    "FSDP(8)": ({"mesh.fsdp": 8}, 8),
    "FSDP(4) x tensor(2)": ({"mesh.fsdp": 4, "mesh.tensor": 2}, 8),
}
SMALL_LEAVES = {"sharding.fsdp_min_size": 64}  # the smoke models' leaves are small: shard them


def _losses(spec, overrides, devices, workdir):
    config = jaxlab.load_config(spec, {"train.log_every": 2, **SMALL_LEAVES, **overrides})
    jaxlab.train(config, workdir, quiet=True, devices=jax.devices()[:devices])
    return [r["train/loss"] for r in read_jsonl(workdir / "metrics.jsonl")]


@pytest.mark.parametrize(
    "spec", [pytest.param("minimal_transformer:smoke", marks=pytest.mark.slow), "mlp_moons:smoke"]
)
def test_dp_fsdp_and_fsdp_by_tensor_train_as_one_device_does(spec, tmp_path):
    losses = {
        name: _losses(spec, overrides, devices, tmp_path / str(i))
        for i, (name, (overrides, devices)) in enumerate(MESHES.items())
    }
    one = losses.pop("one device")
    assert len(one) >= 10
    for name, values in losses.items():
        np.testing.assert_allclose(values, one, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_model_without_axis_names_still_gets_fsdp():
    config = jaxlab.load_config("mlp_moons:smoke", {"mesh.fsdp": 8, **SMALL_LEAVES})
    setup = prepare(config)
    boxed = jax.eval_shape(setup.program._init_named, None)
    assert not [x for x in jax.tree.leaves(boxed, is_leaf=_named) if _named(x)]  # no names
    kernels = [x for x in jax.tree.leaves(setup.state["params"]) if x.ndim == 2]
    assert kernels and all("fsdp" in x.sharding.spec for x in kernels)


def _named(x):
    return isinstance(x, nn.Partitioned)


def test_fsdp_holds_an_eighth_of_each_sharded_leaf_and_the_rest_only_where_the_rules_say():
    config = jaxlab.load_config(
        "minimal_transformer:smoke", {"mesh.fsdp": 8, "model.width": 64, "model.mlp_dim": 128}
    )
    state = prepare(config).state
    leaves = jax.tree.leaves(state)
    total = sum(x.nbytes for x in leaves)
    replicated = [x for x in leaves if x.sharding.is_fully_replicated]
    for device in range(8):
        held = sum(
            shard.data.nbytes
            for x in leaves
            for shard in x.addressable_shards
            if shard.device == jax.devices()[device]
        )
        assert held == sum(x.nbytes for x in replicated) + sum(
            x.nbytes // 8 for x in leaves if not x.sharding.is_fully_replicated
        )
    min_size = config.sharding.fsdp_min_size
    assert all(x.size < min_size or x.ndim == 0 for x in replicated)
    assert sum(x.nbytes for x in replicated) < 0.05 * total
    opt_leaves = jax.tree.leaves(state["opt_state"])
    params = {x.shape: x.sharding.spec for x in jax.tree.leaves(state["params"])}
    assert all(x.sharding.spec == params[x.shape] for x in opt_leaves if x.shape in params)


def _gathered(state):
    return jax.tree.map(np.asarray, jax.device_get(state))


def test_a_sharded_checkpoint_restores_bit_exact_onto_other_meshes(tmp_path):
    config = jaxlab.load_config(
        "minimal_transformer:smoke", {"mesh.fsdp": 8, "train.steps": 10, **SMALL_LEAVES}
    )
    jaxlab.train(config, tmp_path, quiet=True)
    _, setup, saved = jaxlab.restore(tmp_path)
    assert any("fsdp" in x.sharding.spec for x in jax.tree.leaves(saved["params"]))
    reference = _gathered(saved)
    for mesh, devices in [
        ({"fsdp": 4, "tensor": 2}, 8),
        ({"fsdp": 1}, 1),
        ({"fsdp": 1}, 8),
    ]:
        _, setup, state = jaxlab.restore(tmp_path, jax.devices()[:devices], mesh)
        assert dict(setup.mesh.shape)["fsdp"] == mesh["fsdp"]
        jax.tree.map(np.testing.assert_array_equal, _gathered(state), reference)


def test_a_run_resumes_on_another_mesh_without_a_config_change(tmp_path):
    overrides = {"train.steps": 10, "train.checkpoint_every": 10, **SMALL_LEAVES}
    jaxlab.train(
        jaxlab.load_config("minimal_transformer:smoke", {**overrides, "mesh.fsdp": 8}), tmp_path
    )
    other_mesh = {**overrides, "mesh.fsdp": 4, "mesh.tensor": 2}
    final = jaxlab.train(  # not refused: the mesh is where the state lives, not the run
        jaxlab.load_config("minimal_transformer:smoke", other_mesh), tmp_path, quiet=True
    )
    assert final["step"] == 10


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mesh.fsdp": 3}, "config.mesh data=-1 fsdp=3 tensor=1 needs 3 x k devices; there are 8"),
        (
            {"mesh.fsdp": 8, "train.batch_size": 12},
            "batch_size=12 is not divisible by the 8 parts the mesh splits a batch into "
            r"\(data=1 x fsdp=8\)",
        ),
        (
            {"mesh.tensor": 8},
            r"parameter params/block0/attention/key/kernel \(shape \(16, 4, 4\)\): its heads "
            "dimension of size 4 "
            r"cannot be split over tensor \(8 devices\)",
        ),
        ({"mesh.fsdp": 0}, "config.mesh.fsdp must be a positive int or -1, got 0"),
        ({"sharding.embed": "fdsp"}, "config.sharding.embed must name a mesh axis"),
    ],
)
def test_a_mesh_or_rule_that_cannot_split_the_run_is_one_line(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message) as raised:
        config = jaxlab.load_config("minimal_transformer:smoke", overrides)
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists()


def test_a_vmapped_sweep_of_a_sharded_run_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="--vmap stacks its trials on a replicated state"):
        jaxlab.sweep(
            "minimal_transformer:smoke",
            [{"seed": 0}, {"seed": 1}],
            tmp_path,
            fixed_overrides={"mesh.fsdp": 8},
            vmap=True,
            quiet=True,
        )
    assert not any(tmp_path.iterdir())


def test_the_mesh_splits_the_batch_over_data_and_fsdp():
    config = jaxlab.load_config("minimal_transformer:smoke", {"mesh.fsdp": 4})
    mesh = prepare(config).mesh
    assert dict(mesh.shape) == {"trial": 1, "data": 2, "fsdp": 4, "tensor": 1}
    assert math.prod(mesh.shape.values()) == 8


def test_a_sharded_cpu_run_never_loads_executables_from_the_persistent_cache(tmp_path):
    """XLA's CPU runtime deadlocks in the collectives of a sharded executable loaded from the
    cache; a run whose mesh shards its state turns the cache off, even one an earlier run opened."""
    names = (
        "compilation_cache_dir",
        "enable_compilation_cache",
        "persistent_cache_min_compile_time_secs",
    )
    before = {name: getattr(jax.config, f"jax_{name}") for name in names}
    cache = tmp_path / "cache"
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_enable_compilation_cache", True)  # an earlier test may have refused it
    persistent_cache.reset_cache()  # and it may be open on another directory
    try:
        jaxlab.train(
            jaxlab.load_config("mlp_moons:smoke", {"train.steps": 2}),
            tmp_path / "dp",
            quiet=True,
        )
        written = set(cache.iterdir())
        assert written  # the data-parallel run used the cache
        config = jaxlab.load_config("mlp_moons:smoke", {"mesh.fsdp": 8, **SMALL_LEAVES})
        jaxlab.train(config, tmp_path / "fsdp", quiet=True)
        assert set(cache.iterdir()) == written
        assert not jax.config.jax_enable_compilation_cache
    finally:
        for name, value in before.items():
            jax.config.update(f"jax_{name}", value)
        persistent_cache.reset_cache()


@pytest.mark.slow
def test_kill_9_of_a_sharded_run_resumes_exactly(tmp_path):
    """A `jaxlab train` of FSDP(4) x tensor(2) killed after a chunk and during a checkpoint write
    resumes to the uninterrupted run's records and bit-identical state."""
    from tests.test_faults import (
        EIGHT_DEVICES,
        assert_same_run,
        finish,
        launch,
        logged_step,
        wait_for,
    )

    mesh = ["--config.mesh.fsdp=4", "--config.mesh.tensor=2", "--config.sharding.fsdp_min_size=64"]
    cache, reference, workdir = tmp_path / "cache", tmp_path / "reference", tmp_path / "run"
    status, err = finish(launch(reference, cache, mesh), reference)
    assert status == 0, err
    writes = workdir / "checkpoints"
    process = launch(workdir, cache, mesh)
    wait_for(lambda: logged_step(workdir) >= 14, process)
    process.kill()
    assert finish(process, workdir)[0] == -signal.SIGKILL
    unfinished = set(writes.glob("*.orbax-checkpoint-tmp*"))
    process = launch(workdir, cache, mesh)
    wait_for(lambda: set(writes.glob("*.orbax-checkpoint-tmp*")) - unfinished, process)
    process.kill()
    assert finish(process, workdir)[0] == -signal.SIGKILL
    status, err = finish(launch(workdir, cache, mesh), workdir)
    assert status == 0, err
    assert_same_run(workdir, reference, EIGHT_DEVICES)
