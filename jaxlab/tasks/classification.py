"""Image classification with cross-entropy: the task of the transformer experiments."""
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxlab.data import loaders
from jaxlab.models.transformer import VisionTransformer
from jaxlab.tasks.base import Task

EVAL_CHUNK = 512  # test examples per vectorised evaluation chunk (bounds evaluation memory)


def make_model(config: ml_collections.ConfigDict, num_classes: int) -> VisionTransformer:
    m = config.model
    return VisionTransformer(num_classes=num_classes, patch_size=m.patch_size, width=m.width,
                             depth=m.depth, heads=m.heads, mlp_dim=m.mlp_dim, use_mlp=m.mlp)


def make_task(config: ml_collections.ConfigDict) -> Task:
    data = loaders.load(config.data)
    num_classes = int(max(data.train["label"].max(), data.test["label"].max())) + 1
    model = make_model(config, num_classes)

    def init(key, batch):
        return model.init(key, batch["image"]), {}

    def loss(params, task_state, batch, key):
        del key  # deterministic model
        logits = model.apply(params, batch["image"])
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return losses.mean(), ({"accuracy": accuracy}, task_state)

    @jax.jit
    def evaluate(params, task_state, test):
        del task_state
        def per_example(example):
            logits = model.apply(params, example["image"][None])[0]
            return (optax.softmax_cross_entropy_with_integer_labels(logits, example["label"]),
                    jnp.argmax(logits) == example["label"])
        losses, correct = jax.lax.map(per_example, test, batch_size=EVAL_CHUNK)
        return {"loss": losses.mean(), "accuracy": correct.mean()}

    return Task(data=data, init=init, loss=loss, evaluate=evaluate)
