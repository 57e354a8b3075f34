"""The optimizer and learning-rate schedule of ``config.optimizer``."""

import ml_collections
import optax

from jaxlab.errors import UserError


def make_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warm-up over ``warmup_steps``, then ``constant`` or ``cosine`` decay to 0."""
    warmup = min(opt.warmup_steps, total_steps)
    if opt.schedule == "constant":
        decay = optax.constant_schedule(opt.learning_rate)
    elif opt.schedule == "cosine":
        decay = optax.cosine_decay_schedule(opt.learning_rate, max(total_steps - warmup, 1))
    else:
        raise UserError(
            f"config.optimizer.schedule must be 'constant' or 'cosine', got {opt.schedule!r}"
        )
    if warmup == 0:
        return decay
    return optax.join_schedules(
        [optax.linear_schedule(0.0, opt.learning_rate, warmup), decay], [warmup]
    )


def make_optimizer(
    opt: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
    """``adam``, ``adamw`` or ``sgd`` (momentum 0.9), after optional global-norm clipping."""
    schedule = make_schedule(opt, total_steps)
    if opt.name == "adam":
        base = optax.adam(schedule)
    elif opt.name == "adamw":
        base = optax.adamw(schedule, weight_decay=opt.weight_decay)
    elif opt.name == "sgd":
        base = optax.sgd(schedule, momentum=0.9)
    else:
        raise UserError(f"config.optimizer.name must be 'adam', 'adamw' or 'sgd', got {opt.name!r}")
    if opt.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), base)
    return base
