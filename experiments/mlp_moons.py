"""A 2->64->64->2 MLP classifier on two moons: the smallest end-to-end experiment.

Also the `tiny` workload of benchmarks/bench.py (batch 256, Adam 1e-3, like the PyTorch reference in
the benchmark references).

    jaxlab train mlp_moons --workdir runs/moons
    jaxlab train mlp_moons:smoke --workdir /tmp/moons      # seconds, for tests
"""

import ml_collections

from jaxlab.config import parse_preset

PRESET = dict(noise=0.1, smoke=False)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, PRESET)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "jaxlab.tasks.classification:make_task"
    config.data = dict(
        loader="jaxlab.data.toy2d:load",
        shape="moons",
        num_train=4096,
        num_test=1024,
        noise=preset.noise,
        factor=0.5,
        seed=0,
    )
    config.model = dict(
        constructor="jaxlab.models.mlp:MLPClassifier", hidden_sizes=(64, 64), dropout=0.0
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
        checkpoint_every=1000,
        keep_checkpoints=3,
    )
    if preset.smoke:
        config.train.update(steps=40, log_every=10, eval_every=20, checkpoint_every=20)
    return config
