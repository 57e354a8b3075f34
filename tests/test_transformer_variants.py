"""The attention variants of the transformer-minimization paper: parameter counts and structure."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.papers.transformer_minimization.model import (ATTENTION_VARIANTS, SelfAttention, VisionTransformer,
                                       attention_parameter_count, parameter_count)
from jaxlab.tasks.classification import parameter_total

VARIANTS = [(v, False) for v in ATTENTION_VARIANTS] + [("symmetric", True),
                                                       ("symmetric_novo", True)]


@pytest.mark.parametrize("variant,triangular", VARIANTS)
@pytest.mark.parametrize("use_mlp", [True, False])
@pytest.mark.parametrize("heads", [1, 4])
def test_parameter_count_formula_is_exact(variant, triangular, use_mlp, heads):
    model = VisionTransformer(num_classes=10, patch_size=2, width=24, depth=3, heads=heads,
                              mlp_dim=40, use_mlp=use_mlp, attention=variant,
                              triangular=triangular)
    image_shape = (8, 6, 3)  # not square, several channels: exercises every term of the formula
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *image_shape)))
    assert parameter_total(params) == parameter_count(model, image_shape)


def test_attention_parameter_counts_match_the_paper_table():
    n = 12
    assert attention_parameter_count("full", n, 1) == 4 * n * n
    for variant in ("wqk", "symmetric"):
        assert attention_parameter_count(variant, n, 1) == 3 * n * n
    for variant in ("wqk_novo", "symmetric_novo"):
        assert attention_parameter_count(variant, n, 1) == n * n
    assert attention_parameter_count("symmetric_novo", n, 1, triangular=True) == n * (n + 1) // 2
    assert attention_parameter_count("wqk_novo", n, 3) == n * n // 3  # 3 heads of 4x4


def _scores(variant, triangular, x, heads):
    module = SelfAttention(heads, variant, triangular)
    params = module.init(jax.random.key(1), x)
    out, state = module.apply(params, x, mutable=["intermediates"])
    return out, state["intermediates"]["scores"][0]


@pytest.mark.parametrize("variant,triangular", [("symmetric", False), ("symmetric_novo", False),
                                                ("symmetric_novo", True)])
def test_symmetric_scores_are_symmetric(variant, triangular):
    x = jax.random.normal(jax.random.key(2), (2, 7, 8))
    _, scores_BHTT = _scores(variant, triangular, x, heads=2)
    np.testing.assert_allclose(scores_BHTT, jnp.swapaxes(scores_BHTT, -1, -2), atol=1e-5)
    _, asymmetric = _scores("wqk", False, x, heads=2)
    assert not np.allclose(asymmetric, jnp.swapaxes(asymmetric, -1, -2), atol=1e-3)


def _mixing_matrix(x_TN, y_TN):
    """A with y = A x (exact when the rows of x are independent), and the fit's residual."""
    a_TT = y_TN @ np.linalg.pinv(x_TN)
    return a_TT, np.abs(a_TT @ x_TN - y_TN).max()


@pytest.mark.parametrize("variant", ["wqk_novo", "symmetric_novo"])
def test_novo_outputs_are_convex_combinations_of_inputs(variant):
    x = np.asarray(jax.random.normal(jax.random.key(3), (1, 5, 8)), np.float64)
    out, _ = _scores(variant, False, jnp.asarray(x, jnp.float32), heads=1)
    a_TT, residual = _mixing_matrix(x[0], np.asarray(out[0], np.float64))
    assert residual < 1e-4
    assert (a_TT > -1e-4).all()
    np.testing.assert_allclose(a_TT.sum(axis=1), 1.0, atol=1e-4)
    # With W^V and W^O the outputs leave the span of the inputs: the check above can fail.
    kept, _ = _scores(variant.removesuffix("_novo"), False, jnp.asarray(x, jnp.float32), heads=1)
    assert _mixing_matrix(x[0], np.asarray(kept[0], np.float64))[1] > 1e-2


def test_novo_heads_mix_their_own_slice():
    x = np.asarray(jax.random.normal(jax.random.key(4), (1, 3, 8)), np.float64)
    out, _ = _scores("wqk_novo", False, jnp.asarray(x, jnp.float32), heads=2)
    for h in range(2):
        part = slice(4 * h, 4 * h + 4)
        a_TT, residual = _mixing_matrix(x[0, :, part], np.asarray(out[0, :, part], np.float64))
        assert residual < 1e-4 and (a_TT > -1e-4).all()
        np.testing.assert_allclose(a_TT.sum(axis=1), 1.0, atol=1e-4)


def test_collapsed_variant_trains_through_the_api(tmp_path):
    config = jaxlab.load_config("minimal_transformer:smoke,attention=symmetric_novo,mlp=False,"
                                "triangular", {"train.steps": 150, "train.eval_every": 50,
                                               "optimizer.learning_rate": 1e-2})
    final = jaxlab.train(config, tmp_path, quiet=True)
    assert final["eval/accuracy"] > 0.5  # 10 classes: chance is 0.1


@pytest.mark.parametrize("preset,match", [
    ("attention=wq", "config.model.attention='wq' is unknown"),
    ("attention=wqk,triangular", "triangular=True needs a symmetric attention"),
    ("heads=3", "width=16 is not divisible by config.model.heads=3"),
])
def test_bad_model_config_is_a_user_error(preset, match, tmp_path):
    config = jaxlab.load_config(f"minimal_transformer:smoke,{preset}")
    with pytest.raises(UserError, match=match):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("use_mlp,paper_count", [(True, 287_686), (False, 101_470)])
def test_paper_mnist_counts_from_our_formula(use_mlp, paper_count):
    """The paper's MNIST counts (6 encoders) are width 60, 2x2 patches, MLP width 256, once our
    model gets what the paper's model has besides: biases on Q, K, V, O (4N per encoder), a class
    token with its position (2N), and one LayerNorm per encoder instead of two when it has an MLP.
    """
    n, depth = 60, 6
    model = VisionTransformer(num_classes=10, patch_size=2, width=n, depth=depth, heads=1,
                              mlp_dim=256, use_mlp=use_mlp)
    ours = parameter_count(model, (28, 28, 1))
    assert ours + depth * 4 * n + 2 * n - (depth * 2 * n if use_mlp else 0) == paper_count
