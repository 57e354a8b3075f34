"""The attention variants of the transformer-minimization paper: parameter counts and structure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core.meta import unbox

import jaxlab
from jaxlab.errors import UserError
from jaxlab.papers.transformer_minimization.model import (
    SelfAttention,
    VisionTransformer,
    attention_parameter_count,
    parameter_count,
)
from jaxlab.papers.transformer_minimization.variants import ATTENTION_VARIANTS, MULTI_HEAD_VARIANTS
from jaxlab.tasks.classification import parameter_total

VARIANTS = [(v, False) for v in ATTENTION_VARIANTS] + [
    ("symmetric", True),
    ("symmetric_novo", True),
]
HEADS = [(v, t, 1) for v, t in VARIANTS] + [(v, False, 4) for v in MULTI_HEAD_VARIANTS]


@pytest.mark.parametrize("variant,triangular,heads", HEADS)
@pytest.mark.parametrize("use_mlp", [True, False])
def test_parameter_count_formula_is_exact(variant, triangular, heads, use_mlp):
    model = VisionTransformer(
        num_classes=10,
        patch_size=2,
        width=24,
        depth=3,
        heads=heads,
        mlp_dim=40,
        use_mlp=use_mlp,
        attention=variant,
        triangular=triangular,
    )
    image_shape = (8, 6, 3)  # not square, several channels: exercises every term of the formula
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *image_shape)))
    assert parameter_total(params) == parameter_count(model, image_shape)


def test_attention_parameter_counts_match_the_paper():
    n = 60
    assert attention_parameter_count("full", n) == 4 * n * n == 14_400
    for variant in ("wqk", "symmetric"):
        assert attention_parameter_count(variant, n) == 3 * n * n
    for variant in ("wqk_novo", "symmetric_novo"):
        assert attention_parameter_count(variant, n) == n * n
    assert attention_parameter_count("symmetric_novo", n, triangular=True) == n * (n + 1) // 2


@pytest.mark.parametrize("heads", [1, 4])
def test_symmetric_similarity_has_the_papers_parameters_whatever_the_heads(heads):
    """Section 5: W^K_h = W^Q_h of N×N/H, so N² similarity parameters for any H (3,600 at N = 60;
    a head-sliced D×D form would have N²/H = 900 at H = 4)."""
    x = jnp.zeros((1, 5, 60))
    params = unbox(SelfAttention(heads, "symmetric").init(jax.random.key(0), x))["params"]
    assert params["query"]["kernel"].shape == (60, heads, 60 // heads)
    assert parameter_total({"params": {"query": params["query"]}}) == 3_600
    assert parameter_total({"params": params}) == attention_parameter_count("symmetric", 60)


@pytest.mark.parametrize("variant", MULTI_HEAD_VARIANTS)
def test_every_head_sees_every_feature(variant):
    """Changing one input feature moves the scores of every head, whichever feature it is."""
    x = jax.random.normal(jax.random.key(5), (1, 6, 16))
    module = SelfAttention(4, variant)
    params = module.init(jax.random.key(6), x)
    scores = lambda x: module.apply(params, x, mutable=["intermediates"])[1]["intermediates"][
        "scores"
    ][0]
    before_BHTT = scores(x)
    for feature in range(16):
        moved_BHTT = scores(x.at[0, 2, feature].add(1.0))
        change_H = jnp.abs(moved_BHTT - before_BHTT).max(axis=(0, 2, 3))
        assert (change_H > 1e-3).all(), (feature, change_H)


def _scores(variant, triangular, x, heads):
    module = SelfAttention(heads, variant, triangular)
    params = module.init(jax.random.key(1), x)
    out, state = module.apply(params, x, mutable=["intermediates"])
    return out, state["intermediates"]["scores"][0]


@pytest.mark.parametrize(
    "variant,triangular",
    [("symmetric", False), ("symmetric_novo", False), ("symmetric_novo", True)],
)
def test_symmetric_scores_are_symmetric(variant, triangular):
    x = jax.random.normal(jax.random.key(2), (2, 7, 8))
    _, scores_BHTT = _scores(variant, triangular, x, heads=2 if variant == "symmetric" else 1)
    np.testing.assert_allclose(scores_BHTT, jnp.swapaxes(scores_BHTT, -1, -2), atol=1e-5)
    _, asymmetric = _scores("wqk", False, x, heads=1)
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


def test_collapsed_variant_trains_through_the_api(tmp_path):
    config = jaxlab.load_config(
        "minimal_transformer:smoke,attention=symmetric_novo,mlp=False,triangular",
        {"train.steps": 150, "train.eval_every": 50, "optimizer.learning_rate": 1e-2},
    )
    final = jaxlab.train(config, tmp_path, quiet=True)
    assert final["eval/accuracy"] > 0.5  # 10 classes: chance is 0.1


@pytest.mark.parametrize(
    "preset,match",
    [
        ("attention=wq", "config.model.attention='wq' is unknown"),
        ("attention=wqk,triangular", "triangular=True needs a symmetric attention"),
        ("heads=3", "width=16 is not divisible by config.model.heads=3"),
        ("attention=wqk,heads=4", "heads=4: wqk is defined for one head"),
        ("attention=symmetric_novo,heads=2", "heads=2: symmetric_novo is defined for one head"),
        (
            "attention=symmetric,triangular,heads=4",
            "heads=4: symmetric with triangular=True is defined for one head",
        ),
    ],
)
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
    model = VisionTransformer(
        num_classes=10, patch_size=2, width=n, depth=depth, heads=1, mlp_dim=256, use_mlp=use_mlp
    )
    ours = parameter_count(model, (28, 28, 1))
    assert ours + depth * 4 * n + 2 * n - (depth * 2 * n if use_mlp else 0) == paper_count


def test_report_grids_and_the_papers_optimizer():
    """The report's grids (one program per variant under --vmap, its seeds traced), Adam as the
    paper's optimizer by default and AdamW as ours."""
    from jaxlab.experiments import minimal_transformer as experiment

    paper = experiment.get_sweep("report,dataset=shapes")
    assert len(paper) == 12 * len(experiment.SEEDS)
    assert len({tuple(sorted(p.items())) for p in paper}) == len(paper)
    assert {p["config.model.mlp"] for p in paper} == {True, False}
    extensions = experiment.get_sweep("study=extensions")
    assert {(p["config.model.attention"], p["config.model.triangular"]) for p in extensions} == {
        ("symmetric_novo", False),
        ("symmetric_novo", True),
    }
    with pytest.raises(UserError, match="unknown study 'grid'"):
        experiment.get_sweep("study=grid")
    adam = jaxlab.load_config("minimal_transformer").optimizer
    assert (adam.name, adam.weight_decay) == ("adam", 0.0)
    adamw = jaxlab.load_config("minimal_transformer:optimizer=adamw").optimizer
    assert (adamw.name, adamw.weight_decay) == ("adamw", 1e-4)
    with pytest.raises(UserError, match="preset optimizer='sgd' is unknown"):
        jaxlab.load_config("minimal_transformer:optimizer=sgd")
    shapes = jaxlab.load_config("minimal_transformer:report,dataset=shapes").train
    assert (shapes.steps, shapes.eval_every) == (experiment.REPORT_STEPS["shapes"], 1000)
    assert jaxlab.load_config("minimal_transformer:report,steps=200").train.steps == 200
