"""benchmarks/bench.py: its hand-written baselines run, its targets are judged, its breakdown
table. Benchmark code stays out of the default run (`slow`, which .ci/run runs)."""

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fused", [False, True])
def test_handwritten_baseline_trains_and_counts_flops(bench, fused):
    workload = {**bench.WORKLOADS["tiny"], "steps": 2 * bench.SCAN_LENGTH}
    steps_per_sec, flops = bench.handwritten(workload, fused=fused)
    assert steps_per_sec > 0
    # 2->64->64->2 MLP, batch 256: forward and backward matmuls alone are 3 * 2 * 256 * 4352 FLOPs.
    assert flops >= 3 * 2 * 256 * (2 * 64 + 64 * 64 + 64 * 2)


def test_targets_are_judged_from_the_measured_numbers(bench):
    rows = {
        "tiny": {"jaxlab": 4000.0, "per_step": 1000.0, "torch": 1000.0},
        "wider": {"jaxlab": 12.0, "per_step": 13.0, "torch": 9.0},
    }
    met = {
        target: ok for target, _, ok in bench._targets(rows, mfu=0.5, cold=7.5, warm=3.2, ckpt=0.02)
    }
    assert met == {
        "tiny: `jaxlab train` >= 5.0x PyTorch eager": False,
        "tiny: `jaxlab train` >= 1.0x the per-step JAX loop": True,
        "wider: `jaxlab train` >= 1.2x PyTorch eager": True,
        "wider: `jaxlab train` >= 1.0x the per-step JAX loop": False,
        "wider: >= 60% of the measured matmul peak": False,
        "start-up (one-step run) <= 8 s cold": True,
        "start-up (one-step run) <= 3 s with a warm compilation cache": False,
        "checkpointing <= 5% of wall time at the default interval": True,
    }


def test_breakdown_times_jaxlabs_compiled_chunk_and_compares_each_run_with_it(bench):
    chunk_speed = bench.jaxlab_chunk_steps_per_sec({**bench.WORKLOADS["tiny"], "jaxlab_steps": 200})
    assert chunk_speed > 0
    table = bench.render_breakdown(
        "tiny",
        {"`jaxlab train`, defaults": chunk_speed / 2, "compiled chunk alone": chunk_speed},
        repeats=1,
    )
    assert "| `jaxlab train`, defaults |" in table and "| 0.50x |" in table
    assert "| compiled chunk alone |" in table and "| 1.00x |" in table


def test_the_sweep_benchmark_times_every_way_and_checks_the_results_agree(tmp_path):
    """benchmarks/bench_sweep.py end to end on 2 trials: each way runs, the table has its rows."""
    env = {**os.environ}
    env.pop("XLA_FLAGS", None)  # as a user runs it: the sweep picks its CPU devices
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_sweep.py"), "--trials", "2",
         "--process-trials", "2", "--repeats", "1", "--devices-trials", "2"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for way in ("sequential", "--parallel 2", "--vmap", "--vmap, 1 CPU device", "hand-written"):
        assert f"| 2 | {way} |" in result.stdout
    assert "largest difference of a final metric, sequential vs `--vmap`" in result.stdout
    assert "| trials over the devices (trial=2, data=4) |" in result.stdout
