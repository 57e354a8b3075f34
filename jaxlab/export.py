"""``jaxlab export WORKDIR --output DIR``: a trained model as files that need only JAX to serve.

``DIR/predict.jax`` is the task's prediction function (`jaxlab.tasks.Task.predict`) serialised by
`jax.export` (StableHLO, with a symbolic batch dimension ``b``), taking the model's weights as a
list of arrays and a batch of inputs; ``DIR/weights.npz`` holds those arrays (``w0``, ``w1``, ...:
the parameters, then the task state, in `jax.tree.leaves` order); ``DIR/export.json`` says what
was exported. Loading and calling it imports JAX and NumPy only::

    import jax, numpy as np

    predict = jax.export.deserialize(open("DIR/predict.jax", "rb").read())
    with np.load("DIR/weights.npz") as stored:
        weights = [stored[f"w{i}"] for i in range(len(stored.files))]
    outputs = predict.call(weights, inputs)  # inputs: (any batch size, ...) as in export.json
"""

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from etils import epath

from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.loop.train import restore

FUNCTION_FILE, WEIGHTS_FILE, MANIFEST_FILE = "predict.jax", "weights.npz", "export.json"
INPUTS = "x"  # the data set's array that `Task.predict` takes


def export(
    workdir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    step: int | None = None,
    platforms: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Writes the files of the module docstring for a checkpoint of ``workdir`` (the newest, or
    that of ``step``) into the new directory ``output``, lowered for ``platforms`` (default:
    this machine's); returns what ``export.json`` holds."""
    destination = paths.path(output, "output")
    if destination.exists():
        raise UserError(f"{destination} exists; export writes a new directory")
    config, setup, state = restore(workdir, step=step)
    task = setup.task
    model_outputs = task.predict
    if model_outputs is None:
        raise UserError(
            f"the task of {config.experiment} ({config.task}) defines no predict function, "
            f"so there is nothing to export"
        )
    example = np.asarray(task.data.test[INPUTS])
    trees = jax.device_get((state["params"], state["task_state"]))
    weights = [np.asarray(leaf) for leaf in jax.tree.leaves(trees)]
    structure = jax.tree.structure(trees)

    def predict(weight_list: list, inputs: jax.Array) -> Any:
        params, task_state = jax.tree.unflatten(structure, weight_list)
        return model_outputs(params, task_state, inputs)

    (batch,) = jax.export.symbolic_shape("b")
    inputs_spec = jax.ShapeDtypeStruct((batch, *example.shape[1:]), example.dtype)
    weights_spec = [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in weights]
    exported = jax.export.export(jax.jit(predict), platforms=platforms)(weights_spec, inputs_spec)
    manifest = {
        "experiment": config.experiment,
        "step": int(state["step"]),
        "inputs": {"shape": ["b", *example.shape[1:]], "dtype": str(example.dtype)},
        "outputs": [
            {"shape": [str(d) for d in aval.shape], "dtype": str(aval.dtype)}
            for aval in exported.out_avals
        ],
        "platforms": list(exported.platforms),
        "weights": len(weights),
    }
    _write(destination, bytes(exported.serialize()), weights, manifest)
    return manifest


def _write(destination: epath.Path, function: bytes, weights: list, manifest: dict) -> None:
    """The three files, in a temporary directory renamed into place: all of them or none."""
    staging = destination.parent / f".{destination.name}.partial"
    if staging.exists():
        for leftover in staging.iterdir():
            leftover.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(staging / FUNCTION_FILE, function)
    stored = staging / WEIGHTS_FILE
    with stored.open("wb") as file:
        np.savez(file, **{f"w{i}": w for i, w in enumerate(weights)})
    paths.write_atomic(staging / MANIFEST_FILE, json.dumps(manifest, indent=2))
    staging.rename(destination)
