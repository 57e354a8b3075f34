"""Koopman autoencoders shaped by information (Cheng et al., "Information Shapes Koopman
Representation", arXiv 2510.13025v2): the task of the ``koopman`` experiment.

A batch is a set of windows x_0 .. x_{T-1} of simulated trajectories. The loss is the paper's
Algorithm 2 (`objective`), each weight in ``config.loss``:

    L = L_rec - alpha · I(z_n; P_n) + beta · L_Koop - gamma · S(C / tr C)  [+ rollout · L_roll]

``alpha = gamma = 0`` is the project's KAE ablation, L_rec + beta · L_Koop. ``rollout`` (0 in the
paper's form) weighs the project's extension, the decoded rollout error over the window.
``similarity="cosine"`` scores InfoNCE's pairs by cosine similarity and
``entropy_objective="minimize"`` flips the entropy's sign (+gamma·S), both as the authors'
released code does. ``objective="pykoopman"`` trains the paper's KAE baseline instead, PyKoopman's
neural DMD loss (`objective.pykoopman_loss`): decoded rollout plus reconstruction, no weights.

K is either ``learned`` (a trained matrix, Algorithm 2's K_ψ) or ``closed_form``: the ridge
regression A = (Z^T Z + λI)^{-1} Z^T Z' on the batch's latent pairs, with gradients stopped
through A (the released code's detached operator). For evaluation the closed-form K is the same
ridge regression over the latent pairs of 1,024 training windows spread evenly over the training
set.

Evaluation: from starts every ``evaluation.start_stride`` steps of each test trajectory, encode,
apply A n times, decode. For each horizon n in ``evaluation.horizons``, ``nrmse_std_n`` divides the
error by each state dimension's std over the test set and ``nrmse_norm_n`` by the norm of the true
state in physical units (`information.nrmse_by_std`, `information.nrmse_by_norm`; the paper does
not define its NRMSE). ``effective_dim`` is exp(S) of the covariance of the test latents;
``spectrum`` the eigenvalues of K as (real, imag) rows, largest modulus first.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

from jaxlab import data as data_lib
from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.papers.koopman import information, objective
from jaxlab.papers.koopman.model import KoopmanAutoencoder
from jaxlab.tasks import Task, is_plain, left_out

OBJECTIVES = ("algorithm2", "pykoopman")  # the paper's loss; its KAE baseline's (PyKoopman's)
SIMILARITIES = ("dot", "cosine")  # InfoNCE's score: Algorithm 2's; the released code's
KOOPMAN_MODES = ("learned", "closed_form")
ENTROPY_SIGNS = {"maximize": -1.0, "minimize": 1.0}  # the sign of gamma·S in the loss
SPECTRUM_PLOT, ROLLOUT_PLOT = "koopman_spectrum.png", "koopman_rollout.png"
FIT_WINDOWS = 1024  # training windows (evenly spaced) the evaluation's closed-form K is fitted on


def _check(config: ml_collections.ConfigDict, window_len: int) -> None:
    lc = config.loss
    for key, known in (
        ("objective", OBJECTIVES),
        ("similarity", SIMILARITIES),
        ("koopman", KOOPMAN_MODES),
        ("entropy_objective", tuple(ENTROPY_SIGNS)),
    ):
        if lc[key] not in known:
            raise UserError(f"config.loss.{key} must be one of {known}, got {lc[key]!r}")
    if lc.objective == "pykoopman" and lc.koopman != "learned":
        raise UserError(
            "config.loss.objective='pykoopman' trains K through the decoded rollout: it needs "
            f"config.loss.koopman='learned', got {lc.koopman!r}"
        )
    if lc.infonce_k < 1 or window_len < 2 * lc.infonce_k + 1:
        raise UserError(
            f"InfoNCE with infonce_k={lc.infonce_k} needs windows of at least "
            f"{2 * lc.infonce_k + 1} steps and k >= 1, got "
            f"config.data.window_len={window_len}"
        )
    # A vmapped sweep traces the weights it varies: only plain numbers are checked here.
    if _below(lc.temperature, 0, strict=True) or any(
        _below(lc[key], 0) for key in ("ridge", "beta", "rollout")
    ):
        raise UserError(
            f"config.loss.temperature must be positive, and ridge, beta and rollout "
            f"non-negative, got {lc.temperature}, {lc.ridge}, {lc.beta}, {lc.rollout}"
        )
    if not config.evaluation.horizons or min(config.evaluation.horizons) < 1:
        raise UserError(
            f"config.evaluation.horizons must be positive step counts, got "
            f"{config.evaluation.horizons}"
        )


def _below(value, bound: float, strict: bool = False) -> bool:
    """Whether a plain number is below ``bound`` (or at it, with ``strict``); a traced value
    (a leaf a vmapped sweep varies, each value checked when its config was built) is not."""
    return is_plain(value) and (value <= bound if strict else value < bound)


def make_task(config: ml_collections.ConfigDict) -> Task:
    data = data_lib.load(config.data)
    _, window_len, state_dim = data.train["window"].shape
    _check(config, window_len)
    lc, m = config.loss, config.model
    test_len = data.test["trajectory"].shape[1]
    horizons = tuple(int(h) for h in config.evaluation.horizons)
    if max(horizons) >= test_len:
        raise UserError(
            f"config.evaluation.horizons {horizons} must be shorter than the test "
            f"trajectories ({test_len} steps)"
        )
    learned = lc.koopman == "learned"
    model = KoopmanAutoencoder(
        state_dim=state_dim,
        latent_dim=m.latent_dim,
        encoder=m.encoder,
        hidden=m.hidden,
        depth=m.depth,
        channels=m.channels,
        learned_koopman=learned,
        dtype=jnp.dtype(config.train.compute_dtype),
    )
    entropy_sign = ENTROPY_SIGNS[lc.entropy_objective]

    def encode(params, x):
        return model.apply(params, x.reshape(-1, state_dim), method=model.encode).reshape(
            *x.shape[:-1], m.latent_dim
        )

    def decode(params, z):
        return model.apply(params, z.reshape(-1, m.latent_dim), method=model.decode).reshape(
            *z.shape[:-1], state_dim
        )

    def decoded_rollout(params, z_BTL, a_LL):
        """(B, T - 1, D): g(z_0 Aⁿ) for n = 1..T-1 from each window's first latent."""
        return decode(params, rollout(z_BTL[:, 0], a_LL, window_len - 1))

    def rollout(z0_NL, a_LL, steps):
        """(N, steps, L): z0 A, z0 A², ..., z0 A^steps."""

        def step(z, _):
            z = z @ a_LL
            return z, z

        return jax.lax.scan(step, z0_NL, length=steps)[1].swapaxes(0, 1)

    def init(key, batch):
        return model.init(key, batch["window"][:, 0]), {}

    def loss(params, task_state, batch, key):
        del key  # deterministic model
        x_BTD = batch["window"]
        z_BTL = encode(params, x_BTD)
        if learned:
            a_LL = model.apply(params, method=model.koopman)
        else:
            now_NL = z_BTL[:, :-1].reshape(-1, m.latent_dim)
            next_NL = z_BTL[:, 1:].reshape(-1, m.latent_dim)
            now_NL, next_NL = jax.lax.stop_gradient((now_NL, next_NL))
            a_LL = information.ridge_koopman(now_NL, next_NL, lc.ridge)
        if lc.objective == "pykoopman":
            terms = objective.pykoopman_loss(
                x_BTD, decode(params, z_BTL), decoded_rollout(params, z_BTL, a_LL)
            )
            total = terms.pop("total")
            terms["entropy"] = information.von_neumann_entropy(
                information.covariance(z_BTL.reshape(-1, m.latent_dim))
            )
            terms["effective_dim"] = jnp.exp(terms["entropy"])
            return total, (terms, task_state)
        terms = objective.algorithm2_terms(
            x_BTD,
            decode(params, z_BTL),
            z_BTL,
            a_LL,
            lc.infonce_k,
            lc.temperature,
            cosine=lc.similarity == "cosine",
        )
        total = objective.algorithm2_loss(terms, lc.alpha, lc.beta, lc.gamma, entropy_sign)
        if not left_out(lc.rollout):
            terms["rollout"] = objective.rollout_error(x_BTD, decoded_rollout(params, z_BTL, a_LL))
            total = total + lc.rollout * terms["rollout"]
        terms["effective_dim"] = jnp.exp(terms["entropy"])
        return total, (terms, task_state)

    fit_rows = np.unique(np.linspace(0, data.num_train - 1, FIT_WINDOWS).astype(int))
    fit_windows = data.train["window"][fit_rows]

    @jax.jit
    def closed_form_koopman(params, windows_BTD):
        z = encode(params, windows_BTD)
        return information.ridge_koopman(
            z[:, :-1].reshape(-1, m.latent_dim), z[:, 1:].reshape(-1, m.latent_dim), lc.ridge
        )

    def koopman_matrix(params):
        """A = K^T used for evaluation and plots."""
        if learned:
            return model.apply(params, method=model.koopman)
        return closed_form_koopman(params, fit_windows)

    starts = np.arange(0, test_len - max(horizons), config.evaluation.start_stride)
    test_std_D = np.asarray(data.test["trajectory"]).std(axis=(0, 1))
    offset_D, scale_D = np.asarray(data.test["offset"][0]), np.asarray(data.test["scale"][0])

    @jax.jit
    def rollout_errors(params, a_LL, trajectories_NTD):
        x0 = trajectories_NTD[:, starts].reshape(-1, state_dim)
        predicted = decode(params, rollout(encode(params, x0), a_LL, max(horizons)))
        targets = trajectories_NTD[:, starts[:, None] + np.arange(1, max(horizons) + 1)]
        targets = targets.reshape(predicted.shape)
        by_std = information.nrmse_by_std(predicted, targets, test_std_D)
        by_norm = information.nrmse_by_norm(
            predicted * scale_D + offset_D, targets * scale_D + offset_D
        )
        latents = encode(params, trajectories_NTD).reshape(-1, m.latent_dim)
        return by_std, by_norm, information.effective_dimension(information.covariance(latents))

    def evaluate(params, task_state, test):
        del task_state
        a_LL = koopman_matrix(params)
        by_std, by_norm, effective_dim = map(
            np.asarray, rollout_errors(params, a_LL, test["trajectory"])
        )
        eigenvalues = np.linalg.eigvals(np.asarray(a_LL, np.float64))
        eigenvalues = eigenvalues[np.argsort(-np.abs(eigenvalues))]
        metrics = {f"nrmse_std_{h}": by_std[h - 1] for h in horizons}
        metrics.update({f"nrmse_norm_{h}": by_norm[h - 1] for h in horizons})
        metrics["effective_dim"] = effective_dim
        metrics["spectral_radius"] = np.abs(eigenvalues[0])
        metrics["spectrum"] = np.stack([eigenvalues.real, eigenvalues.imag], axis=-1)
        return metrics

    def plot(params, task_state, test, directory):
        del task_state
        a_LL = koopman_matrix(params)
        plot_spectrum(np.linalg.eigvals(np.asarray(a_LL, np.float64)), directory / SPECTRUM_PLOT)
        steps = min(test_len - 1, 4 * max(horizons))
        trajectory = np.asarray(test["trajectory"][0, : steps + 1])
        z0 = encode(params, jnp.asarray(trajectory[:1]))
        predicted = np.asarray(decode(params, rollout(z0, a_LL, steps)))[0]
        plot_rollout(
            trajectory,
            np.concatenate([trajectory[:1], predicted]),
            config.data.dt,
            directory / ROLLOUT_PLOT,
        )

    return Task(data=data, init=init, loss=loss, evaluate=evaluate, plot=plot)


def plot_spectrum(eigenvalues: np.ndarray, path: epath.Path) -> None:
    """The eigenvalues of K with the unit circle: whole plane (left), zoomed on them (right)."""
    fig = Figure(figsize=(9, 4.5))
    axes = fig.subplots(1, 2)
    angle = np.linspace(0, 2 * np.pi, 4000)
    pad = 0.1 * max(np.ptp(eigenvalues.real), np.ptp(eigenvalues.imag), 1e-3)
    zoom = (
        eigenvalues.real.min() - pad,
        eigenvalues.real.max() + pad,
        eigenvalues.imag.min() - pad,
        eigenvalues.imag.max() + pad,
    )
    for ax, limits in zip(axes, ((-1.2, 1.2, -1.2, 1.2), zoom)):
        ax.plot(np.cos(angle), np.sin(angle), color="grey", lw=1)
        ax.scatter(eigenvalues.real, eigenvalues.imag, s=20, color="C3", zorder=3)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlim(limits[:2])
        ax.set_ylim(limits[2:])
        ax.set_xlabel("Re λ")
        ax.set_ylabel("Im λ")
    axes[0].set_aspect("equal")
    axes[1].set_title("zoom")
    fig.suptitle(f"Koopman spectrum (max |λ| = {np.abs(eigenvalues).max():.4f})")
    fig.tight_layout()
    paths.save_figure(fig, path)


def plot_rollout(
    true_TD: np.ndarray, predicted_TD: np.ndarray, dt: float, path: epath.Path
) -> None:
    """A test trajectory against the model's rollout from its first state (standardised units)."""
    time = np.arange(len(true_TD)) * dt
    dims = true_TD.shape[1]
    if dims <= 8:
        fig = Figure(figsize=(7, 1.8 * dims))
        axes = fig.subplots(dims, 1, sharex=True, squeeze=False)
        for d, ax in enumerate(axes[:, 0]):
            ax.plot(time, true_TD[:, d], color="k", lw=1.2, label="true")
            ax.plot(time, predicted_TD[:, d], color="C3", lw=1.2, ls="--", label="Koopman rollout")
            ax.set_ylabel(f"x[{d}]")
            # A diverging rollout leaves the frame rather than flattening the truth.
            low, high = true_TD[:, d].min(), true_TD[:, d].max()
            ax.set_ylim(low - 0.5 * (high - low), high + 0.5 * (high - low))
        axes[0, 0].legend(loc="upper right", fontsize=8)
        axes[-1, 0].set_xlabel("time")
    else:
        fig = Figure(figsize=(11, 3.5))
        axes = fig.subplots(1, 3, sharey=True)
        extent = (0, dims, time[-1], 0)
        limit = np.abs(true_TD).max()
        for ax, field, title in zip(
            axes,
            (true_TD, predicted_TD, predicted_TD - true_TD),
            ("true", "Koopman rollout", "error"),
        ):
            image = ax.imshow(
                field, aspect="auto", extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit
            )
            ax.set_title(title)
            ax.set_xlabel("grid point")
        axes[0].set_ylabel("time")
        fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle("test trajectory: truth vs rollout from its first state")
    paths.save_figure(fig, path, bbox_inches="tight")
