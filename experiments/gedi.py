"""GEDI: self-supervised clustering + energy-based model (Sansone & Manhaeve, arXiv 2401.00873).

One MLP gives cluster logits; it is trained with GEDI's three terms (generative SGLD contrastive
divergence, invariance, uniformity prior) on two moons, concentric circles or digits. The
ablations drop one term each, to show the failure mode it prevents.

    jaxlab train gedi --workdir runs/gedi_moons
    jaxlab train gedi:dataset=circles --workdir runs/gedi_circles
    jaxlab train gedi:variant=no_generative --workdir runs/gedi_moons_nogen
    jaxlab train gedi:dataset=digits,clusters=10 --workdir runs/gedi_digits
    jaxlab train gedi:smoke --workdir /tmp/smoke                  # seconds, for tests
    python scripts/reproduce_gedi.py                              # docs/gedi.md (5 seeds)
"""

import ml_collections

from jaxlab.config import parse_preset
from jaxlab.errors import UserError

PRESET = dict(dataset="moons", variant="full", clusters=2, smoke=False)

# variant -> the loss weight it sets to zero
VARIANTS = {
    "full": None,
    "no_generative": "generative",
    "no_uniformity": "uniformity",
    "no_invariance": "invariance",
}
DATASETS = ("moons", "circles", "digits")


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
    # The discriminative terms as the authors' code weights them, 0.5 L_unif + 0.5 beta L_inv
    # with beta = 0.1 (CPLearn, solo/losses/gedi_nogen.py and its CIFAR config).
    config.loss = dict(generative=1.0, invariance=0.05, uniformity=0.5, energy_l2=0.1)
    if VARIANTS[preset.variant]:
        config.loss[VARIANTS[preset.variant]] = 0.0
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
        steps=3000,
        batch_size=256,
        log_every=100,
        eval_every=1000,
        checkpoint_every=3000,
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
