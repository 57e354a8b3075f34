"""GEDI: its loss terms, the clustering metrics, SGLD, and a smoke run through the trainer."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab
from jaxlab.errors import UserError
from jaxlab.loop.train import prepare
from jaxlab.papers.gedi import clustering, ebm
from jaxlab.papers.gedi.model import energy
from jaxlab.papers.gedi.task import augment, generative_loss, invariance_loss, uniformity_loss
from jaxlab.rundir.checkpoint import Checkpoints

LN3 = math.log(3.0)


def test_energy_is_minus_logsumexp_of_the_logits():
    np.testing.assert_allclose(
        energy(jnp.array([[0.0, 0.0], [LN3, 0.0]])), [-math.log(2.0), -math.log(4.0)], rtol=1e-6
    )


def test_invariance_loss_is_the_cross_entropy_between_views():
    # view 1: p = (1/4, 3/4); view 2: p = (1/2, 1/2) -> -(1/2 log 1/4 + 1/2 log 3/4)
    loss = invariance_loss(jnp.array([[0.0, LN3]]), jnp.array([[0.0, 0.0]]))
    np.testing.assert_allclose(loss, -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)), rtol=1e-6)
    # identical confident views cost almost nothing
    assert invariance_loss(jnp.array([[30.0, 0.0]]), jnp.array([[30.0, 0.0]])) < 1e-6


def test_uniformity_loss_is_minimal_at_a_uniform_batch_marginal():
    # p = (1/4, 3/4) and (3/4, 1/4): marginal (1/2, 1/2) -> K log K = 2 log 2
    balanced = uniformity_loss(jnp.array([[0.0, LN3], [LN3, 0.0]]))
    np.testing.assert_allclose(balanced, 2 * math.log(2.0), rtol=1e-6)
    # both points in cluster 0 with p = 3/4: marginal (3/4, 1/4)
    skewed = uniformity_loss(jnp.array([[LN3, 0.0], [LN3, 0.0]]))
    np.testing.assert_allclose(skewed, -(math.log(0.75) + math.log(0.25)), rtol=1e-6)
    assert skewed > balanced


def test_uniformity_loss_is_finite_for_one_hot_assignments():
    # every point in cluster 0 with a logit gap of 200: p(cluster 1) = e^-200 underflows float32,
    # so the mean of the softmax is 0 there; in log space the term is -log(1) - (-200) = 200
    one_hot = jnp.array([[0.0, -200.0], [0.0, -200.0], [0.0, -200.0]])
    np.testing.assert_allclose(uniformity_loss(one_hot), 200.0, rtol=1e-6)
    grads = jax.grad(uniformity_loss)(one_hot)
    assert np.isfinite(np.asarray(grads)).all()


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_a_term_of_weight_zero_is_not_computed(monkeypatch, weight):
    """A term that would be infinite cannot make the loss NaN as 0 * inf once left out."""
    from jaxlab import tasks
    from jaxlab.papers.gedi import task as gedi_task

    monkeypatch.setattr(gedi_task, "invariance_loss", lambda *_: jnp.array(jnp.inf))
    config = jaxlab.load_config("gedi:smoke", {"loss.invariance": weight})
    task = tasks.build(config)
    batch = {"x": jnp.asarray(task.data.train["x"][:64])}
    params, task_state = task.init(jax.random.PRNGKey(0), batch)
    total, (metrics, _) = task.loss(params, task_state, batch, jax.random.PRNGKey(1))
    if weight == 0.0:
        assert np.isfinite(total) and "loss_invariance" not in metrics
    else:  # computed: the infinite term reaches the loss
        assert not np.isfinite(total) and metrics["loss_invariance"] == np.inf


def test_the_density_check_passes_the_rings_and_fails_a_filled_disc():
    """On the circles, an energy that follows the rings separates off-data points (hole, gap,
    corners) from the data; the energy of a filled disc, low inside radius 1.1, does not, though
    it too puts data below uniform noise."""
    from jaxlab.data import toy2d
    from jaxlab.papers.gedi import density

    data = toy2d.load("circles", num_train=2000, num_test=1000, noise=0.1, factor=0.5, seed=0)
    radius = lambda x: np.linalg.norm(x, axis=-1)
    rings = lambda x: np.minimum(abs(radius(x) - 0.5), abs(radius(x) - 1.0))
    disc = lambda x: np.where(radius(x) < 1.1, 0.0, radius(x) - 1.1)
    box = np.random.default_rng(0).uniform(-1.6, 1.6, (20000, 2))
    off = density.off_data(box, data.train["x"], data.test["x"])
    assert (radius(off) < 0.3).any() and (abs(radius(off) - 0.75) < 0.05).any()  # hole, gap
    assert (radius(off) < radius(data.train["x"]).max()).all()  # nothing outside the hull
    test = data.test["x"]
    assert density.separation_auc(rings(off), rings(test)) > 0.95
    assert density.separation_auc(disc(off), disc(test)) < 0.75
    assert disc(box).mean() > disc(test).mean()  # the check this one replaces: passed by both

    def sampled_off_data(points):
        return density.far_from_data(points, data.train["x"], test).mean()

    held_out = toy2d.load("circles", num_train=2000, noise=0.1, factor=0.5, seed=1).train["x"]
    assert sampled_off_data(held_out) < 0.02  # samples of the data: 1% by construction
    assert sampled_off_data(box[radius(box) < 1.1]) > 0.04  # a filled disc's samples


def test_generative_loss_is_data_energy_minus_sample_energy():
    np.testing.assert_allclose(generative_loss(jnp.array([1.0, 2.0]), jnp.array([3.0, 5.0])), -2.5)


def test_hungarian_accuracy_and_nmi_ignore_a_permutation_of_cluster_names():
    labels = np.array([0, 0, 1, 1, 2, 2])
    permuted = np.array([2, 2, 0, 0, 1, 1])
    assert clustering.hungarian_accuracy(labels, permuted) == 1.0
    assert clustering.nmi(labels, permuted) == pytest.approx(1.0)
    one_wrong = np.array([2, 2, 0, 1, 1, 1])
    assert clustering.hungarian_accuracy(labels, one_wrong) == pytest.approx(5 / 6)
    # more clusters than labels: the unmatched cluster's point counts as an error
    assert clustering.hungarian_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 2])) == 0.75


def test_cluster_entropy_is_one_for_balanced_and_zero_for_collapsed_clusters():
    assert clustering.cluster_entropy(np.array([0, 1, 2, 0, 1, 2]), 3) == pytest.approx(1.0)
    collapsed = clustering.cluster_entropy(np.array([1, 1, 1, 1]), 3)
    assert collapsed == 0.0 and str(collapsed) == "0.0"  # not -0.0
    assert 0.0 < clustering.cluster_entropy(np.array([0, 0, 0, 1]), 2) < 1.0


def test_sgld_lowers_the_energy_of_a_quadratic_on_average():
    low, high = jnp.full((2,), -3.0), jnp.full((2,), 3.0)
    x0 = ebm.uniform_in_box(jax.random.PRNGKey(0), 512, low, high)
    quadratic = lambda x: 0.5 * jnp.sum(x**2, -1)  # noqa: E731
    x = ebm.sgld(
        quadratic,
        x0,
        jax.random.PRNGKey(1),
        steps=30,
        step_size=0.1,
        noise_std=0.05,
        low=low,
        high=high,
    )
    assert float(quadratic(x).mean()) < 0.1 * float(quadratic(x0).mean())
    assert bool(jnp.all((x >= low) & (x <= high)))


def test_draw_chains_restarts_with_the_given_probability():
    low, high = jnp.zeros(2), jnp.ones(2)
    buffer = jnp.full((100, 2), 7.0)  # outside the box: restarted chains are recognisable
    idx, kept = ebm.draw_chains(buffer, jax.random.PRNGKey(0), 50, 0.0, low, high)
    assert len(set(np.asarray(idx).tolist())) == 50 and bool(jnp.all(kept == 7.0))
    _, fresh = ebm.draw_chains(buffer, jax.random.PRNGKey(0), 50, 1.0, low, high)
    assert bool(jnp.all((fresh >= 0.0) & (fresh <= 1.0)))


def test_image_augmentation_shifts_within_one_pixel():
    image = jnp.zeros((1, 8, 8, 1)).at[0, 4, 4, 0].set(1.0)
    views = jnp.concatenate([augment(jax.random.PRNGKey(s), image, 0.0, 1) for s in range(20)])
    rows, cols = jnp.nonzero(views[..., 0].sum(0))
    assert views.shape == (20, 8, 8, 1) and float(views.sum()) == 20.0
    assert set(np.asarray(rows).tolist()) <= {3, 4, 5} and len(set(np.asarray(cols).tolist())) > 1


def test_bad_variant_is_refused():
    with pytest.raises(UserError, match="variant must be one of"):
        jaxlab.load_config("gedi:variant=no_everything")


def test_smoke_run_gives_finite_metrics_plots_and_moves_the_replay_buffer(tmp_path):
    config = jaxlab.load_config("gedi:smoke")
    final = jaxlab.train(config, tmp_path, quiet=True)
    for key in (
        "eval/nmi",
        "eval/accuracy",
        "eval/cluster_entropy",
        "eval/energy_data",
        "eval/energy_uniform",
        "eval/confidence",
        "eval/confident_fraction",
        "eval/separation_auc",
        "eval/sgld_off_data",
        "train/loss_generative",
        "train/loss_invariance",
        "train/loss_uniformity",
    ):
        assert np.isfinite(final[key]), key
    assert 0.0 <= final["eval/nmi"] <= 1.0 and 0.0 <= final["eval/cluster_entropy"] <= 1.0
    for name in ("gedi_clusters.png", "gedi_energy.png", "gedi_sgld_samples.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    initial = prepare(config).state
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep=config.train.keep_checkpoints)
    state = checkpoints.restore(checkpoints.latest_step(), initial)
    checkpoints.close()
    moved = np.any(
        np.asarray(state["task_state"]["sgld_buffer"])
        != np.asarray(initial["task_state"]["sgld_buffer"]),
        axis=-1,
    )
    assert moved.sum() >= config.train.batch_size  # every step rewrites a batch of chains
    evaluated = jaxlab.evaluate(tmp_path)  # `jaxlab eval`: the restored run, as JSON
    assert json.loads(json.dumps(evaluated))["eval/nmi"] == pytest.approx(final["eval/nmi"])


def test_no_generative_variant_runs_no_sgld(tmp_path):
    config = jaxlab.load_config("gedi:smoke,variant=no_generative", {"train.steps": 10})
    jaxlab.train(config, tmp_path, quiet=True)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert "train/loss_generative" not in record and np.isfinite(record["eval/nmi"])


def test_report_studies_are_grids_of_loss_weights_one_program_per_data_seed():
    """The studies of docs/gedi.md: their sizes, and within one data seed the runs differ in
    loss weights only (traceable: a vmapped sweep trains one program per seed, of 4 runs)."""
    from jaxlab.experiments import gedi

    counts = {"study=seeds": 5, "study=table2": 4 * 5, "study=invariance": 4 * 3}
    for preset, count in counts.items():
        points = gedi.get_sweep(preset)
        assert len(points) == count, preset
        assert len({tuple(sorted(p.items())) for p in points}) == count, preset
        for point in points:
            assert point["config.seed"] == point["config.data.seed"], preset
            assert set(point) - {"config.seed", "config.data.seed"} <= {
                f"config.loss.{k}" for k in ("generative", "invariance", "uniformity", "energy_l2")
            }, preset
    table2 = gedi.get_sweep("study=table2,invariance=0.025")
    assert {p["config.loss.invariance"] for p in table2} == {0.0, 0.025}
    assert gedi.get_sweep("dataset=digits,study=seeds")[1]["config.data.split_seed"] == 1
    with pytest.raises(UserError, match="unknown study 'grid'"):
        gedi.get_sweep("study=grid")


@pytest.mark.slow
def test_a_seed_of_the_variant_study_trains_as_one_vmapped_program_equal_to_single_runs(
    tmp_path,
):
    """Full GEDI and its three ablations of one data seed, trained as one vmapped program, end
    where each trained alone does (a weight of 0 traced: its term computed and multiplied by 0)."""
    from jaxlab.config import apply_overrides
    from jaxlab.sweep import experiment_points

    points = experiment_points("gedi:smoke,study=table2")[:4]
    rows = jaxlab.sweep("gedi:smoke", points, tmp_path / "vmap", vmap=True)
    assert [r["status"] for r in rows] == ["done"] * 4
    for point, row in zip(points, rows):
        config = apply_overrides(jaxlab.load_config("gedi:smoke"), point)
        alone = jaxlab.train(config, tmp_path / row["run"], quiet=True)
        for key in ("train/loss", "eval/nmi", "eval/separation_auc"):
            assert row[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-5), (row["run"], key)
