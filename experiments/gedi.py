"""GEDI: self-supervised clustering + energy-based model (Sansone & Manhaeve, arXiv 2401.00873).

One MLP gives cluster logits; it is trained with GEDI's three terms (generative SGLD contrastive
divergence, invariance, uniformity prior) on two moons, concentric circles or digits. The
ablations drop one term each, to show the failure mode it prevents. `get_sweep` gives the
report's grids (docs/gedi.md); each seed also re-draws the data.

    jaxlab train gedi --workdir runs/gedi_moons
    jaxlab train gedi:dataset=circles --workdir runs/gedi_circles
    jaxlab train gedi:variant=no_generative --workdir runs/gedi_moons_nogen
    jaxlab train gedi:invariance=0.025,steps=7000 --workdir runs/gedi_paper  # beta 0.05, 7k steps
    jaxlab train gedi:dataset=digits,clusters=10 --workdir runs/gedi_digits
    jaxlab train gedi:smoke --workdir /tmp/smoke                  # seconds, for tests
    jaxlab sweep gedi:dataset=circles,study=table2 --vmap --workdir runs/gedi_table2
    python scripts/reproduce_gedi.py                              # docs/gedi.md
"""

import ml_collections

from jaxlab.config import parse_preset
from jaxlab.errors import UserError

# invariance: the weight of the invariance term, 0.5 beta (beta = 0.1: 0.05; the paper's loss
# function's default beta = 0.05: 0.025); steps: training steps.
PRESET = dict(
    dataset="moons",
    variant="full",
    clusters=2,
    invariance=0.05,
    steps=3000,
    study="seeds",
    smoke=False,
)

# variant -> the loss weights it sets to zero (the energy's L2 term, ours, regularises the
# generative term's energies and goes with it)
VARIANTS = {
    "full": (),
    "no_generative": ("generative", "energy_l2"),
    "no_uniformity": ("uniformity",),
    "no_invariance": ("invariance",),
}
DATASETS = ("moons", "circles", "digits")
SEEDS = (0, 1, 2, 3, 4)
INVARIANCE_SWEEP = (0.0125, 0.025, 0.1, 0.5)  # besides the default 0.05, 3 seeds each


def loss_weights(variant: str, invariance: float) -> dict[str, float]:
    """The four loss weights of ``variant``: the discriminative terms as the authors' code
    weights them, 0.5 L_unif + 0.5 beta L_inv (CPLearn, solo/losses/gedi_nogen.py, whose CIFAR
    config sets beta = 0.1), the generative term 1 and our energy L2 term 0.1."""
    weights = dict(generative=1.0, invariance=invariance, uniformity=0.5, energy_l2=0.1)
    return {k: 0.0 if k in VARIANTS[variant] else v for k, v in weights.items()}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, PRESET)
    if preset.variant not in VARIANTS:
        raise UserError(
            f"preset variant must be one of {', '.join(VARIANTS)}, got {preset.variant!r}"
        )
    if preset.dataset not in DATASETS:
        raise UserError(
            f"preset dataset must be one of {', '.join(DATASETS)}, got {preset.dataset!r}"
        )
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "jaxlab.papers.gedi.task:make_task"
    if preset.dataset == "digits":
        config.data = dict(loader="jaxlab.data.digits:load", test_fraction=0.2, split_seed=0)
        config.augment = dict(noise_std=0.05, max_shift=1)
        hidden = (256, 256)
    else:
        config.data = dict(
            loader="jaxlab.data.toy2d:load",
            shape=preset.dataset,
            num_train=2000,
            num_test=1000,
            noise=0.1,
            factor=0.5,
            seed=0,
        )
        config.augment = dict(noise_std=0.1, max_shift=0)
        hidden = (100, 100, 100)
    config.model = dict(num_clusters=preset.clusters, hidden=hidden, temperature=0.1)
    config.loss = loss_weights(preset.variant, preset.invariance)
    # Langevin dynamics proper: noise_std = sqrt(2 step_size). With JEM's independent small noise
    # (0.01) the chains barely left their uniform starts and the energy learnt the data's region,
    # not its density (docs/gedi.md).
    config.sgld = dict(
        steps=20,
        step_size=0.01,
        noise_std=(2 * 0.01) ** 0.5,
        buffer_size=10000,
        reinit_prob=0.05,
        box_margin=0.25,
    )
    config.optimizer = dict(
        name="adam",
        learning_rate=1e-3,
        weight_decay=0.0,
        warmup_steps=0,
        schedule="constant",
        grad_clip_norm=0.0,
    )
    config.train = dict(
        steps=preset.steps,
        batch_size=256,
        log_every=100,
        eval_every=1000,
        checkpoint_every=preset.steps,
        keep_checkpoints=1,
    )
    if preset.smoke:
        if preset.dataset != "digits":
            config.data.update(num_train=256, num_test=128)
        config.sgld.update(steps=5, buffer_size=512)
        config.train.update(
            steps=20, batch_size=64, log_every=5, eval_every=10, checkpoint_every=10
        )
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    """The runs of one study of docs/gedi.md at the preset's dataset, invariance weight and
    steps (``study=``): ``seeds`` the preset's variant over 5 seeds; ``table2`` every variant
    over 5 seeds; ``invariance`` full GEDI over `INVARIANCE_SWEEP`, 3 seeds each. Each seed
    re-draws the data, so ``--vmap`` trains one program per seed, its runs differing in loss
    weights only."""
    preset = parse_preset(arg, PRESET)
    data_seed = "config.data.split_seed" if preset.dataset == "digits" else "config.data.seed"
    if preset.study == "seeds":
        runs = [({}, s) for s in SEEDS]
    elif preset.study == "table2":
        runs = [(loss_weights(v, preset.invariance), s) for s in SEEDS for v in VARIANTS]
    elif preset.study == "invariance":
        runs = [({"invariance": w}, s) for s in SEEDS[:3] for w in INVARIANCE_SWEEP]
    else:
        raise UserError(f"unknown study {preset.study!r}; known: seeds, table2, invariance")
    return [
        {"config.seed": s, data_seed: s, **{f"config.loss.{k}": v for k, v in loss.items()}}
        for loss, s in runs
    ]
