"""Classification with cross-entropy: ``config.task = "jaxlab.tasks.classification:make_task"``.

`make_task` builds the task: the model of ``config.model.constructor`` maps the inputs ``x`` of
the dataset (``config.data.loader``) to logits over the integer labels ``label``. The model's
mutable variable collections (BatchNorm's ``batch_stats``) are the task state: updated by each
training step, used as they are in evaluation, checkpointed with the parameters.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab import data as data_lib
from jaxlab import models
from jaxlab.errors import UserError
from jaxlab.tasks.base import Task

EVAL_BATCH = 512  # test examples per vectorised step of the evaluation (bounds its memory)
INPUTS, LABELS = "x", "label"


def as_float_images(images: jax.Array) -> jax.Array:
    """uint8 images (MNIST, CIFAR-10) scaled to [0, 1]; float inputs unchanged."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images


def parameter_total(params) -> int:
    """The number of scalars in a parameter tree."""
    return sum(x.size for x in jax.tree.leaves(params))


def num_classes_of(dataset: data_lib.Dataset) -> int:
    """1 + the largest label of either split; checks the arrays the task reads."""
    largest = 0
    for split, arrays in (("train", dataset.train), ("test", dataset.test)):
        missing = [k for k in (INPUTS, LABELS) if k not in arrays]
        if missing:
            raise UserError(
                f"classification reads the arrays {INPUTS!r} and {LABELS!r}; the "
                f"{split} split of config.data has {', '.join(arrays) or 'none'}"
            )
        labels = np.asarray(arrays[LABELS])
        if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1 or labels.min() < 0:
            raise UserError(
                f"classification needs labels as non-negative integers of shape (N,);"
                f" the {split} split's {LABELS!r} is {labels.dtype} of shape "
                f"{labels.shape}"
            )
        largest = max(largest, int(labels.max()))
    return largest + 1


def make_task(config: ml_collections.ConfigDict) -> Task:
    data = data_lib.load(config.data)
    model = models.build(config.model, config.train.compute_dtype, num_classes=num_classes_of(data))
    flag = models.train_flag(model)

    def logits_of(params, task_state, inputs, dropout_key=None):
        """(float32 logits, whatever the dtype the model computes in (the loss reduces in f32),
        and the task state: the model's mutable collections, updated in training)."""
        variables = {**params, **task_state}
        inputs = as_float_images(inputs)
        if dropout_key is None:  # a dropout stream all the same: NNX modules ask for one
            logits = model.apply(
                variables,
                inputs,
                **models.mode(flag, False),
                rngs={"dropout": jax.random.PRNGKey(0)},
            )
        elif task_state:
            logits, task_state = model.apply(
                variables,
                inputs,
                **models.mode(flag, True),
                rngs={"dropout": dropout_key},
                mutable=list(task_state),
            )
        else:
            logits = model.apply(
                variables, inputs, **models.mode(flag, True), rngs={"dropout": dropout_key}
            )
        return logits.astype(jnp.float32), task_state

    def init(key, batch):
        variables = model.init(
            {"params": key, "dropout": jax.random.PRNGKey(0)},
            as_float_images(batch[INPUTS]),
            **models.mode(flag, False),
        )
        mutable = sorted(set(variables) - {"params"})
        if mutable and flag is None:
            raise UserError(
                f"config.model.constructor={config.model.constructor!r} has the mutable "
                f"variable collections {', '.join(mutable)} but no train (or deterministic) "
                f"argument in __call__ to update them in training"
            )
        params = {"params": variables["params"]}
        return params, {name: variables[name] for name in mutable}  # e.g. batch_stats

    def loss(params, task_state, batch, key):
        logits, task_state = logits_of(params, task_state, batch[INPUTS], key)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch[LABELS])
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch[LABELS])
        return losses.mean(), ({"accuracy": accuracy}, task_state)

    @jax.jit
    def evaluate_sums(params, task_state, test):
        def per_example(example):
            logits = logits_of(params, task_state, example[INPUTS][None])[0][0]
            return (
                optax.softmax_cross_entropy_with_integer_labels(logits, example[LABELS]),
                jnp.argmax(logits) == example[LABELS],
            )

        losses, correct = jax.lax.map(per_example, test, batch_size=EVAL_BATCH)
        return {"loss": losses.sum(), "accuracy": correct.sum(dtype=jnp.float32)}

    def evaluate(params, task_state, test):
        count = len(test[LABELS])
        return {
            name: total / count for name, total in evaluate_sums(params, task_state, test).items()
        }

    def predict(params, task_state, inputs):
        """The float32 logits of a batch of inputs, in evaluation mode."""
        return logits_of(params, task_state, inputs)[0]

    return Task(
        data=data,
        init=init,
        loss=loss,
        evaluate=evaluate,
        evaluate_sums=evaluate_sums,
        predict=predict,
    )
