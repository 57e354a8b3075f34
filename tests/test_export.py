"""``jaxlab export``: a checkpoint's prediction function and weights, loaded and called by a
process that imports only JAX and NumPy, give the task's outputs for batches of any size; for
the classification task (MLP) and the transformer of the minimization paper."""

import json
import subprocess
import sys

import numpy as np
import pytest

import jaxlab
from tests.conftest import without_progress
from tests.test_cli import jaxlab_cli

LOAD_AND_CALL = """
import sys, jax, numpy as np
predict = jax.export.deserialize(open(sys.argv[1] + "/predict.jax", "rb").read())
with np.load(sys.argv[1] + "/weights.npz") as stored:
    weights = [stored[f"w{i}"] for i in range(len(stored.files))]
inputs = np.load(sys.argv[2])
for size in (1, 7, len(inputs)):
    np.save(f"{sys.argv[3]}_{size}.npy", np.asarray(predict.call(weights, inputs[:size])))
assert not any(name.split(".")[0] in ("jaxlab", "flax", "optax", "orbax") for name in sys.modules)
"""


@pytest.mark.parametrize(
    "spec, steps",
    [
        ("mlp_moons:smoke", 20),
        pytest.param("minimal_transformer:smoke", 10, marks=pytest.mark.slow),  # 13 s
    ],
)
def test_an_exported_model_gives_the_tasks_outputs_with_jax_alone(tmp_path, spec, steps):
    overrides = {"train.steps": steps, "train.log_every": 10, "train.eval_every": 10,
                 "train.checkpoint_every": 10}  # fmt: skip
    jaxlab.train(jaxlab.load_config(spec, overrides), tmp_path / "run", quiet=True)
    result = jaxlab_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "served"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["step"] == steps and manifest["inputs"]["shape"][0] == "b"
    assert json.loads((tmp_path / "served" / "export.json").read_text()) == manifest

    _, setup, state = jaxlab.restore(tmp_path / "run")
    inputs = np.asarray(setup.task.data.test["x"][:13])
    np.save(tmp_path / "inputs.npy", inputs)
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_CALL, str(tmp_path / "served"),
         str(tmp_path / "inputs.npy"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    expected = np.asarray(setup.task.predict(state["params"], state["task_state"], inputs))
    for size in (1, 7, 13):
        np.testing.assert_allclose(
            np.load(tmp_path / f"out_{size}.npy"), expected[:size], rtol=1e-5, atol=1e-5
        )


def test_export_refuses_an_existing_directory_in_one_line(tmp_path):
    config = jaxlab.load_config("mlp_moons:smoke", {"train.steps": 10, "train.log_every": 10,
                                                    "train.eval_every": 10,
                                                    "train.checkpoint_every": 10})  # fmt: skip
    jaxlab.train(config, tmp_path / "run", quiet=True)
    (tmp_path / "served").mkdir()
    result = jaxlab_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "served"))
    assert result.returncode == 2
    assert without_progress(result.stderr) == [
        f"jaxlab: error: {tmp_path / 'served'} exists; export writes a new directory"
    ]
    assert list((tmp_path / "served").iterdir()) == []
