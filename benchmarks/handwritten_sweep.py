"""Hand-written reference for `bench_sweep.py`: N trainings of the `mlp_moons` model as one
program, written the way a JAX user would write it without a framework (the whole training one
function, `jax.vmap` over the seeds, one `jax.jit`, one `lax.scan`; no checkpoints, no records,
one evaluation at the end).

The same work as `jaxlab sweep mlp_moons --sweep config.seed=0,..,N-1 --vmap`: a 2->64->64->2 MLP,
Adam 1e-3, batch 256 drawn from 4,096 two-moons points, 3,000 steps, accuracy on 1,024 test points.

    python benchmarks/handwritten_sweep.py --trials 64 [--steps 3000]

Prints one line: ``trials=N steps=S seconds=T mean_accuracy=A`` (T: launch to result, in-process).
"""

import argparse
import time

START = time.perf_counter()

import flax.linen as nn  # noqa: E402 - the start-up of the imports is counted
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

BATCH, LEARNING_RATE = 256, 1e-3


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for width in (64, 64):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(2)(x)


def make_train(x_train, y_train, x_test, y_test, steps):
    model, tx = MLP(), optax.adam(LEARNING_RATE)

    def train(seed):
        key = jax.random.key(seed)
        params = model.init(jax.random.fold_in(key, 0), x_train[:1])
        opt_state = tx.init(params)

        def loss_fn(params, x, y):
            logits = model.apply(params, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        def step(carry, step_key):
            params, opt_state = carry
            index = jax.random.randint(step_key, (BATCH,), 0, x_train.shape[0])
            loss, grads = jax.value_and_grad(loss_fn)(params, x_train[index], y_train[index])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        keys = jax.random.split(jax.random.fold_in(key, 1), steps)
        (params, _), losses = jax.lax.scan(step, (params, opt_state), keys)
        accuracy = (model.apply(params, x_test).argmax(-1) == y_test).mean()
        return losses[-1], accuracy

    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    x_train, y_train = make_moons(4096, noise=0.1, random_state=0)
    x_test, y_test = make_moons(1024, noise=0.1, random_state=1)
    train = make_train(
        jnp.asarray(x_train, jnp.float32),
        jnp.asarray(y_train),
        jnp.asarray(x_test, jnp.float32),
        jnp.asarray(y_test),
        args.steps,
    )
    _, accuracy = jax.jit(jax.vmap(train))(jnp.arange(args.trials))
    mean_accuracy = float(accuracy.mean())
    seconds = time.perf_counter() - START
    print(
        f"trials={args.trials} steps={args.steps} seconds={seconds:.2f} "
        f"mean_accuracy={mean_accuracy:.4f}"
    )


if __name__ == "__main__":
    main()
