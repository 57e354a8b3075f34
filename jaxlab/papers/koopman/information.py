"""The pure math of information-shaped Koopman learning (Cheng et al., "Information Shapes
Koopman Representation", arXiv 2510.13025v2, ICLR 2026).

Everything here is a jittable function of arrays, with no model or training code:

* `gaussian_mutual_information`: the latent mutual information of linear-Gaussian latent
  dynamics in closed form (the paper's Eq. 7 with n = 1);
* `paper_infonce`: the InfoNCE estimate of I(z_n; P_n) exactly as Algorithm 2, line 5 writes it;
* `covariance`, `von_neumann_entropy` and `effective_dimension`: C = (1/B) Σ (z_i - z̄)(z_i - z̄)^T
  over a minibatch (Alg. 2, line 7), S(ρ) = -tr(ρ log ρ) of ρ = C / tr C (Def. 2.3), and
  d_eff = exp(S) (Def. E.2);
* `ridge_koopman`: the closed-form Koopman matrix of a set of latent pairs;
* `nrmse_by_std` and `nrmse_by_norm`: the two normalisations of the rollout error that the
  project reports (the paper does not define its NRMSE).

Row-vector convention throughout: latents are rows z (shape (..., d)), one Koopman step is
``z @ A`` with ``A = K^T``.
"""

import jax
import jax.numpy as jnp

from jaxlab import lapack


def gaussian_mutual_information(
    koopman: jax.Array, state_cov: jax.Array, noise_cov: jax.Array
) -> jax.Array:
    """I(z_t; z_{t+1}) in nats for z_t ~ N(m, C), z_{t+1} = K z_t + w, w ~ N(0, Σ).

    The paper's Eq. 7, I = ½ log det(I + M_n^{-1/2} K^n C (K^n)^T M_n^{-1/2}), at n = 1 (M_1 = Σ),
    computed as ½ log det(K C K^T + Σ) - ½ log det Σ (the same number: h(z_{t+1}) - h(z_{t+1}|z_t)).
    """
    marginal = koopman @ state_cov @ koopman.T + noise_cov
    return 0.5 * (jnp.linalg.slogdet(marginal)[1] - jnp.linalg.slogdet(noise_cov)[1])


def paper_infonce(z_BTL: jax.Array, k: int, temperature: float, cosine: bool = False) -> jax.Array:
    """I(z_n; P_n) ≈ (1/|P_n|) Σ_{p∈P_n} log[exp(z_n^T z_p / τ) / Σ_{j=1}^B exp(z_n^T z_j / τ)].

    Algorithm 2, line 5, as written: raw dot products over τ, the mean over the positives
    P_n = {z_{n±i} | 1 ≤ i ≤ k} (Eq. 9's neighbourhood) of their log-softmax, and a denominator
    over all B latents of the minibatch, the anchor and its positives included. Here the
    minibatch is ``z_BTL``'s windows (its first axis) of T consecutive latents, so B = windows × T;
    the positives of z_n are its neighbours in its own window, and the anchors are the times with
    all 2k neighbours (k ≤ n < T - k). Returned: the mean over anchors, a log-probability (≤ 0)
    that training raises (the loss carries -α times it). ``cosine=True`` scores pairs by cosine
    similarity z_n^T z_p / (‖z_n‖ ‖z_p‖) instead, as the authors' released code does.
    """
    b, t, latent = z_BTL.shape
    if cosine:
        z_BTL = z_BTL / jnp.maximum(jnp.linalg.norm(z_BTL, axis=-1, keepdims=True), 1e-12)
    if t < 2 * k + 1:
        raise ValueError(f"InfoNCE with k={k} needs windows of at least {2 * k + 1} steps, got {t}")
    flat_NL = z_BTL.reshape(b * t, latent)
    log_p_NN = jax.nn.log_softmax(flat_NL @ flat_NL.T / temperature, axis=-1)
    windows = jnp.arange(b)
    log_p_BTT = log_p_NN.reshape(b, t, b, t)[windows, :, windows, :]  # (B, T, T) within a window
    times = jnp.arange(t)
    distance_TT = jnp.abs(times[:, None] - times[None, :])
    positive_TT = (distance_TT >= 1) & (distance_TT <= k)
    per_anchor_BT = jnp.sum(jnp.where(positive_TT, log_p_BTT, 0.0), axis=-1) / (2 * k)
    return per_anchor_BT[:, k : t - k].mean()


def covariance(z_NL: jax.Array) -> jax.Array:
    """C = (1/N) Σ_i (z_i - z̄)(z_i - z̄)^T over the rows of ``z_NL`` (Alg. 2, line 7)."""
    centred = z_NL - z_NL.mean(axis=0)
    return centred.T @ centred / z_NL.shape[0]


def von_neumann_entropy(cov: jax.Array, eps: float = 1e-12) -> jax.Array:
    """S(ρ) = -Σ λ_i log λ_i of ρ = C / tr C (Def. 2.3; eigenvalues λ_i ≥ 0, Σ λ_i = 1), in nats.

    0 when one direction carries all the variance, log d when all d directions carry equal
    variance (ρ = I/d). Differentiable through `jaxlab.lapack.eigvalsh` (a vmapped sweep's trials
    one matrix at a time on CPU); eigenvalues below ``eps`` contribute 0 (the limit of λ log λ).
    """
    rho = cov / jnp.trace(cov)
    eigenvalues = jnp.clip(lapack.eigvalsh(rho), 0.0, None)
    safe = jnp.where(eigenvalues > eps, eigenvalues, 1.0)
    return -jnp.sum(jnp.where(eigenvalues > eps, eigenvalues * jnp.log(safe), 0.0))


def effective_dimension(cov: jax.Array) -> jax.Array:
    """d_eff = exp(S(C / tr C)) (Def. E.2): 1 (collapse onto one mode) to d (isotropic latents)."""
    return jnp.exp(von_neumann_entropy(cov))


def ridge_koopman(z_now_NL: jax.Array, z_next_NL: jax.Array, ridge: float) -> jax.Array:
    """A = argmin_A ||Z' - Z A||² + ridge ||A||², i.e. (Z^T Z + ridge I)^{-1} Z^T Z'; K = A^T.
    Not differentiable (`jaxlab.lapack.solve`): callers stop the latents' gradient first."""
    d = z_now_NL.shape[-1]
    gram = z_now_NL.T @ z_now_NL + ridge * jnp.eye(d, dtype=z_now_NL.dtype)
    return lapack.solve(gram, z_now_NL.T @ z_next_NL)


def nrmse_by_std(predicted_SHD: jax.Array, true_SHD: jax.Array, std_D: jax.Array) -> jax.Array:
    """Per horizon (H,): sqrt(mean over starts S and dimensions D of ((x̂ - x) / σ_d)²).

    σ_d is each state dimension's standard deviation (the caller passes the test set's), so 1 is
    the error of always predicting the mean.
    """
    return jnp.sqrt(jnp.mean(((predicted_SHD - true_SHD) / std_D) ** 2, axis=(0, 2)))


def nrmse_by_norm(predicted_SHD: jax.Array, true_SHD: jax.Array) -> jax.Array:
    """Per horizon (H,): sqrt(Σ_starts ||x̂ - x||² / Σ_starts ||x||²), states in physical units.

    The error relative to the size of the true state: for Lorenz-63, whose attractor lies around
    z ≈ 23.5, far from the origin, this is several times smaller than `nrmse_by_std`.
    """
    return jnp.sqrt(
        jnp.sum((predicted_SHD - true_SHD) ** 2, axis=(0, 2)) / jnp.sum(true_SHD**2, axis=(0, 2))
    )
