"""A Flax NNX model (`jaxlab.models.nnx_bridge`) takes part as a linen one does: it trains with
its BatchNorm statistics as task state, resumes bit for bit, sweeps as one vmapped program, and
exports."""

import json

import jax
import numpy as np
import pytest

import jaxlab
from tests.conftest import REPO, read_jsonl
from tests.test_cli import jaxlab_cli

RUN = {
    "train.steps": 40,
    "train.log_every": 10,
    "train.eval_every": 20,
    "train.checkpoint_every": 20,
}


def nnx_config(**overrides):
    config = jaxlab.load_config("mlp_moons:smoke", {**RUN, **overrides})
    with config.unlocked():
        config.model = dict(
            constructor="jaxlab.models.nnx_bridge:from_nnx",
            nnx_class=f"{REPO / 'tests' / 'models' / 'nnx_mlp.py'}:MLP",  # a user's file
            hidden=32,
            dropout=0.1,
        )
    return config


@pytest.mark.slow  # 11 s: trained twice (one resumed) and exported
def test_an_nnx_model_trains_resumes_exactly_and_exports(tmp_path):
    final = jaxlab.train(nnx_config(), tmp_path / "whole", quiet=True)
    assert final["eval/accuracy"] > 0.75
    _, _, state = jaxlab.restore(tmp_path / "whole")
    assert set(state["params"]["params"]["nnx"]) == {"hidden", "norm", "head"}
    stats = state["task_state"]["batch_stats"]["nnx"]["norm"]
    assert np.abs(np.asarray(stats["mean"])).max() > 1e-2  # updated in training

    jaxlab.train(nnx_config(), tmp_path / "resumed", quiet=True)
    (tmp_path / "resumed" / "checkpoints" / "40").rename(tmp_path / "lost")
    jaxlab.train(nnx_config(), tmp_path / "resumed", quiet=True)
    _, _, resumed = jaxlab.restore(tmp_path / "resumed")
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert read_jsonl(tmp_path / "resumed" / "metrics.jsonl") == read_jsonl(
        tmp_path / "whole" / "metrics.jsonl"
    )

    exported = jaxlab_cli("export", str(tmp_path / "whole"), "--output", str(tmp_path / "served"))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["step"] == 40


def test_nnx_runs_sweep_as_one_vmapped_program_equal_to_single_runs(tmp_path):
    # The single run's layout (each batch over the 8 devices): a batch split over fewer devices
    # sums in another order, which this BatchNorm model grows into a 1e-3 difference of the eval
    # loss in 40 steps (as a single run on 1 device against 8 does).
    rows = jaxlab.sweep(
        nnx_config(),
        [{"seed": 0}, {"seed": 1}],
        tmp_path / "sweep",
        vmap=True,
        fixed_overrides={"mesh.trial": 1},
    )
    assert [row["status"] for row in rows] == ["done", "done"]
    single = jaxlab.train(nnx_config(seed=1), tmp_path / "single", quiet=True)
    (one,) = [row for row in rows if row["seed"] == 1]
    np.testing.assert_allclose(one["eval/loss"], single["eval/loss"], rtol=1e-5)
