"""Bare-script reference for `benchmarks/bench.py --end-to-end`: the job of `jaxlab train
minimal_transformer` written as a researcher would write it without a framework.

The same model and schedule: a ViT-style classifier on scikit-learn's digits (8x8 images, 2x2
patches -> 16 tokens, width 64, 2 pre-LayerNorm blocks with 4-head softmax attention without
Q/K/V/O biases and a GELU MLP of 128, mean pooling), a random 80/20 split, batch 128, AdamW
(peak 1e-3, weight decay 1e-4, 100 warm-up steps then cosine decay, global-norm clipping at 1),
3,000 steps, the test split evaluated every 500 steps. A Python loop over a jitted step; batches
drawn with replacement and gathered on the host. No checkpoints, no logs. Prints the final test
accuracy; run it as a whole process (imports and compilation count).

    python benchmarks/bare_minimal_transformer.py
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

STEPS, BATCH, EVAL_EVERY = 3000, 128, 500


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=4, use_bias=False)(y, y)
        y = nn.gelu(nn.Dense(128)(nn.LayerNorm()(x)))
        return x + nn.Dense(x.shape[-1])(y)


class ViT(nn.Module):
    @nn.compact
    def __call__(self, images):
        b = images.shape[0]
        patches = images.reshape(b, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(b, 16, 4)
        x = nn.Dense(64)(patches)
        x = x + self.param("position", nn.initializers.normal(0.02), (16, 64))
        for _ in range(2):
            x = Block()(x)
        return nn.Dense(10)(nn.LayerNorm()(x).mean(axis=1))


def main():
    start = time.perf_counter()
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    test, train = order[: round(0.2 * len(order))], order[round(0.2 * len(order)) :]

    model = ViT()
    params = model.init(jax.random.PRNGKey(0), images[:1])
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, 1e-3, 100), optax.cosine_decay_schedule(1e-3, STEPS - 100)],
        [100],
    )
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def accuracy(params, x, y):
        return jnp.mean(jnp.argmax(model.apply(params, x), -1) == y)

    rng = np.random.default_rng(0)
    for i in range(1, STEPS + 1):
        idx = train[rng.integers(0, len(train), BATCH)]
        params, opt_state, loss = step(params, opt_state, images[idx], labels[idx])
        if i % EVAL_EVERY == 0:
            acc = float(accuracy(params, images[test], labels[test]))
            print(f"step {i} loss {float(loss):.4f} test accuracy {acc:.4f}", flush=True)
    print(
        f"bare script: test accuracy {acc:.4f}, {time.perf_counter() - start:.1f} s after imports"
    )


if __name__ == "__main__":
    main()
