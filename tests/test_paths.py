"""The path layer (remote workdirs refused when they cannot be served) and the TensorBoard log
after a resume, read with TensorBoard's own event reader."""

import importlib.util
import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

import jaxlab
from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.rundir.workdir import EVENTS_PREFIX
from tests.test_cli import jaxlab_cli

RUN = {
    "train.steps": 20,
    "train.log_every": 5,
    "train.eval_every": 10,
    "train.checkpoint_every": 10,
}


def tensorboard_events(workdir) -> tuple[dict[str, list[tuple[int, float, float]]], dict]:
    """(tag -> [(step, value, wall time)] of the scalars, plugin name -> [summary values] of the
    rest) in the order TensorBoard reads them (event files by name)."""
    scalars: dict[str, list[tuple[int, float, float]]] = {}
    plugins: dict[str, list] = {}
    for path in sorted(workdir.glob(f"{EVENTS_PREFIX}*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin and plugin != "scalars":
                    plugins.setdefault(plugin, []).append(value)
                    continue
                number = (
                    value.simple_value
                    if value.HasField("simple_value")
                    else float(value.tensor.float_val[0])
                )
                scalars.setdefault(value.tag, []).append((event.step, number, event.wall_time))
    return scalars, plugins


def test_tensorboard_holds_each_step_once_in_order_after_resumes(tmp_path):
    config = jaxlab.load_config("mlp_moons:smoke", RUN)
    jaxlab.train(config, tmp_path, quiet=True)
    for _ in range(2):  # two kills after step 10's checkpoint: steps 15, 20 are logged 3 times
        shutil.rmtree(tmp_path / "checkpoints" / "20")
        jaxlab.train(config, tmp_path, quiet=True)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    scalars, plugins = tensorboard_events(tmp_path)
    assert len(list(tmp_path.glob(f"{EVENTS_PREFIX}*"))) == 1
    # Each step once, at the wall time its record holds: the replayed steps 5 and 10 keep the
    # times of the first run, earlier than those of the steps trained after the last resume.
    assert scalars["train/loss"] == [
        (r["step"], pytest.approx(r["train/loss"]), pytest.approx(r["time"])) for r in records
    ]
    assert records[1]["time"] < records[2]["time"] - 0.5  # two restarts lie between
    assert [step for step, _, _ in scalars["eval/accuracy"]] == [10, 20]
    assert "time" not in scalars and "train/learning_rate" in scalars
    # The config as text and the hyperparameters for the HParams plugin, once.
    (text,) = plugins["text"]
    assert '"learning_rate"' in text.tensor.string_val[0].decode()
    (session,) = plugins["hparams"]
    assert b"optimizer.learning_rate" in session.metadata.plugin_data.content


def test_paths_are_absolute_and_local_ones_work_through_the_layer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = paths.path("~/x/../y", "workdir")
    assert str(local) == str(paths.path(str(tmp_path.home() / "y")))
    target = paths.path("relative/out.txt")
    assert str(target) == str(tmp_path / "relative" / "out.txt")
    target.parent.mkdir(parents=True)
    paths.write_atomic(target, "one")
    log = paths.AppendFile(target, b"a\n")
    log.append(b"b\n")
    log.close()
    assert target.read_text() == "a\nb\n"


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("gcsfs", "tensorflow")),
    reason="a gs:// backend is installed here",
)
def test_a_bucket_workdir_without_a_backend_is_refused_before_anything_is_written(tmp_path):
    result = jaxlab_cli(
        "train", "mlp_moons:smoke", "--workdir", "gs://some-bucket/run", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "jaxlab: error: workdir gs://some-bucket/run: gs:// paths need one of the packages "
        "gcsfs or tensorflow, and none is installed; pip install gcsfs (and authenticate with "
        "your cloud's tools)"
    )
    assert list(tmp_path.iterdir()) == []  # no local directory named "gs:"


def test_an_unknown_scheme_is_refused():
    with pytest.raises(UserError, match="jaxlab cannot read or write ftp:// paths"):
        paths.path("ftp://host/run", "workdir")
