"""Metric writers: a user's own writer receives each record once across resumes, Weights & Biases
(offline mode, no network) continues one W&B run across a resume with each step once, and an
unknown or uninstalled writer is one error line."""

import glob
import json
import struct

import pytest

import jaxlab
from jaxlab.rundir import writers
from tests.conftest import read_jsonl, without_progress
from tests.test_cli import jaxlab_cli

RUN = {
    "train.steps": 20,
    "train.log_every": 5,
    "train.eval_every": 10,
    "train.checkpoint_every": 10,
}


def test_a_registered_writer_gets_the_kept_records_then_the_new_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "_FACTORIES", dict(writers._FACTORIES))  # registered here only
    opened: list[dict] = []

    class Recorder:
        def __init__(self, workdir, config, kept):
            self.entry = {"kept": [r["step"] for r in kept], "new": [], "closed": False}
            opened.append(self.entry)

        def write(self, record):
            assert isinstance(record["time"], float)
            self.entry["new"].append(record["step"])

        def close(self):
            self.entry["closed"] = True

    writers.register("recorder", Recorder)
    config = jaxlab.load_config("mlp_moons:smoke", {**RUN, "log.writers": "recorder"})
    jaxlab.train(config, tmp_path, quiet=True)
    (tmp_path / "checkpoints" / "20").rename(tmp_path / "lost")  # killed after step 10's save
    jaxlab.train(config, tmp_path, quiet=True)
    assert opened == [
        {"kept": [], "new": [5, 10, 15, 20], "closed": True},
        {"kept": [5, 10], "new": [15, 20], "closed": True},
    ]


def wandb_records(path):
    """The records of a W&B ``.wandb`` file (a LevelDB-style log of protobuf records after a
    7-byte header), as the protobuf messages."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_continues_one_run_across_a_resume_with_each_step_once(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "jaxlab-tests")
    config = jaxlab.load_config("mlp_moons:smoke", {**RUN, "log.writers": "tensorboard,wandb"})
    jaxlab.train(config, tmp_path, quiet=True)
    (tmp_path / "checkpoints" / "20").rename(tmp_path / "lost")  # killed after step 10's save
    jaxlab.train(config, tmp_path, quiet=True)
    (second_start,) = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["step"] == 15]
    state = json.loads((tmp_path / "wandb.json").read_text())
    assert state["step"] == 20
    files = sorted(glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == 2  # one per session, both of the same W&B run
    runs, steps = set(), []
    for path in files:
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                runs.add((record.run.run_id, record.run.project, record.run.display_name))
            elif kind == "history":
                items = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
                steps.append(items["_step"])
                if items["_step"] == 15:
                    assert items["train/loss"] == pytest.approx(second_start["train/loss"])
    assert runs == {(state["id"], "jaxlab-tests", tmp_path.name)}
    assert steps == [5, 10, 15, 20]


def test_an_unknown_writer_is_one_error_line(tmp_path):
    result = jaxlab_cli(
        "train", "mlp_moons:smoke", "--workdir", str(tmp_path / "run"),
        "--config.log.writers=tensorboard,mlflow",
    )  # fmt: skip
    assert result.returncode == 2
    assert without_progress(result.stderr) == [
        "jaxlab: error: config.log.writers names an unknown writer 'mlflow'; known: "
        "tensorboard, wandb (jaxlab.rundir.writers.register adds one)"
    ]
    assert not (tmp_path / "run").exists()
