"""GEDI: self-supervised clustering trained jointly as an energy-based model.

Sansone & Manhaeve, "Unifying Self-Supervised Clustering and Energy-Based Models" (arXiv
2401.00873, TMLR 2025). One network gives cluster logits f(x) (K of them); p(y|x) = softmax(f(x))
and E(x) = -logsumexp_y f(x)_y (JEM's energy). GEDI minimises the sum of three terms of its lower
bound on the data log-likelihood (Sec. 4, Algorithm 1), each weighted by ``config.loss``:

* generative (contrastive divergence): mean E(x) over data - mean E(x~) over SGLD samples x~ from
  persistent chains (`jaxlab.papers.gedi.ebm`); penalises representation collapse;
* invariance: -(1/B) sum_i sum_y p(y|x2_i) log p(y|x1_i), for two augmented views x1, x2 of x_i;
  makes the assignment of a point the same under augmentation;
* uniformity (prior): -sum_y log((1/B) sum_i p(y|x1_i)), pushing the batch marginal of the
  assignments toward uniform; penalises cluster collapse (its minimum is K log K).

The two discriminative terms are written as in the authors' later code (quoted in the issue); no
stop-gradient anywhere, as the paper stresses. ``config.loss.energy_l2`` adds alpha * mean(E(x)^2 +
E(x~)^2), the energy-magnitude regulariser of Du & Mordatch (2019), with the generative term (the
``gedi`` experiment sets alpha = 0.1; 0 leaves it out). A term whose weight is 0 is not computed
(`jaxlab.tasks.left_out`). Augmentations are drawn from the step key inside the loss: additive
Gaussian noise for points, random shifts (zero padded) plus noise for images.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

from jaxlab import data as data_lib
from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.papers.gedi import clustering, density, ebm
from jaxlab.papers.gedi.model import ClusterMLP, energy
from jaxlab.tasks import Task, left_out

NUM_UNIFORM_EVAL = 2000  # points uniform in the box for eval/energy_uniform
NUM_OFF_DATA_CANDIDATES = 20000  # uniform points in the box, of which the off-data ones are kept
CONFIDENT = 0.9  # eval/confident_fraction: the points whose largest p(y|x) is above this
PLOT_GRID = 200  # the energy landscape is drawn on a PLOT_GRID x PLOT_GRID grid


def invariance_loss(logits1_bk: jax.Array, logits2_bk: jax.Array) -> jax.Array:
    """-(1/B) sum_i sum_y softmax(logits2_i)_y log softmax(logits1_i)_y."""
    return -jnp.mean(jnp.sum(jax.nn.softmax(logits2_bk) * jax.nn.log_softmax(logits1_bk), -1))


def uniformity_loss(logits_bk: jax.Array) -> jax.Array:
    """-sum_y log((1/B) sum_i softmax(logits_i)_y); equals K log K at a uniform batch marginal.

    Computed in log space, log((1/B) sum_i p_iy) = logsumexp_i log_softmax(logits_i)_y - log B,
    so that it stays finite when every point is assigned to one cluster with logit gaps beyond
    float32's range of exp (where the mean of the softmax underflows to 0 and its log to -inf)."""
    log_marginal_k = jax.scipy.special.logsumexp(jax.nn.log_softmax(logits_bk), axis=0) - jnp.log(
        logits_bk.shape[0]
    )
    return -jnp.sum(log_marginal_k)


def generative_loss(energy_data_b: jax.Array, energy_samples_b: jax.Array) -> jax.Array:
    """Contrastive divergence: mean E(data) - mean E(samples) (its gradient is the NLL's)."""
    return jnp.mean(energy_data_b) - jnp.mean(energy_samples_b)


def augment(key: jax.Array, x: jax.Array, noise_std: float, max_shift: int) -> jax.Array:
    """A random view of a batch: images (B, H, W, C) shifted by up to ``max_shift`` pixels, then
    Gaussian noise of std ``noise_std`` added to every input."""
    shift_key, noise_key = jax.random.split(key)
    if x.ndim == 4 and max_shift > 0:
        b, h, w, _ = x.shape
        padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
        offsets = jax.random.randint(shift_key, (b, 2), 0, 2 * max_shift + 1)
        x = jax.vmap(
            lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
        )(padded, offsets)
    return x + noise_std * jax.random.normal(noise_key, x.shape, x.dtype)


def sampling_box(train_inputs: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate [min, max] of the training inputs widened by ``margin`` times its width."""
    low, high = train_inputs.min(0), train_inputs.max(0)
    width = high - low
    return (low - margin * width).astype(np.float32), (high + margin * width).astype(np.float32)


def make_task(config: ml_collections.ConfigDict) -> Task:
    data = data_lib.load(config.data)
    m, lc, sc, ac = config.model, config.loss, config.sgld, config.augment
    if m.num_clusters < 2:
        raise UserError(f"config.model.num_clusters must be at least 2, got {m.num_clusters}")
    if sc.buffer_size < config.train.batch_size:
        raise UserError(
            f"config.sgld.buffer_size={sc.buffer_size} must be at least "
            f"config.train.batch_size={config.train.batch_size}"
        )
    model = ClusterMLP(
        num_clusters=m.num_clusters,
        hidden=tuple(m.hidden),
        temperature=m.temperature,
        dtype=jnp.dtype(config.train.compute_dtype),
    )
    train_inputs = np.asarray(data.train["x"])
    on_plane = train_inputs.ndim == 2 and train_inputs.shape[1] == 2  # the 2-D toy sets
    # Constants, computed now also when a vmapped sweep builds the task inside its trace.
    with jax.ensure_compile_time_eval():
        low, high = (jnp.asarray(v) for v in sampling_box(data.train["x"], sc.box_margin))
        uniform_points = ebm.uniform_in_box(jax.random.PRNGKey(0), NUM_UNIFORM_EVAL, low, high)
        off_data_candidates = (
            np.asarray(
                ebm.uniform_in_box(jax.random.PRNGKey(1), NUM_OFF_DATA_CANDIDATES, low, high)
            )
            if on_plane
            else None
        )
    use_generative = not left_out(lc.generative)

    def init(key, batch):
        params_key, buffer_key = jax.random.split(key)
        params = model.init(params_key, batch["x"])
        buffer = ebm.uniform_in_box(buffer_key, sc.buffer_size, low, high)
        return params, {"sgld_buffer": buffer}

    def loss(params, task_state, batch, key):
        x = batch["x"]
        view1_key, view2_key, chain_key, sgld_key = jax.random.split(key, 4)
        logits1 = model.apply(params, augment(view1_key, x, ac.noise_std, ac.max_shift))
        logits2 = model.apply(params, augment(view2_key, x, ac.noise_std, ac.max_shift))
        metrics, total = {}, jnp.zeros(())
        if not left_out(lc.invariance):
            metrics["loss_invariance"] = invariance_loss(logits1, logits2)
            total += lc.invariance * metrics["loss_invariance"]
        if not left_out(lc.uniformity):
            metrics["loss_uniformity"] = uniformity_loss(logits1)
            total += lc.uniformity * metrics["loss_uniformity"]
        if use_generative:
            buffer = task_state["sgld_buffer"]
            idx, x0 = ebm.draw_chains(buffer, chain_key, x.shape[0], sc.reinit_prob, low, high)
            frozen = jax.lax.stop_gradient(params)
            samples = jax.lax.stop_gradient(
                ebm.sgld(
                    lambda z: energy(model.apply(frozen, z)),
                    x0,
                    sgld_key,
                    sc.steps,
                    sc.step_size,
                    sc.noise_std,
                    low,
                    high,
                )
            )
            task_state = {"sgld_buffer": buffer.at[idx].set(samples)}
            e_data, e_samples = energy(model.apply(params, x)), energy(model.apply(params, samples))
            gen = generative_loss(e_data, e_samples)
            total += lc.generative * gen
            if not left_out(lc.energy_l2):
                total += lc.energy_l2 * jnp.mean(e_data**2 + e_samples**2)
            metrics.update(
                loss_generative=gen, energy_data=e_data.mean(), energy_sgld=e_samples.mean()
            )
        return total, (metrics, task_state)

    @jax.jit
    def predict(params, inputs):
        logits = model.apply(params, inputs)
        return jnp.argmax(logits, -1), energy(logits)

    @jax.jit
    def confidence(params, inputs):
        return jnp.max(jax.nn.softmax(model.apply(params, inputs)), -1)

    def evaluate(params, task_state, test):
        inputs = np.asarray(jax.device_get(test["x"]))
        clusters, test_energy = jax.device_get(predict(params, inputs))
        _, uniform_energy = jax.device_get(predict(params, uniform_points))
        max_p = np.asarray(jax.device_get(confidence(params, inputs)))
        labels = np.asarray(jax.device_get(test["label"]))
        metrics = {
            "nmi": clustering.nmi(labels, clusters),
            "accuracy": clustering.hungarian_accuracy(labels, clusters),
            "cluster_entropy": clustering.cluster_entropy(clusters, m.num_clusters),
            "confidence": float(max_p.mean()),
            "confident_fraction": float((max_p > CONFIDENT).mean()),
            "energy_data": float(test_energy.mean()),
            "energy_uniform": float(uniform_energy.mean()),
        }
        if on_plane:  # the density checks (`density`)
            off = density.off_data(off_data_candidates, train_inputs, inputs)
            samples = np.asarray(jax.device_get(task_state["sgld_buffer"]))
            metrics.update(
                separation_auc=density.separation_auc(
                    np.asarray(jax.device_get(predict(params, off)[1])), test_energy
                ),
                sgld_off_data=float(density.far_from_data(samples, train_inputs, inputs).mean()),
            )
        return metrics

    def plot(params, task_state, test, directory):
        inputs = np.asarray(jax.device_get(test["x"]))
        samples = np.asarray(jax.device_get(task_state["sgld_buffer"]))
        if inputs.ndim == 2 and inputs.shape[1] == 2:
            _plot_plane(
                predict, params, inputs, samples, np.asarray(low), np.asarray(high), directory
            )
        else:
            _plot_image_samples(samples, directory)

    return Task(data=data, init=init, loss=loss, evaluate=evaluate, plot=plot)


def _plot_plane(predict, params, points, samples, low, high, directory: epath.Path) -> None:
    """gedi_clusters.png, gedi_energy.png and gedi_sgld_samples.png for 2-D inputs."""
    gx, gy = np.meshgrid(
        np.linspace(low[0], high[0], PLOT_GRID), np.linspace(low[1], high[1], PLOT_GRID)
    )
    grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    grid_clusters, grid_energy = (np.asarray(a) for a in jax.device_get(predict(params, grid)))
    clusters, _ = jax.device_get(predict(params, points))
    panels = {
        "gedi_clusters.png": ("learned clusters\n(test points; regions: argmax p(y|x))", None),
        "gedi_energy.png": ("energy E(x) = -logsumexp f(x)", points),
        "gedi_sgld_samples.png": ("SGLD replay buffer over the energy", samples),
    }
    for name, (title, overlay) in panels.items():
        fig = Figure(figsize=(5, 4.5), layout="constrained")  # the title and colour bar inside
        ax = fig.subplots()
        if overlay is None:
            count = int(max(grid_clusters.max(), clusters.max())) + 1
            colours = [colormaps["tab10"](i % 10) for i in range(count)]  # regions as points
            ax.contourf(
                gx,
                gy,
                grid_clusters.reshape(gx.shape),
                alpha=0.25,
                colors=colours,
                levels=np.arange(count + 1) - 0.5,
            )
            ax.scatter(points[:, 0], points[:, 1], c=[colours[c] for c in clusters], s=4)
        else:
            mesh = ax.contourf(gx, gy, grid_energy.reshape(gx.shape), levels=30, cmap="viridis")
            fig.colorbar(mesh, ax=ax)
            ax.scatter(overlay[:, 0], overlay[:, 1], c="white", s=2, alpha=0.6)
        ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]))
        ax.set_title(title, fontsize=10)
        paths.save_figure(fig, directory / name)


def _plot_image_samples(samples, directory: epath.Path, rows: int = 8) -> None:
    """gedi_sgld_samples.png: a grid of replay-buffer images."""
    count = min(rows * rows, len(samples))
    fig = Figure(figsize=(rows, rows))
    axes = fig.subplots(rows, rows)
    for i, ax in enumerate(axes.ravel()):
        if i < count:
            ax.imshow(samples[i].squeeze(), cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    paths.save_figure(fig, directory / "gedi_sgld_samples.png", dpi=80)
