"""Koopman experiment: the information math, the simulators, and one smoke training run."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm
from scipy.stats import multivariate_normal

import jaxlab
from jaxlab.errors import UserError
from jaxlab.papers.koopman import dynamics, objective
from jaxlab.papers.koopman import information as km
from tests.conftest import read_jsonl


def test_gaussian_mutual_information_matches_monte_carlo():
    """Eq. 7 on z' = K z + w: closed form vs the sample mean of log p(z'|z) - log p(z')."""
    rng = np.random.default_rng(0)
    koopman = np.array([[0.9, 0.3, 0.0], [-0.2, 0.8, 0.1], [0.0, 0.1, 0.5]])
    root = rng.normal(size=(3, 3))
    state_cov = root @ root.T + 0.5 * np.eye(3)
    noise_cov = np.diag([0.3, 0.1, 0.2])
    closed = float(
        km.gaussian_mutual_information(
            jnp.asarray(koopman), jnp.asarray(state_cov), jnp.asarray(noise_cov)
        )
    )
    n = 200_000
    z = rng.multivariate_normal(np.zeros(3), state_cov, size=n)
    noise = rng.multivariate_normal(np.zeros(3), noise_cov, size=n)
    z_next = z @ koopman.T + noise
    log_conditional = multivariate_normal(np.zeros(3), noise_cov).logpdf(noise)
    log_marginal = multivariate_normal(
        np.zeros(3), koopman @ state_cov @ koopman.T + noise_cov
    ).logpdf(z_next)
    samples = log_conditional - log_marginal
    standard_error = samples.std() / math.sqrt(n)
    assert closed > 0.5
    assert abs(samples.mean() - closed) < 4 * standard_error
    # Less noise, more information; no propagation (K = 0), none.
    assert float(km.gaussian_mutual_information(koopman, state_cov, noise_cov / 4)) > closed
    assert abs(float(km.gaussian_mutual_information(0 * koopman, state_cov, noise_cov))) < 1e-6


def test_von_neumann_entropy_hand_cases():
    d = 5
    assert float(km.von_neumann_entropy(jnp.eye(d) * 3.7)) == pytest.approx(math.log(d), rel=1e-6)
    assert float(km.effective_dimension(jnp.eye(d))) == pytest.approx(d, rel=1e-5)
    # Eigenvalues 3 and 1 of C: rho has 3/4 and 1/4; a rotation does not change S.
    rotation = np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
    cov = rotation @ np.diag([3.0, 1.0]) @ rotation.T
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(km.von_neumann_entropy(jnp.asarray(cov))) == pytest.approx(expected, rel=1e-5)
    # Rank one: everything in one mode.
    assert float(km.von_neumann_entropy(jnp.diag(jnp.array([2.0, 0.0, 0.0])))) == pytest.approx(0)


def test_paper_infonce_hand_case():
    """Algorithm 2, line 5, on two windows of T = 3 one-dimensional latents, k = 1, tau = 1: the
    anchors are the middle states; the denominator runs over all six latents of the minibatch."""
    z = jnp.array([[[1.0], [2.0], [0.0]], [[0.0], [1.0], [1.0]]])  # (2 windows, 3 steps, 1)

    def log_sum_exp(values):
        return math.log(sum(math.exp(v) for v in values))

    everything = [1.0, 2.0, 0.0, 0.0, 1.0, 1.0]
    # Anchor z = 2 (window 0): dot products with the six latents are 2·z_j; positives 1 and 0.
    first = 0.5 * (
        (2.0 - log_sum_exp([2 * v for v in everything]))
        + (0.0 - log_sum_exp([2 * v for v in everything]))
    )
    # Anchor z = 1 (window 1): dot products are z_j; positives 0 and 1.
    second = 0.5 * ((0.0 - log_sum_exp(everything)) + (1.0 - log_sum_exp(everything)))
    value = float(km.paper_infonce(z, k=1, temperature=1.0))
    assert value == pytest.approx((first + second) / 2, rel=1e-6)
    # tau divides the dot products: tau = 2 is the same as halving the latents' squared scale.
    assert float(km.paper_infonce(z, k=1, temperature=2.0)) == pytest.approx(
        float(km.paper_infonce(z / math.sqrt(2.0), k=1, temperature=1.0)), rel=1e-6
    )
    with pytest.raises(ValueError, match="at least 3 steps"):
        km.paper_infonce(z[:, :2], k=1, temperature=1.0)


def test_algorithm2_terms_match_a_direct_numpy_computation():
    """Every term of Algorithm 2 and the total loss, against loops in numpy on a tiny batch."""
    rng = np.random.default_rng(3)
    b, t, d, latent, k, tau = 2, 7, 3, 4, 2, 0.5
    x, x_hat = rng.normal(size=(b, t, d)), rng.normal(size=(b, t, d))
    z, a = rng.normal(size=(b, t, latent)), rng.normal(size=(latent, latent)) * 0.5
    terms = objective.algorithm2_terms(
        *(jnp.asarray(v, jnp.float32) for v in (x, x_hat, z, a)), k, tau
    )
    reconstruction = np.mean(
        [np.sum((x[i, n] - x_hat[i, n]) ** 2) for i in range(b) for n in range(t)]
    )
    flat = z.reshape(-1, latent)
    anchors = []
    for i in range(b):
        for n in range(k, t - k):
            logits = flat @ z[i, n] / tau
            log_denominator = np.log(np.sum(np.exp(logits)))
            positives = [m for m in range(t) if 1 <= abs(m - n) <= k]
            anchors.append(np.mean([z[i, n] @ z[i, p] / tau - log_denominator for p in positives]))
    consistency = np.mean(
        [np.sum((z[i, n + 1] - z[i, n] @ a) ** 2) for i in range(b) for n in range(t - 1)]
    )
    centred = flat - flat.mean(axis=0)
    cov = sum(np.outer(row, row) for row in centred) / len(flat)
    eigenvalues = np.linalg.eigvalsh(cov / np.trace(cov))
    entropy = -np.sum(eigenvalues * np.log(eigenvalues))
    expected = {
        "reconstruction": reconstruction,
        "infonce": np.mean(anchors),
        "consistency": consistency,
        "entropy": entropy,
    }
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-5), name
    alpha, beta, gamma = 2.0, 0.7, 0.1
    assert float(objective.algorithm2_loss(terms, alpha, beta, gamma)) == pytest.approx(
        reconstruction - alpha * np.mean(anchors) + beta * consistency - gamma * entropy, rel=1e-5
    )
    assert float(
        objective.algorithm2_loss(terms, alpha, beta, gamma, entropy_sign=1.0)
    ) == pytest.approx(
        reconstruction - alpha * np.mean(anchors) + beta * consistency + gamma * entropy, rel=1e-5
    )


def test_ridge_koopman_recovers_a_linear_map_and_the_two_nrmses():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4)) * 0.5
    z = rng.normal(size=(500, 4))
    np.testing.assert_allclose(
        km.ridge_koopman(jnp.asarray(z), jnp.asarray(z @ a), 0.0), a, atol=1e-4
    )
    # 3 starts, 2 horizons, 2 dimensions: errors 1 (horizon 1) and 2 (horizon 2) in every entry.
    true = np.full((3, 2, 2), 3.0)
    true[:, :, 1] = 4.0  # |x| = 5
    predicted = true + np.array([1.0, 2.0])[None, :, None]
    np.testing.assert_allclose(
        km.nrmse_by_std(predicted, true, np.array([1.0, 2.0])),
        [math.sqrt((1 + 0.25) / 2), math.sqrt((4 + 1) / 2)],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        km.nrmse_by_norm(predicted, true), [math.sqrt(2) / 5, math.sqrt(8) / 5], rtol=1e-6
    )


def test_rk4_matches_the_exact_solution_of_a_linear_system():
    generator = jnp.array([[-0.1, 1.0], [-1.0, -0.1]])
    x0 = jnp.array([[1.0, 0.0], [0.3, -0.5]])
    samples = dynamics.integrate(lambda x: x @ generator.T, x0, 0.1, 51, substeps=2)
    exact = np.stack([x0 @ expm(np.asarray(generator) * 0.1 * n).T for n in range(51)], axis=1)
    np.testing.assert_allclose(samples, exact, atol=1e-6)


def test_lorenz_and_pendulum_simulations_are_sane():
    rng = np.random.default_rng(0)
    # The paper's setting (one RK4 step of 0.1 per sample) and a finer one: after the burn-in the
    # state is on the attractor (bounded, z positive, both wings visited) and stays there, also
    # from the initial box's corners, where a single RK4 step of 0.1 would diverge.
    for dt, length in ((0.1, 2000), (0.01, 500)):
        lorenz = dynamics.simulate("lorenz63", 64, length, dt, np.random.default_rng(0))
        assert lorenz.shape == (64, length, 3) and np.all(np.isfinite(lorenz))
        assert np.abs(lorenz[..., :2]).max() < 30 and 0 < lorenz[..., 2].min()
        assert (lorenz[..., 0] > 0).any() and (lorenz[..., 0] < 0).any()
    pendulum = dynamics.simulate("pendulum", 4, 300, 0.1, rng)
    energy = 0.5 * pendulum[..., 1] ** 2 - np.cos(pendulum[..., 0])
    np.testing.assert_allclose(energy, energy[:, :1].repeat(300, 1), atol=1e-5)  # conserved


def test_dataset_split_windows_and_normalisation():
    data = dynamics.load(
        "burgers",
        train_trajectories=3,
        test_trajectories=2,
        length=40,
        window_len=10,
        window_stride=5,
        noise=0.1,
    )
    assert data.train["window"].shape == (3 * 7, 10, 64)
    assert data.test["trajectory"].shape == (2, 40, 64)
    clean = dynamics.load(
        "burgers",
        train_trajectories=3,
        test_trajectories=2,
        length=40,
        window_len=10,
        window_stride=5,
    )
    noise = data.train["window"] - clean.train["window"]
    assert 0.08 < noise.std() < 0.12  # 10 % of the (unit) standardised std
    np.testing.assert_array_equal(data.test["trajectory"], clean.test["trajectory"])
    # Consecutive windows overlap: window 1 starts where window 0 is 5 steps in.
    np.testing.assert_array_equal(clean.train["window"][1, :5], clean.train["window"][0, 5:])
    # Test trajectories carry their standardisation: back in physical units they are the
    # simulation itself.
    lorenz = dynamics.load(
        "lorenz63",
        train_trajectories=2,
        test_trajectories=2,
        length=50,
        window_len=16,
        window_stride=1,
    )
    test = lorenz.test
    physical = test["trajectory"] * test["scale"][:, None] + test["offset"][:, None]
    simulated = dynamics.simulate("lorenz63", 4, 50, 0.1, np.random.default_rng(0))[2:]
    np.testing.assert_allclose(physical, simulated, rtol=1e-4, atol=1e-3)
    with pytest.raises(UserError, match="unknown dynamical system"):
        dynamics.load("vanderpol")


def test_smoke_training_writes_finite_metrics_and_plots(tmp_path):
    config = jaxlab.load_config("koopman:smoke")
    final = jaxlab.train(config, tmp_path, quiet=True)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    last = records[-1]
    for name in (
        "eval/nrmse_std_1",
        "eval/nrmse_std_50",
        "eval/nrmse_norm_5",
        "eval/nrmse_norm_20",
        "eval/effective_dim",
        "train/infonce",
        "train/entropy",
        "train/consistency",
        "train/reconstruction",
    ):
        assert np.isfinite(last[name]), name
    assert 1.0 <= last["eval/effective_dim"] <= config.model.latent_dim
    assert np.array(last["eval/spectrum"]).shape == (config.model.latent_dim, 2)
    assert records[-1]["train/loss"] < records[0]["train/loss"]
    assert final["eval/nrmse_std_5"] == last["eval/nrmse_std_5"]
    assert "train/rollout" not in last  # the paper's form has no rollout term
    for png in ("koopman_spectrum.png", "koopman_rollout.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_closed_form_koopman_and_the_field_system_train(tmp_path):
    config = jaxlab.load_config(
        "koopman:smoke,system=burgers,koopman=closed_form,entropy=minimize,form=rollout",
        {"train.steps": 5, "train.eval_every": 5, "train.checkpoint_every": 5},
    )
    assert config.model.encoder == "conv"
    final = jaxlab.train(config, tmp_path, quiet=True)
    assert np.isfinite(final["eval/nrmse_norm_20"]) and np.isfinite(final["train/rollout"])
    assert (tmp_path / "koopman_rollout.png").exists()


def test_presets_keep_the_paper_horizons_in_physical_time():
    """Horizons 5/20/50 steps of the paper's 0.1 are 50/200/500 steps of 0.01, plus one step."""
    paper, fine = jaxlab.load_config("koopman"), jaxlab.load_config("koopman:dt=0.01")
    assert (paper.data.dt, tuple(paper.evaluation.horizons)) == (0.1, (1, 5, 20, 50))
    assert (fine.data.dt, tuple(fine.evaluation.horizons)) == (0.01, (1, 50, 200, 500))
    assert fine.data.length * fine.data.dt == pytest.approx(paper.data.length * paper.data.dt)
    assert (paper.loss.alpha, paper.loss.gamma, paper.loss.infonce_k) == (2.0, 0.1, 3)
    assert paper.loss.rollout == 0 and jaxlab.load_config("koopman:form=rollout").loss.rollout > 0


def test_bad_loss_settings_are_refused(tmp_path):
    config = jaxlab.load_config("koopman:smoke", {"loss.entropy_objective": "maximise"})
    with pytest.raises(UserError, match="entropy_objective"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    config = jaxlab.load_config("koopman:smoke", {"loss.infonce_k": 8})
    with pytest.raises(UserError, match="InfoNCE with infonce_k=8"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
    config = jaxlab.load_config("koopman:smoke", {"loss.beta": -1.0})
    with pytest.raises(UserError, match="beta and rollout non-negative"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    with pytest.raises(UserError, match="unknown loss form 'paper2'"):
        jaxlab.load_config("koopman:form=paper2")
    with pytest.raises(UserError, match="dt must be positive"):
        jaxlab.load_config("koopman:dt=-0.1")
    assert not (tmp_path / "run").exists()


def test_pykoopman_loss_matches_a_direct_numpy_computation():
    """The baseline's loss: the decoded rollout's mean squared error over n = 1..T-1, plus the
    reconstruction of x_0 and the mean reconstruction of x_1..x_{T-1}, each a mean over dims."""
    rng = np.random.default_rng(5)
    b, t, d = 3, 6, 4
    x, x_hat, rolled = (
        rng.normal(size=(b, t, d)),
        rng.normal(size=(b, t, d)),
        rng.normal(size=(b, t - 1, d)),
    )
    terms = objective.pykoopman_loss(*(jnp.asarray(v, jnp.float32) for v in (x, x_hat, rolled)))
    prediction = np.mean(
        [np.mean((rolled[i, n - 1] - x[i, n]) ** 2) for i in range(b) for n in range(1, t)]
    )
    reconstruction = np.mean([np.mean((x_hat[i, 0] - x[i, 0]) ** 2) for i in range(b)]) + np.mean(
        [np.mean((x_hat[i, n] - x[i, n]) ** 2) for i in range(b) for n in range(1, t)]
    )
    assert float(terms["prediction"]) == pytest.approx(prediction, rel=1e-5)
    assert float(terms["reconstruction"]) == pytest.approx(reconstruction, rel=1e-5)
    assert float(terms["total"]) == pytest.approx(prediction + reconstruction, rel=1e-5)


def test_cosine_infonce_is_the_dot_product_form_on_unit_latents():
    z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 4)) * 3.0, jnp.float32)
    unit = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    cosine = km.paper_infonce(z, k=2, temperature=0.2, cosine=True)
    assert float(cosine) == pytest.approx(float(km.paper_infonce(unit, k=2, temperature=0.2)))
    assert float(cosine) != pytest.approx(float(km.paper_infonce(z, k=2, temperature=0.2)))


def test_report_studies_are_vmappable_grids():
    """The studies of docs/koopman.md: their sizes, and every run of one differs from the others
    in loss weights and seeds only (traceable leaves: one vmapped program per study)."""
    from jaxlab.experiments import koopman

    counts = {
        "study=seeds": 5,
        "study=table2": 4 * 5 + 3 * 3,
        "study=sensitivity": 4 * 3 * 3 + 4 * 3,
        "study=sensitivity,similarity=cosine": 4 * 3 * 3,
        "study=convergence": 2 * 3,
        "form=pykoopman": 5,
        "study=convergence,form=pykoopman": 3,
    }
    for preset, count in counts.items():
        points = koopman.get_sweep(preset)
        assert len(points) == count, preset
        assert len({tuple(sorted(p.items())) for p in points}) == count, preset
        for point in points:
            assert set(point) <= {"config.seed"} | {
                f"config.loss.{k}" for k in ("alpha", "gamma", "beta", "temperature", "rollout")
            }, preset
    with pytest.raises(UserError, match="unknown study 'grid'"):
        koopman.get_sweep("study=grid")


@pytest.mark.slow
def test_sensitivity_study_trains_as_one_vmapped_sweep(tmp_path):
    """The report's largest grid, at smoke size, through `jaxlab.sweep(..., vmap=True)`."""
    from jaxlab.sweep import experiment_points

    spec = "koopman:smoke,study=sensitivity"
    rows = jaxlab.sweep(spec, experiment_points(spec), tmp_path, vmap=True)
    assert len(rows) == 48 and {r["status"] for r in rows} == {"done"}
    by_run = {r["run"]: r for r in rows}
    # the same seed and loss weights trained alone give the same numbers
    alone = jaxlab.train(
        jaxlab.load_config(
            "koopman:smoke", {"seed": 1, "loss.beta": 10.0, "loss.temperature": 0.05}
        ),
        tmp_path / "alone",
        quiet=True,
    )
    vmapped = by_run["seed=1,loss.alpha=2.0,loss.gamma=0.1,loss.beta=10.0,loss.temperature=0.05"]
    assert vmapped["eval/nrmse_std_5"] == pytest.approx(alone["eval/nrmse_std_5"], rel=1e-3)
    assert rows[0]["eval/nrmse_std_5"] != rows[-1]["eval/nrmse_std_5"]


def test_lapack_batches_run_one_matrix_at_a_time_and_match_jnp():
    """`jaxlab.lapack`: values and gradients of jnp.linalg's, with the vmapped batch a loop
    (no batched LAPACK call for jaxlib's CPU kernels to split over the intra-op pool)."""
    import jax

    from jaxlab import lapack

    a = np.random.default_rng(1).normal(size=(3, 5, 4, 4)).astype(np.float32)
    a = jnp.asarray(a @ np.swapaxes(a, -1, -2) + np.eye(4, dtype=np.float32))
    b = jnp.asarray(np.random.default_rng(2).normal(size=(5, 4)), jnp.float32)

    def entropy_like(eigvalsh):
        return lambda m: jnp.sum(eigvalsh(m) * jnp.log(eigvalsh(m)))

    ours = jax.jit(jax.vmap(jax.vmap(jax.grad(entropy_like(lapack.eigvalsh)))))(a)
    reference = jax.vmap(jax.vmap(jax.grad(entropy_like(jnp.linalg.eigvalsh))))(a)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        jax.vmap(lapack.solve)(a[0], b), jnp.linalg.solve(a[0], b[..., None])[..., 0], rtol=1e-5
    )

    def batch_dims(eigvalsh):
        lowered = jax.jit(jax.vmap(jax.grad(entropy_like(eigvalsh)))).lower(a[0]).as_text()
        return {
            line.split('num_batch_dims = "')[1][0]
            for line in lowered.splitlines()
            if "lapack_ssyevd" in line
        }

    assert batch_dims(jnp.linalg.eigvalsh) == {"1"} and batch_dims(lapack.eigvalsh) == {"0"}
