"""Classification with cross-entropy.

``config.model.name`` picks the classifier and the input it reads: ``vit`` (a vision transformer
on the dataset's ``image`` arrays) or ``mlp`` (a multilayer perceptron on its ``x`` feature
vectors).
"""
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxlab.data import loaders
from jaxlab.errors import UserError
from jaxlab.models.mlp import MLPClassifier
from jaxlab.models.transformer import ATTENTION_VARIANTS, VisionTransformer
from jaxlab.tasks.base import Task

EVAL_CHUNK = 512  # test examples per vectorised evaluation chunk (bounds evaluation memory)
INPUT_KEYS = {"vit": "image", "mlp": "x"}  # model name -> the dataset array it classifies


def make_model(config: ml_collections.ConfigDict, num_classes: int,
               image_shape: tuple[int, int, int]) -> VisionTransformer:
    """The vision transformer of ``config.model`` for images of ``image_shape``; checks the config."""
    m = config.model
    attention, triangular = m.get("attention", "full"), m.get("triangular", False)
    if attention not in ATTENTION_VARIANTS:
        raise UserError(f"config.model.attention={attention!r} is unknown; "
                        f"expected one of {', '.join(ATTENTION_VARIANTS)}")
    if triangular and not attention.startswith("symmetric"):
        raise UserError(f"config.model.triangular=True needs a symmetric attention, "
                        f"got config.model.attention={attention!r}")
    if m.width % m.heads:
        raise UserError(f"config.model.width={m.width} is not divisible by "
                        f"config.model.heads={m.heads}")
    height, width, _ = image_shape
    if height % m.patch_size or width % m.patch_size:
        raise UserError(f"config.model.patch_size={m.patch_size} does not divide the "
                        f"{height}x{width} images of dataset {config.data.name!r}")
    return VisionTransformer(num_classes=num_classes, patch_size=m.patch_size, width=m.width,
                             depth=m.depth, heads=m.heads, mlp_dim=m.mlp_dim, use_mlp=m.mlp,
                             attention=attention, triangular=triangular)


def as_float_images(images: jax.Array) -> jax.Array:
    """uint8 images (MNIST, CIFAR-10) scaled to [0, 1]; float inputs unchanged."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images


def parameter_total(params) -> int:
    """The number of scalars in a parameter tree."""
    return sum(x.size for x in jax.tree.leaves(params))


def make_task(config: ml_collections.ConfigDict) -> Task:
    if config.model.name not in INPUT_KEYS:
        raise UserError(f"config.model.name={config.model.name!r} is unknown; expected one of "
                        f"{', '.join(INPUT_KEYS)}")
    input_key = INPUT_KEYS[config.model.name]
    data = loaders.load(config.data)
    if input_key not in data.train:
        raise UserError(f"model {config.model.name!r} reads {input_key!r} arrays, which dataset "
                        f"{config.data.name!r} does not have (it has {', '.join(data.train)})")
    num_classes = int(max(data.train["label"].max(), data.test["label"].max())) + 1
    if config.model.name == "mlp":
        model = MLPClassifier(tuple(config.model.hidden_sizes), num_classes)
    else:
        model = make_model(config, num_classes, data.train["image"].shape[1:])

    def logits_of(params, inputs):
        return model.apply(params, as_float_images(inputs))

    def init(key, batch):
        return model.init(key, as_float_images(batch[input_key])), {}

    def loss(params, task_state, batch, key):
        del key  # deterministic model
        logits = logits_of(params, batch[input_key])
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return losses.mean(), ({"accuracy": accuracy}, task_state)

    @jax.jit
    def evaluate(params, task_state, test):
        del task_state
        def per_example(example):
            logits = logits_of(params, example[input_key][None])[0]
            return (optax.softmax_cross_entropy_with_integer_labels(logits, example["label"]),
                    jnp.argmax(logits) == example["label"])
        losses, correct = jax.lax.map(per_example, test, batch_size=EVAL_CHUNK)
        return {"loss": losses.mean(), "accuracy": correct.mean()}

    return Task(data=data, init=init, loss=loss, evaluate=evaluate)
