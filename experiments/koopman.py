"""Koopman autoencoder with InfoNCE and von Neumann entropy terms (Cheng et al., arXiv 2510.13025).

"Information Shapes Koopman Representation": a Koopman autoencoder whose loss adds alpha·InfoNCE
over temporal neighbours (latent mutual information, simplicity) and gamma·von Neumann entropy of
the latent covariance (expressiveness) on simulated Lorenz-63, pendulum or Burgers data.
alpha=0,gamma=0 is the plain Koopman autoencoder (KAE). See docs/koopman.md.

    jaxlab train koopman --workdir runs/koopman                       # Lorenz-63, full loss
    jaxlab train koopman:alpha=0,gamma=0 --workdir runs/kae           # the KAE baseline
    jaxlab train koopman:entropy=minimize --workdir runs/minus        # the released code's sign
    jaxlab train koopman:koopman=closed_form --workdir runs/ridge     # K by ridge regression
    jaxlab train koopman:system=burgers --workdir runs/burgers        # 64-point field, conv net
    jaxlab train koopman:noise=0.1 --workdir runs/noisy --config.data.dt=0.1
    jaxlab train koopman:smoke --workdir /tmp/smoke                   # seconds, for tests
"""
import ml_collections

from jaxlab.config import parse_preset
from jaxlab.errors import UserError

PRESET = dict(system="lorenz63", koopman="learned", alpha=2.0, gamma=0.1, entropy="maximize",
              noise=0.0, steps=3000, smoke=False)

# Per system: sampling interval, trajectory length, encoder family, batch size (windows; the conv
# net on 64-point fields costs ~10x the MLP per window on CPU).
SYSTEM_DEFAULTS = {
    "lorenz63": dict(dt=0.01, length=1000, encoder="mlp", batch_size=64),
    "pendulum": dict(dt=0.1, length=400, encoder="mlp", batch_size=64),
    "burgers": dict(dt=0.05, length=200, encoder="conv", batch_size=16),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, PRESET)
    system = SYSTEM_DEFAULTS.get(preset.system)
    if system is None:
        raise UserError(f"unknown system {preset.system!r}; known: {', '.join(SYSTEM_DEFAULTS)}")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "jaxlab.papers.koopman.task:make_task"
    config.data = dict(loader="jaxlab.papers.koopman.dynamics:load", system=preset.system,
                       dt=system["dt"], train_trajectories=32, test_trajectories=8,
                       length=system["length"], window_len=51, window_stride=4,
                       noise=preset.noise, split_seed=0)
    config.model = dict(encoder=system["encoder"], latent_dim=16, hidden=64, depth=2, channels=16)
    # Paper, physical systems: alpha = 2.0, gamma = 0.1, k = 3, tau = 0.1, Adam 1e-3.
    config.loss = dict(reconstruction=1.0, prediction=1.0, consistency=1.0, alpha=preset.alpha,
                       gamma=preset.gamma, entropy_objective=preset.entropy, infonce_k=3,
                       temperature=0.1, koopman=preset.koopman, ridge=0.1)
    config.evaluation = dict(horizons=(5, 20, 50), start_stride=10)
    config.optimizer = dict(name="adam", learning_rate=1e-3, weight_decay=0.0, warmup_steps=100,
                            schedule="cosine", grad_clip_norm=1.0)
    config.train = dict(steps=preset.steps, batch_size=system["batch_size"], log_every=100,
                        eval_every=1000, checkpoint_every=1000, keep_checkpoints=2)
    if preset.smoke:
        config.data.update(train_trajectories=4, test_trajectories=2, length=120, window_len=16,
                           window_stride=8)
        config.model.update(latent_dim=8, hidden=16, channels=4)
        config.evaluation.update(horizons=(5, 20, 50), start_stride=20)
        config.optimizer.warmup_steps = 2
        config.train.update(steps=20, batch_size=16, log_every=5, eval_every=10,
                            checkpoint_every=10)
    return config
