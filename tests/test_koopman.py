"""Koopman experiment: the information math, the simulators, and one smoke training run."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm
from scipy.stats import multivariate_normal

import jaxlab
from jaxlab.papers.koopman import information as km
from jaxlab.papers.koopman import dynamics
from jaxlab.errors import UserError
from tests.conftest import read_jsonl


def test_gaussian_mutual_information_matches_monte_carlo():
    """Eq. 7 on z' = K z + w: closed form vs the sample mean of log p(z'|z) - log p(z')."""
    rng = np.random.default_rng(0)
    koopman = np.array([[0.9, 0.3, 0.0], [-0.2, 0.8, 0.1], [0.0, 0.1, 0.5]])
    root = rng.normal(size=(3, 3))
    state_cov = root @ root.T + 0.5 * np.eye(3)
    noise_cov = np.diag([0.3, 0.1, 0.2])
    closed = float(km.gaussian_mutual_information(jnp.asarray(koopman), jnp.asarray(state_cov),
                                                  jnp.asarray(noise_cov)))
    n = 200_000
    z = rng.multivariate_normal(np.zeros(3), state_cov, size=n)
    noise = rng.multivariate_normal(np.zeros(3), noise_cov, size=n)
    z_next = z @ koopman.T + noise
    log_conditional = multivariate_normal(np.zeros(3), noise_cov).logpdf(noise)
    log_marginal = multivariate_normal(np.zeros(3), koopman @ state_cov @ koopman.T
                                       + noise_cov).logpdf(z_next)
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


def test_temporal_infonce_hand_case():
    """T = 4, k = 1, unit 2-D latents; anchors n = 1, 2 (those with both neighbours)."""
    angles = np.array([0.0, 0.0, np.pi / 2, np.pi])
    z = jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], -1)[None])  # (1, 4, 2)
    tau = 0.5
    cos = np.cos(angles[:, None] - angles[None, :])
    s = cos / tau
    # anchor 1: positives 0, 2; others 0, 2, 3.   anchor 2: positives 1, 3; others 0, 1, 3.
    loss1 = -np.log((np.exp(s[1, 0]) + np.exp(s[1, 2])) / np.exp(s[1, [0, 2, 3]]).sum())
    loss2 = -np.log((np.exp(s[2, 1]) + np.exp(s[2, 3])) / np.exp(s[2, [0, 1, 3]]).sum())
    value = float(km.temporal_infonce(z, k=1, temperature=tau))
    assert value == pytest.approx((loss1 + loss2) / 2, rel=1e-5)
    # Scaling a latent does not change cosine similarities.
    assert float(km.temporal_infonce(z * 3.0, k=1, temperature=tau)) == pytest.approx(value,
                                                                                       rel=1e-5)
    with pytest.raises(ValueError, match="longer than"):
        km.temporal_infonce(z[:, :3], k=1, temperature=tau)


def test_ridge_koopman_recovers_a_linear_map_and_nrmse_is_rmse():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4)) * 0.5
    z = rng.normal(size=(500, 4))
    np.testing.assert_allclose(km.ridge_koopman(jnp.asarray(z), jnp.asarray(z @ a), 0.0), a,
                               atol=1e-4)
    predicted, true = np.zeros((3, 2, 4)), np.ones((3, 2, 4))
    true[:, 1] = 2.0
    np.testing.assert_allclose(km.rollout_nrmse(predicted, true), [1.0, 2.0])


def test_rk4_matches_the_exact_solution_of_a_linear_system():
    generator = jnp.array([[-0.1, 1.0], [-1.0, -0.1]])
    x0 = jnp.array([[1.0, 0.0], [0.3, -0.5]])
    samples = dynamics.integrate(lambda x: x @ generator.T, x0, 0.1, 51, substeps=2)
    exact = np.stack([x0 @ expm(np.asarray(generator) * 0.1 * n).T for n in range(51)], axis=1)
    np.testing.assert_allclose(samples, exact, atol=1e-6)


def test_lorenz_and_pendulum_simulations_are_sane():
    rng = np.random.default_rng(0)
    lorenz = dynamics.simulate("lorenz63", 3, 500, 0.01, rng)
    assert lorenz.shape == (3, 500, 3) and np.all(np.isfinite(lorenz))
    # After the burn-in the state is on the attractor: bounded, z positive, both wings visited.
    assert np.abs(lorenz[..., :2]).max() < 30 and 0 < lorenz[..., 2].min()
    assert (lorenz[..., 0] > 0).any() and (lorenz[..., 0] < 0).any()
    pendulum = dynamics.simulate("pendulum", 4, 300, 0.1, rng)
    energy = 0.5 * pendulum[..., 1] ** 2 - np.cos(pendulum[..., 0])
    np.testing.assert_allclose(energy, energy[:, :1].repeat(300, 1), atol=1e-5)  # conserved


def test_dataset_split_windows_and_normalisation():
    data = dynamics.load("burgers", train_trajectories=3, test_trajectories=2, length=40,
                         window_len=10, window_stride=5, noise=0.1)
    assert data.train["window"].shape == (3 * 7, 10, 64)
    assert data.test["trajectory"].shape == (2, 40, 64)
    clean = dynamics.load("burgers", train_trajectories=3, test_trajectories=2, length=40,
                          window_len=10, window_stride=5)
    noise = data.train["window"] - clean.train["window"]
    assert 0.08 < noise.std() < 0.12  # 10 % of the (unit) standardised std
    np.testing.assert_array_equal(data.test["trajectory"], clean.test["trajectory"])
    # Consecutive windows overlap: window 1 starts where window 0 is 5 steps in.
    np.testing.assert_array_equal(clean.train["window"][1, :5], clean.train["window"][0, 5:])
    with pytest.raises(UserError, match="unknown dynamical system"):
        dynamics.load("vanderpol")


def test_smoke_training_writes_finite_metrics_and_plots(tmp_path):
    config = jaxlab.load_config("koopman:smoke")
    final = jaxlab.train(config, tmp_path, quiet=True)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    last = records[-1]
    for name in ("eval/nrmse_5", "eval/nrmse_20", "eval/nrmse_50", "eval/effective_dim",
                 "train/infonce", "train/entropy", "train/prediction"):
        assert np.isfinite(last[name]), name
    assert 1.0 <= last["eval/effective_dim"] <= config.model.latent_dim
    assert np.array(last["eval/spectrum"]).shape == (config.model.latent_dim, 2)
    assert records[-1]["train/loss"] < records[0]["train/loss"]
    assert final["eval/nrmse_5"] == last["eval/nrmse_5"]
    for png in ("koopman_spectrum.png", "koopman_rollout.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_closed_form_koopman_and_the_field_system_train(tmp_path):
    config = jaxlab.load_config("koopman:smoke,system=burgers,koopman=closed_form,"
                                "entropy=minimize",
                                {"train.steps": 5, "train.eval_every": 5,
                                 "train.checkpoint_every": 5})
    assert config.model.encoder == "conv"
    final = jaxlab.train(config, tmp_path, quiet=True)
    assert np.isfinite(final["eval/nrmse_20"]) and np.isfinite(final["train/loss"])
    assert (tmp_path / "koopman_rollout.png").exists()


def test_bad_loss_settings_are_refused(tmp_path):
    config = jaxlab.load_config("koopman:smoke", {"loss.entropy_objective": "maximise"})
    with pytest.raises(UserError, match="entropy_objective"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    config = jaxlab.load_config("koopman:smoke", {"loss.infonce_k": 8})
    with pytest.raises(UserError, match="InfoNCE with infonce_k=8"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
