"""bfloat16 mixed precision (config.train.compute_dtype): bf16 matmuls in the compiled step,
float32 parameters, optimizer state and loss; training within a stated tolerance of float32."""

import jax
import jax.numpy as jnp
import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare

# Measured on the smoke presets (docs/sharding.md): final train loss within 0.5% and test
# accuracy (GEDI's NMI, Koopman's NRMSE at 5 steps) within 0.3 points of float32; the bounds
# leave room for other machines' rounding.
LOSS_RTOL, ACCURACY_ATOL = 0.02, 0.02


def _dots(config):
    setup = prepare(config)
    arrays = jax.device_put(setup.task.data.train, setup.program.state_sharding["step"])
    text = jax.jit(setup.program.step_function(1)).lower(setup.state, arrays).as_text()
    return setup, [line for line in text.splitlines() if "dot_general" in line]


@pytest.mark.parametrize(
    "spec", [pytest.param("minimal_transformer:smoke", marks=pytest.mark.slow), "mlp_moons:smoke"]
)
def test_bfloat16_runs_its_matmuls_in_bf16_and_trains_as_float32_does(spec, tmp_path):
    f32 = jaxlab.load_config(spec)
    bf16 = jaxlab.load_config(spec, {"train.compute_dtype": "bfloat16"})
    setup, dots = _dots(bf16)
    assert dots and all("bf16" in line for line in dots)
    assert not [line for line in _dots(f32)[1] if "bf16" in line]
    assert {x.dtype for x in jax.tree.leaves(setup.state["params"])} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(setup.state["opt_state"]) if x.ndim} == {
        jnp.dtype("float32")
    }
    a = jaxlab.train(f32, tmp_path / "f32", quiet=True)
    b = jaxlab.train(bf16, tmp_path / "bf16", quiet=True)
    assert b["train/loss"] == pytest.approx(a["train/loss"], rel=LOSS_RTOL)
    assert b["eval/accuracy"] == pytest.approx(a["eval/accuracy"], abs=ACCURACY_ATOL)


def test_a_model_without_a_dtype_argument_is_refused_bfloat16_in_one_line(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(
        "import flax.linen as nn\n\n"
        "class Net(nn.Module):\n"
        "    num_classes: int\n\n"
        "    @nn.compact\n"
        "    def __call__(self, x):\n"
        "        return nn.Dense(self.num_classes)(x)\n"
    )
    config = jaxlab.load_config(
        "mlp_moons:smoke",
        {"train.compute_dtype": "bfloat16", "model.constructor": f"{model}:Net"},
    )
    with pytest.raises(UserError, match="net.py:Net takes none"):
        jaxlab.train(config, tmp_path / "run", quiet=True)


@pytest.mark.slow
@pytest.mark.parametrize("spec, metric", [("gedi:smoke", "nmi"), ("koopman:smoke", "nrmse_std_5")])
def test_the_papers_networks_compute_in_bf16_and_train_as_float32_does(spec, metric, tmp_path):
    """GEDI's MLP and the Koopman encoder and decoder run their matmuls in bf16; energies,
    latents, the Koopman matrix and the losses stay float32 (so some dots stay float32)."""
    f32 = jaxlab.load_config(spec)
    bf16 = jaxlab.load_config(spec, {"train.compute_dtype": "bfloat16"})
    setup, dots = _dots(bf16)
    assert [line for line in dots if "bf16" in line]
    assert not [line for line in _dots(f32)[1] if "bf16" in line]
    assert {x.dtype for x in jax.tree.leaves(setup.state["params"])} == {jnp.dtype("float32")}
    a = jaxlab.train(f32, tmp_path / "f32", quiet=True)
    b = jaxlab.train(bf16, tmp_path / "bf16", quiet=True)
    assert b["train/loss"] == pytest.approx(a["train/loss"], rel=LOSS_RTOL)
    assert b[f"eval/{metric}"] == pytest.approx(a[f"eval/{metric}"], abs=ACCURACY_ATOL)


def test_an_unknown_compute_dtype_is_one_line():
    with pytest.raises(UserError, match="compute_dtype must be one of float32, bfloat16"):
        jaxlab.load_config("mlp_moons:smoke", {"train.compute_dtype": "float16"})
