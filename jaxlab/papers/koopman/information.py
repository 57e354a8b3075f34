"""The pure math of information-shaped Koopman learning (Cheng et al., arXiv 2510.13025).

Everything here is a jittable function of arrays, with no model or training code:

* `gaussian_mutual_information`: the latent mutual information I(z_t; z_{t+1}) of linear-Gaussian
  latent dynamics z_{t+1} = K z_t + w in closed form (the paper's Gaussian case, Eq. 7);
* `temporal_infonce`: the contrastive estimate of that mutual information the paper trains with
  (positives: temporal neighbours within ±k steps; temperature tau);
* `von_neumann_entropy` and `effective_dimension`: S(rho) = -tr(rho log rho) of the normalised
  latent covariance rho = C / tr C, and exp(S), the number of equally used latent directions;
* `ridge_koopman`: the closed-form Koopman matrix of a set of latent pairs;
* `rollout_nrmse`: the normalised k-step rollout error.

Row-vector convention throughout: latents are rows z (shape (..., d)), one Koopman step is
``z @ A`` with ``A = K^T``.
"""
import jax
import jax.numpy as jnp


def gaussian_mutual_information(koopman: jax.Array, state_cov: jax.Array,
                                noise_cov: jax.Array) -> jax.Array:
    """I(z_t; z_{t+1}) in nats for z_t ~ N(m, Σ), z_{t+1} = K z_t + w, w ~ N(0, Q) (Eq. 7).

    Then z_{t+1} ~ N(K m, K Σ K^T + Q) and z_{t+1} | z_t ~ N(K z_t, Q), so
    I = h(z_{t+1}) - h(z_{t+1} | z_t) = ½ log det(K Σ K^T + Q) - ½ log det Q.
    It grows as the noise Q shrinks relative to the propagated signal K Σ K^T.
    """
    marginal = koopman @ state_cov @ koopman.T + noise_cov
    return 0.5 * (jnp.linalg.slogdet(marginal)[1] - jnp.linalg.slogdet(noise_cov)[1])


def temporal_infonce(z_BTD: jax.Array, k: int, temperature: float) -> jax.Array:
    """Multi-positive InfoNCE over time inside each sequence (the paper's tractable MI term).

    For every anchor time n with a full neighbourhood (k <= n < T - k) of every sequence, the
    positives are z_{n±i}, 1 <= i <= k, and the negatives are all other times of the same sequence
    (the anchor itself excluded); similarities are cosines divided by ``temperature``:

        L = -mean_{b,n} log( Σ_{p in P_n} exp(s_np) / Σ_{m != n} exp(s_nm) ).

    With a single positive, log(T - 1) - L lower-bounds the mutual information between a state
    and its neighbour (van den Oord et al., 2018); with 2k positives it is the paper's surrogate of
    that MI, and minimising L raises it.
    Needs T > 2k + 1 (at least one negative); with no negative L would be identically zero.
    """
    _, t, _ = z_BTD.shape
    if t <= 2 * k + 1:
        raise ValueError(f"temporal InfoNCE needs sequences longer than 2k+1={2 * k + 1}, got {t}")
    unit_BTD = z_BTD / jnp.maximum(jnp.linalg.norm(z_BTD, axis=-1, keepdims=True), 1e-8)
    scores_BTT = jnp.einsum("bnd,bmd->bnm", unit_BTD, unit_BTD) / temperature
    times = jnp.arange(t)
    distance_TT = jnp.abs(times[:, None] - times[None, :])
    positive_TT = (distance_TT >= 1) & (distance_TT <= k)
    others_TT = distance_TT >= 1
    log_positive = jax.nn.logsumexp(jnp.where(positive_TT, scores_BTT, -jnp.inf), axis=-1)
    log_all = jax.nn.logsumexp(jnp.where(others_TT, scores_BTT, -jnp.inf), axis=-1)
    anchors = slice(k, t - k)
    return -(log_positive - log_all)[:, anchors].mean()


def covariance(z_ND: jax.Array) -> jax.Array:
    """The (d, d) sample covariance of the rows of ``z_ND`` (centred, divided by N - 1)."""
    centred = z_ND - z_ND.mean(axis=0)
    return centred.T @ centred / (z_ND.shape[0] - 1)


def von_neumann_entropy(cov: jax.Array, eps: float = 1e-12) -> jax.Array:
    """S(rho) = -Σ λ_i log λ_i of rho = C / tr C (eigenvalues λ_i >= 0, Σ λ_i = 1), in nats.

    0 when one direction carries all the variance, log d when all d directions carry equal
    variance (rho = I/d). Differentiable through ``jnp.linalg.eigvalsh``; eigenvalues below ``eps``
    contribute 0 (the limit of λ log λ).
    """
    rho = cov / jnp.trace(cov)
    eigenvalues = jnp.clip(jnp.linalg.eigvalsh(rho), 0.0, None)
    safe = jnp.where(eigenvalues > eps, eigenvalues, 1.0)
    return -jnp.sum(jnp.where(eigenvalues > eps, eigenvalues * jnp.log(safe), 0.0))


def effective_dimension(cov: jax.Array) -> jax.Array:
    """exp(S(C / tr C)): between 1 (collapse onto one mode) and d (isotropic latents)."""
    return jnp.exp(von_neumann_entropy(cov))


def ridge_koopman(z_now_ND: jax.Array, z_next_ND: jax.Array, ridge: float) -> jax.Array:
    """A = argmin_A ||Z' - Z A||² + ridge ||A||², i.e. (Z^T Z + ridge I)^{-1} Z^T Z'; K = A^T."""
    d = z_now_ND.shape[-1]
    gram = z_now_ND.T @ z_now_ND + ridge * jnp.eye(d, dtype=z_now_ND.dtype)
    return jnp.linalg.solve(gram, z_now_ND.T @ z_next_ND)


def rollout_nrmse(predicted_SHD: jax.Array, true_SHD: jax.Array) -> jax.Array:
    """Error per horizon (H,): sqrt(mean over starts and state dims of (x̂ - x)²) / σ.

    The states are standardised with the training set's per-dimension mean and std, so σ = 1 and
    this is the RMSE in units of the training data's standard deviation; 1 is the error of always
    predicting the training mean (for test data distributed like the training data).
    """
    return jnp.sqrt(jnp.mean((predicted_SHD - true_SHD) ** 2, axis=(0, 2)))
