"""Tests run on CPU with 8 simulated devices; the flag must be set before JAX is imported."""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import json  # noqa: E402
import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def smoke_config():
    """The tiny preset of the first experiment: 20 steps, seconds to run."""
    import jaxlab

    return jaxlab.load_config("minimal_transformer:smoke")


def without_progress(stderr: str) -> list[str]:
    """The lines of a command's stderr other than its progress lines (``jaxlab: step ...``,
    written off a terminal) and the line saying where a run resumes."""
    return [
        line
        for line in stderr.strip().splitlines()
        if not line.startswith(("jaxlab: step ", "jaxlab: resuming "))
    ]


TIMING = ("time", "perf/steps_per_s")  # a record's fields that differ between equal runs


def read_jsonl(path) -> list[dict]:
    """The records of a metrics.jsonl without their `TIMING` fields."""
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in pathlib.Path(path).read_text().splitlines()
    ]


def freeze(process) -> None:
    """SIGSTOP ``process`` and wait until every one of its threads has stopped (the signal is
    delivered asynchronously: a thread may write a little longer after ``send_signal``)."""
    import signal
    import time

    process.send_signal(signal.SIGSTOP)
    tasks = pathlib.Path(f"/proc/{process.pid}/task")
    deadline = time.monotonic() + 30
    while not all(_state(task) in "Tt" for task in tasks.iterdir()):
        assert time.monotonic() < deadline, "the process did not stop"
        time.sleep(0.01)


def _state(task: pathlib.Path) -> str:
    """A thread's state letter from /proc/PID/task/TID/stat ("" once it has exited)."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "T"
