"""The one small interface between the trainer and an experiment."""
import dataclasses
from typing import Any, Callable

import jax

from jaxlab.data import Dataset

Params = Any
Metrics = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Task:
    """What the trainer needs of an experiment; every function but ``evaluate`` is jittable.

    init(key, example_batch) -> params
    loss(params, batch, key) -> (scalar loss, dict of scalar metrics)
    evaluate(params, test_arrays) -> dict of metrics (may run host code, e.g. plots or SciPy)
    """
    data: Dataset
    init: Callable[[jax.Array, dict], Params]
    loss: Callable[[Params, dict, jax.Array], tuple[jax.Array, Metrics]]
    evaluate: Callable[[Params, dict], Metrics]
