"""ViT-style encoder classifier on scikit-learn digits (transformer minimization, full variant).

Reproduces the baseline of "Reducing the Transformer Architecture to a Minimum" (Bermeitinger et
al., arXiv 2410.13732) at digits scale: 8x8 images, 2x2 patches (16 tokens), pre-LayerNorm
encoder blocks with softmax attention and an optional MLP, mean pooling.

    jaxlab train minimal_transformer --workdir runs/demo
    jaxlab train minimal_transformer:mlp=False,depth=6 --workdir runs/nomlp
    jaxlab train minimal_transformer:smoke --workdir /tmp/smoke      # seconds, for tests
"""
import ml_collections

from jaxlab.config import parse_preset

PRESET = dict(mlp=True, depth=2, width=64, heads=4, smoke=False)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, PRESET)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "classification"
    config.data = dict(name="digits", test_fraction=0.2, split_seed=0)
    config.model = dict(patch_size=2, width=preset.width, depth=preset.depth, heads=preset.heads,
                        mlp_dim=2 * preset.width, mlp=preset.mlp)
    config.optimizer = dict(name="adamw", learning_rate=1e-3, weight_decay=1e-4, warmup_steps=100,
                            schedule="cosine", grad_clip_norm=1.0)
    config.train = dict(steps=3000, batch_size=128, log_every=100, eval_every=500,
                        checkpoint_every=1000, keep_checkpoints=3)
    if preset.smoke:
        config.model.width, config.model.mlp_dim, config.model.depth = 16, 32, 1
        config.optimizer.warmup_steps = 2
        config.train.update(steps=20, batch_size=32, log_every=5, eval_every=10,
                            checkpoint_every=10)
    return config
