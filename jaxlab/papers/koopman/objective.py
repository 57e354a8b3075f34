"""The training objectives of the ``koopman`` experiment: Algorithm 2 of "Information Shapes
Koopman Representation" (Appendix G.2), the variant its Table 5 uses for physical simulations;
the loss of the paper's KAE baseline, PyKoopman's neural DMD (`pykoopman_loss`); and the
project's rollout extension.

For a minibatch of windows x_0 .. x_{T-1}, latents z_n = f_θ(x_n), reconstructions
x̂_n = g_ω(z_n) and the Koopman matrix K_ψ (rows: z_{n+1} ≈ z_n A, A = K_ψ^T):

    L = L_rec - α I(z_n; P_n) + β L_Koop - γ S(C / tr C)                    (Alg. 2, line 9)

    L_rec   = ||x_n - g_ω(z_n)||²                                             (line 8)
    I       = InfoNCE over the temporal neighbours P_n                       (line 5)
    L_Koop  = ||z_{n+1} - K_ψ z_n||²                                          (line 6)
    S       = von Neumann entropy of the minibatch latent covariance C       (line 7)

Squared norms are summed over the state (or latent) dimensions and averaged over the minibatch's
states (or consecutive pairs): the paper writes the norms, not how they are averaged.
α = γ = 0 leaves the Koopman autoencoder (KAE) baseline, L_rec + β L_Koop.
"""

import jax
import jax.numpy as jnp

from jaxlab.papers.koopman import information


def algorithm2_terms(
    x_BTD: jax.Array,
    reconstruction_BTD: jax.Array,
    z_BTL: jax.Array,
    a_LL: jax.Array,
    k: int,
    temperature: float,
    cosine: bool = False,
) -> dict[str, jax.Array]:
    """The four terms of Algorithm 2 for windows ``x_BTD``, their latents and reconstructions
    (``cosine``: InfoNCE over cosine similarities, the released code's form, not the paper's)."""
    return {
        "reconstruction": jnp.mean(jnp.sum((x_BTD - reconstruction_BTD) ** 2, axis=-1)),
        "infonce": information.paper_infonce(z_BTL, k, temperature, cosine),
        "consistency": jnp.mean(jnp.sum((z_BTL[:, 1:] - z_BTL[:, :-1] @ a_LL) ** 2, axis=-1)),
        "entropy": information.von_neumann_entropy(
            information.covariance(z_BTL.reshape(-1, z_BTL.shape[-1]))
        ),
    }


def algorithm2_loss(
    terms: dict[str, jax.Array], alpha: float, beta: float, gamma: float, entropy_sign: float = -1.0
) -> jax.Array:
    """L = L_rec - α I + β L_Koop - γ S (line 9). ``entropy_sign=+1`` adds +γ S instead, as the
    authors' released code does (it minimises the entropy the paper maximises)."""
    return (
        terms["reconstruction"]
        - alpha * terms["infonce"]
        + beta * terms["consistency"]
        + entropy_sign * gamma * terms["entropy"]
    )


def rollout_error(x_BTD: jax.Array, rolled_out_BTD: jax.Array) -> jax.Array:
    """The project's extension, not in the paper: mean_n ||g_ω(z_0 Aⁿ) - x_n||² over n = 1..T-1,
    the decoded rollout from each window's first latent (``rolled_out_BTD`` holds n = 1..T-1)."""
    return jnp.mean(jnp.sum((rolled_out_BTD - x_BTD[:, 1:]) ** 2, axis=-1))


def pykoopman_loss(
    x_BTD: jax.Array, reconstruction_BTD: jax.Array, rolled_out_BTD: jax.Array
) -> dict[str, jax.Array]:
    """The loss of the paper's KAE baseline (Table 2: PyKoopman's autoencoder, Pan et al. 2023),
    as PyKoopman's neural DMD regressor computes it for a window x_0 .. x_{T-1} with a
    look-forward of T - 1 steps, errors as mean squares over the state's dimensions (MSE):

        prediction     = mean_{n=1..T-1} MSE(g(z_0 Aⁿ), x_n)      (the decoded rollout)
        reconstruction = MSE(g(z_0), x_0) + mean_{n=1..T-1} MSE(g(z_n), x_n)
        total          = prediction + reconstruction

    No latent consistency term: K is trained through the decoded rollout alone."""
    prediction = jnp.mean((rolled_out_BTD - x_BTD[:, 1:]) ** 2)
    errors_BTD = (reconstruction_BTD - x_BTD) ** 2
    reconstruction = jnp.mean(errors_BTD[:, 0]) + jnp.mean(errors_BTD[:, 1:])
    return {
        "prediction": prediction,
        "reconstruction": reconstruction,
        "total": prediction + reconstruction,
    }
