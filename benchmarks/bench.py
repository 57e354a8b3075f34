"""Benchmark: `jaxlab train` beside a hand-written JAX loop (per step, and fused in `lax.scan`)
and PyTorch eager, on the CPU of this machine. Writes the table to docs/BENCHMARKS.md.

Workloads (matching the PyTorch references in ../shared/bench/):
  tiny         a 2->64->64->2 MLP on two moons, batch 256, Adam(1e-3)
  small        the minimal_transformer full variant on digits: width 64, 2 layers, 4 heads, MLP 128,
               2x2 patches, batch 128, Adam(1e-3)
  wider        the same with width 256

    python benchmarks/bench.py [--torch-python /tmp/torchenv/bin/python] [--repeats 3]
    python benchmarks/bench.py --breakdown tiny  # what each part of the loop costs; prints a table
    python benchmarks/bench.py --data            # the two input paths: memory and speed
    python benchmarks/bench.py --end-to-end      # the default job against a bare script

``--data`` compares the input paths (``train.data_pipeline``): the peak resident memory of a run
on synthetic datasets of ``--data-gb`` GB on disk, 8 simulated CPU devices, and the steps/s of
the default `minimal_transformer` job reading digits from ``.npy`` files; it writes its own part
of docs/BENCHMARKS.md. ``--end-to-end`` times the default `jaxlab train minimal_transformer` job
from launch to exit, with a cold and a warm compilation cache (and warm with the CPU split into
one device per core, on a CPU host of several cores), beside
benchmarks/bare_minimal_transformer.py (the same job as a bare script); its own part too.

Steady-state steps/s is the median over repeats; each repeat is timed after a warm-up (for
`jaxlab train`: the chunks after the first, from the run's own `perf/steps_per_sec` records,
with evaluation, logging and checkpoints at their defaults).
"""

import argparse
import functools
import math
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits, make_moons

import jaxlab
from jaxlab import parallel
from jaxlab.data import digits as digits_dataset
from jaxlab.doc_block import write_block
from jaxlab.loop.train import prepare
from jaxlab.papers.transformer_minimization.model import VisionTransformer

REPO = pathlib.Path(__file__).resolve().parent.parent
TORCH_SCRIPTS = REPO.parent / "shared" / "bench"
SCAN_LENGTH = (
    100  # steps fused per compiled call in the hand-written scan loop (= jaxlab's log_every)
)


class TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64)(x))
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(2)(x)


def vit(width):
    return VisionTransformer(
        num_classes=10, patch_size=2, width=width, depth=2, heads=4, mlp_dim=128, use_mlp=True
    )


def digits():
    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[..., None], d.target.astype(np.int32)


def moons():
    x, y = make_moons(4096, noise=0.1, random_state=0)
    return x.astype(np.float32), y.astype(np.int32)


WORKLOADS = {
    "tiny": dict(
        model=TinyMLP,
        data=moons,
        batch=256,
        steps=3000,
        jaxlab_steps=30000,
        spec="mlp_moons",
        overrides={},
        torch=["torch_tiny_mlp.py", "3000"],
    ),
    "small": dict(
        model=functools.partial(vit, 64),
        data=digits,
        batch=128,
        steps=600,
        jaxlab_steps=1000,
        spec="minimal_transformer",
        overrides={
            "model.width": 64,
            "model.mlp_dim": 128,
            "model.depth": 2,
            "model.heads": 4,
            "train.batch_size": 128,
        },
        torch=["torch_vit_digits.py", "--width", "64"],
    ),
    "wider": dict(
        model=functools.partial(vit, 256),
        data=digits,
        batch=128,
        steps=300,
        jaxlab_steps=300,
        spec="minimal_transformer",
        overrides={
            "model.width": 256,
            "model.mlp_dim": 128,
            "model.depth": 2,
            "model.heads": 4,
            "train.batch_size": 128,
        },
        torch=["torch_vit_digits.py", "--width", "256"],
    ),
}


def make_step(model, tx):
    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def handwritten(workload, fused: bool) -> tuple[float, float]:
    """Steps/s of a hand-written Adam loop: a jitted step called from Python with batches drawn
    on the host (``fused=False``), or SCAN_LENGTH steps per call in `lax.scan` with batches drawn
    on device. Also returns the FLOPs of one step (XLA's cost analysis)."""
    model, (x, y), batch = workload["model"](), workload["data"](), workload["batch"]
    tx = optax.adam(1e-3)
    params = model.init(jax.random.PRNGKey(0), x[:batch])
    opt_state = tx.init(params)
    step = make_step(model, tx)
    flops = jax.jit(step).lower(params, opt_state, x[:batch], y[:batch]).compile().cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))
    if fused:
        xd, yd = jnp.asarray(x), jnp.asarray(y)

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def chunk(params, opt_state, key):
            def body(carry, k):
                idx = jax.random.randint(k, (batch,), 0, xd.shape[0])
                p, o, loss = step(*carry, xd[idx], yd[idx])
                return (p, o), loss

            (params, opt_state), losses = jax.lax.scan(
                body, (params, opt_state), jax.random.split(key, SCAN_LENGTH)
            )
            return params, opt_state, losses[-1]

        def run(n, params, opt_state):
            for i in range(n // SCAN_LENGTH):
                params, opt_state, loss = chunk(params, opt_state, jax.random.PRNGKey(i))
            loss.block_until_ready()
            return params, opt_state
    else:
        jitted = jax.jit(step, donate_argnums=(0, 1))
        rng = np.random.default_rng(0)

        def run(n, params, opt_state):
            for _ in range(n):
                idx = rng.integers(0, len(x), batch)
                params, opt_state, loss = jitted(params, opt_state, x[idx], y[idx])
            loss.block_until_ready()
            return params, opt_state

    params, opt_state = run(SCAN_LENGTH, params, opt_state)  # warm-up, compiles
    start = time.perf_counter()
    run(workload["steps"], params, opt_state)
    return workload["steps"] / (time.perf_counter() - start), flops


def jaxlab_steps_per_sec(workload, workroot: pathlib.Path, name: str) -> float:
    """Steady-state steps/s of `jaxlab.train` with its defaults (evaluation, logging, checkpoints):
    two runs of S and 2S steps with a warm compilation cache; fixed costs (start-up, data, the final
    evaluation and checkpoint) cancel in the difference, periodic ones stay in."""

    def timed(steps: int, tag: str) -> float:
        overrides = {**workload["overrides"], "train.steps": steps}
        config = jaxlab.load_config(workload["spec"], overrides=overrides)
        start = time.perf_counter()
        jaxlab.train(config, workroot / f"{name}_{tag}", quiet=True)
        return time.perf_counter() - start

    steps = workload["jaxlab_steps"]
    timed(workload["jaxlab_steps"], "warm")  # fills the compilation cache
    return steps / (timed(2 * steps, "long") - timed(steps, "short"))


def jaxlab_chunk_steps_per_sec(workload) -> float:
    """Steps/s of jaxlab's compiled training chunk alone (the same program `jaxlab train` runs),
    called back to back with nothing else: no metric reads, evaluation, logging or checkpoints."""
    config = jaxlab.load_config(workload["spec"], overrides=workload["overrides"])
    setup = prepare(config)
    tc = config.train
    chunk = setup.program.compiled(tc.log_every)
    train_arrays = jax.device_put(setup.task.data.train, parallel.replicated(setup.mesh))
    state, metrics = chunk(setup.state, train_arrays)  # compiles
    jax.block_until_ready(metrics)
    chunks = workload["jaxlab_steps"] // tc.log_every
    start = time.perf_counter()
    for _ in range(chunks):
        state, metrics = chunk(state, train_arrays)
    jax.block_until_ready(metrics)
    return chunks * tc.log_every / (time.perf_counter() - start)


BREAKDOWN = {  # a `jaxlab train` run -> the periodic work it leaves out
    "`jaxlab train`, defaults": (),
    "without periodic checkpoints": ("checkpoint_every",),
    "without periodic evaluation": ("eval_every",),
    "without either": ("checkpoint_every", "eval_every"),
}


def loop_breakdown(workload, workroot: pathlib.Path, repeats: int) -> dict[str, float]:
    """Median steady-state steps/s of `jaxlab train` with periodic checkpoints and/or evaluation
    left out, and of its compiled chunk alone; the variants are
    interleaved in each repeat so that a change in the machine's load hits all of them."""
    runs = {name: [] for name in [*BREAKDOWN, "compiled chunk alone"]}
    for r in range(repeats):
        for i, (name, removed) in enumerate(BREAKDOWN.items()):
            # Every 2S steps: only at the end of the runs (the final step always saves and
            # evaluates), a fixed cost that cancels in jaxlab_steps_per_sec's difference.
            far = {f"train.{key}": 2 * workload["jaxlab_steps"] for key in removed}
            varied = {**workload, "overrides": {**workload["overrides"], **far}}
            runs[name].append(jaxlab_steps_per_sec(varied, workroot, f"breakdown{r}_{i}"))
        runs["compiled chunk alone"].append(jaxlab_chunk_steps_per_sec(workload))
    return {name: statistics.median(values) for name, values in runs.items()}


def render_breakdown(name: str, speeds: dict[str, float], repeats: int) -> str:
    bare = speeds["compiled chunk alone"]
    lines = [
        f"`{name}` on {machine()}, steady-state steps/s, median of {repeats} interleaved repeats:",
        "",
        "| run | steps/s | ms per 1000 steps | vs. the chunk alone |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {run} | {speed:,.0f} | {1e6 / speed:,.0f} | {speed / bare:.2f}x |"
        for run, speed in speeds.items()
    ]
    return "\n".join(lines)


DIGITS_FILES = """import jaxlab


def get_config(arg):
    config = jaxlab.load_config("minimal_transformer" + (":" + arg if arg else ""))
    config.data = dict(loader="jaxlab.data.arrays:load", train="{root}/train",
                       test="{root}/test")
    return config
"""


def write_noisy_digits(root: pathlib.Path, num_train: int, num_test: int) -> None:
    """``root/{train,test}/{x,label}.npy``: scikit-learn's digits drawn at random, plus Gaussian
    noise (std 0.1), with their labels; written in slices, never whole in memory. A dataset of any
    size for the memory benchmark (the test split repeats training digits: not a learning task)."""
    images, labels = digits()
    for split, count in (("train", num_train), ("test", num_test)):
        (root / split).mkdir(parents=True)
        x = np.lib.format.open_memmap(
            root / split / "x.npy", "w+", np.float32, (count, *images.shape[1:])
        )
        label = np.lib.format.open_memmap(root / split / "label.npy", "w+", np.int32, (count,))
        rng = np.random.default_rng(split == "test")
        for first in range(0, count, 1 << 18):
            pick = rng.integers(0, len(images), min(1 << 18, count - first))
            noise = rng.normal(0.0, 0.1, (len(pick), *images.shape[1:])).astype(np.float32)
            x[first : first + len(pick)] = images[pick] + noise
            label[first : first + len(pick)] = labels[pick]
        x.flush()
        label.flush()
        del x, label


def peak_resident_mib(args: list[str], limit_mib: float) -> tuple[float, bool]:
    """Peak resident memory (MiB) of ``python -m jaxlab.cli ARGS`` on 8 simulated CPU devices,
    and whether it was stopped for passing ``limit_mib`` (then the peak is at least the limit).
    The peak is the process's own high-water mark (``VmHWM``), polled: a forked child's
    ``ru_maxrss`` would also count the parent's peak from before the fork."""
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8"
    )
    errors = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxlab.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        text=True,
    )
    peak_kib, stopped = 0, False
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status)
        except OSError:  # it has just exited
            continue
        if "VmHWM" in fields:  # absent once it is a zombie
            peak_kib = max(peak_kib, int(fields["VmHWM"].split()[0]))
        if peak_kib / 1024 > limit_mib and not stopped:
            process.kill()
            stopped = True
        time.sleep(0.02)
    if process.returncode != 0 and not stopped:
        errors.seek(0)
        raise RuntimeError(f"jaxlab {' '.join(args)} failed: {errors.read()[-2000:]}")
    return peak_kib / 1024, stopped


def data_memory(
    workroot: pathlib.Path, gigabytes: float, limit_mib: float
) -> dict[str, tuple[float, bool]]:
    """Peak resident MiB (and whether stopped at ``limit_mib``) of the same 300-step run on each
    input path, on ``gigabytes`` GB of noisy digits on disk."""
    root = workroot / f"noisy_digits_{gigabytes}gb"
    example_bytes = 8 * 8 * 4 + 4
    write_noisy_digits(root, int(gigabytes * 1e9 / example_bytes), 10_000)
    experiment = root / "experiment.py"
    experiment.write_text(DIGITS_FILES.format(root=root))
    peaks = {
        pipeline: peak_resident_mib(
            [
                "train",
                f"{experiment}:smoke",
                "--workdir",
                str(root / f"run_{pipeline}"),
                "--quiet",
                f"--config.train.data_pipeline={pipeline}",
                "--config.train.steps=300",
                "--config.train.log_every=50",
                "--config.train.eval_every=300",
                "--config.train.checkpoint_every=300",
            ],
            limit_mib,
        )
        for pipeline in ("grain", "device")
    }
    shutil.rmtree(root)
    return peaks


def data_speed(workroot: pathlib.Path, repeats: int) -> dict[str, list[float]]:
    """Steady-state steps/s of the default `minimal_transformer` job on each input path, reading
    digits from ``.npy`` files (interleaved repeats)."""
    root = workroot / "digits_files"
    data = digits_dataset.load(test_fraction=0.2, split_seed=0)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for name, array in getattr(data, split).items():
            np.save(root / split / f"{name}.npy", array)
    experiment = root / "experiment.py"
    experiment.write_text(DIGITS_FILES.format(root=root))
    speeds = {"device": [], "grain": []}
    for r in range(repeats):
        for pipeline, runs in speeds.items():
            workload = dict(
                spec=str(experiment), jaxlab_steps=600, overrides={"train.data_pipeline": pipeline}
            )
            runs.append(jaxlab_steps_per_sec(workload, workroot, f"data_{pipeline}{r}"))
    return speeds


def render_data(memory: dict, limit_mib: float, speeds: dict) -> str:
    spread = lambda v: f"{statistics.median(v):,.1f} ({min(v):,.1f}-{max(v):,.1f})"
    peak = lambda size, p: (
        f"over {limit_mib:,.0f} MiB: stopped there"
        if memory[size][p][1]
        else f"{memory[size][p][0]:,.0f} MiB"
    )
    ratios = [g / d for g, d in zip(speeds["grain"], speeds["device"])]
    return "\n".join(
        [
            f"Measured by `python benchmarks/bench.py --data` on {machine()}.",
            "",
            "**Memory.** A 300-step `minimal_transformer:smoke` run on 8 simulated CPU devices "
            "(evaluation on 10,000 test examples) on noisy digits in `.npy` files; the peak "
            "resident memory of the process (`VmHWM`):",
            "",
            "| data on disk | `data_pipeline=grain` | `data_pipeline=device` |",
            "|---|---|---|",
            *[
                f"| {size:g} GB | {peak(size, 'grain')} | {peak(size, 'device')} |"
                for size in memory
            ],
            "",
            f"**Speed.** The default `minimal_transformer` job reading digits from `.npy` files, "
            f"steady-state steps/s, median (range) of {len(ratios)} interleaved repeats:",
            "",
            "| input path | steps/s |",
            "|---|---|",
            f"| device | {spread(speeds['device'])} |",
            f"| grain | {spread(speeds['grain'])} |",
            "",
            f"Grain / device: {statistics.median(ratios):.2f}x (per repeat "
            f"{', '.join(f'{r:.2f}x' for r in ratios)}).",
        ]
    )


def launch_to_result(args: list[str], env: dict | None = None) -> float:
    """Wall seconds of a whole process, launch to exit."""
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def end_to_end(workroot: pathlib.Path, repeats: int) -> dict[str, list[float]]:
    """Launch-to-result seconds of the default `jaxlab train minimal_transformer` job with a cold
    and with a warm compilation cache, and of the bare script of the same job
    (benchmarks/bare_minimal_transformer.py), in interleaved repeats. On a CPU host of several
    cores, also the warm job with the host split into one CPU device per core."""
    warm_cache = workroot / "e2e_warm_cache"
    warm = dict(os.environ, JAXLAB_COMPILATION_CACHE=str(warm_cache))
    train = [sys.executable, "-m", "jaxlab.cli", "train", "minimal_transformer", "--quiet"]
    runs = {"jaxlab, warm cache": warm}
    cores = len(os.sched_getaffinity(0))
    if jax.default_backend() == "cpu" and cores > 1:
        runs[f"jaxlab, warm cache, {cores} CPU devices"] = dict(
            warm, XLA_FLAGS=f"--xla_force_host_platform_device_count={cores}"
        )
    for i, env in enumerate(runs.values()):  # fills the warm cache
        launch_to_result(train + ["--workdir", str(workroot / f"e2e_prime{i}")], env)
    times = {"bare script": [], "jaxlab, cold cache": [], **{name: [] for name in runs}}
    for r in range(repeats):
        times["bare script"].append(
            launch_to_result(
                [sys.executable, str(REPO / "benchmarks" / "bare_minimal_transformer.py")]
            )
        )
        cold = dict(os.environ, JAXLAB_COMPILATION_CACHE=str(workroot / f"e2e_cold_cache{r}"))
        for i, (name, env) in enumerate({"jaxlab, cold cache": cold, **runs}.items()):
            times[name].append(
                launch_to_result(train + ["--workdir", str(workroot / f"e2e_{i}_{r}")], env)
            )
        print({k: round(v[-1], 1) for k, v in times.items()}, flush=True)
    return times


SPLIT_NOTE = (
    ' "N CPU devices": the host split into one CPU device per core with '
    "`XLA_FLAGS=--xla_force_host_platform_device_count=N`, the batch sharded over them."
)


def render_end_to_end(times: dict[str, list[float]]) -> str:
    bare = times["bare script"]
    lines = [
        f"Measured by `python benchmarks/bench.py --end-to-end` on {machine()}: the default "
        f"`minimal_transformer` job (3,000 steps, evaluation every 500, checkpoints, logs) "
        f"against `benchmarks/bare_minimal_transformer.py`, the same model and schedule as a "
        f"bare script; whole-process wall time from launch to exit, {len(bare)} interleaved "
        f"repeats.{SPLIT_NOTE if any('CPU devices' in name for name in times) else ''}",
        "",
        "| run | seconds, median (range) | speed-up over the bare script, median (per repeat) |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        ratios = [b / v for b, v in zip(bare, values)]
        lines.append(
            f"| {name} | {statistics.median(values):.1f} ({min(values):.1f}-"
            f"{max(values):.1f}) | {statistics.median(ratios):.2f}x "
            f"({', '.join(f'{r:.2f}' for r in ratios)}) |"
        )
    return "\n".join(lines)


def torch_eager(workload, torch_python: str | None) -> float | None:
    if not torch_python:
        return None
    out = subprocess.run(
        [torch_python, str(TORCH_SCRIPTS / workload["torch"][0]), *workload["torch"][1:]],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(re.search(r"steps/s=([\d.]+)", out.stdout).group(1))


def matmul_peak(n: int = 2048, repeats: int = 20) -> float:
    """Measured float32 matmul FLOP/s of this machine (n x n by n x n, jitted)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda a, b: a @ b)
    matmul(a, a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def startup_seconds(cache_dir: pathlib.Path, workdir: pathlib.Path) -> float:
    """Launch of `jaxlab train` to the end of a one-step run (one step, one evaluation, one
    checkpoint), in a fresh process."""
    env = dict(os.environ, JAXLAB_COMPILATION_CACHE=str(cache_dir))
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxlab.cli",
            "train",
            "minimal_transformer",
            "--workdir",
            str(workdir),
            "--quiet",
            "--config.train.steps=1",
            "--config.train.log_every=1",
            "--config.train.eval_every=1",
            "--config.train.checkpoint_every=1",
        ],
        check=True,
        env=env,
        cwd=REPO,
    )
    return time.perf_counter() - start


def checkpoint_cost(workroot: pathlib.Path) -> float:
    """Fraction of the default `minimal_transformer` run's wall time that its periodic
    checkpoints (every `checkpoint_every` steps before the final one) cost. A couple of saves are
    within the run-to-run noise, so the cost of one save is measured from many: a run saving
    every 100 steps against one saving only the final step."""
    tc = jaxlab.load_config("minimal_transformer").train
    periodic = math.ceil(tc.steps / tc.checkpoint_every) - 1  # saves besides the final one
    dense = math.ceil(tc.steps / 100) - 1

    def timed(tag, overrides):
        config = jaxlab.load_config("minimal_transformer", overrides=overrides)
        start = time.perf_counter()
        jaxlab.train(config, workroot / f"ckpt_{tag}", quiet=True)
        return time.perf_counter() - start

    timed("warm", {})
    default = timed("default", {})
    every_100 = timed("every_100", {"train.checkpoint_every": 100})
    final_only = timed("final_only", {"train.checkpoint_every": tc.steps})
    return periodic * (every_100 - final_only) / dense / default


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__}, {jax.default_backend()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--torch-python",
        default=None,
        help="python of an environment with torch (see ../shared/bench/)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ",".join(WORKLOADS),
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"))
    parser.add_argument(
        "--breakdown",
        choices=list(WORKLOADS),
        default=None,
        help="only print what the training loop's parts cost for this workload",
    )
    parser.add_argument(
        "--data",
        action="store_true",
        help="only compare the input paths' memory and speed (its own table)",
    )
    parser.add_argument(
        "--data-gb",
        default="0.25,2.2",
        help="sizes (GB, comma-separated) of the memory benchmark's datasets",
    )
    parser.add_argument(
        "--memory-limit-mib",
        type=float,
        default=8192,
        help="a run of the memory benchmark passing this is stopped",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="only time the default job against a bare script (its own table)",
    )
    args = parser.parse_args()
    workroot = pathlib.Path(tempfile.mkdtemp(prefix="jaxlab_bench_"))
    os.environ["JAXLAB_COMPILATION_CACHE"] = str(workroot / "cache")
    from jaxlab.loop import compilation_cache

    compilation_cache.enable()
    if args.data:
        sizes = [float(size) for size in args.data_gb.split(",")]
        memory = {size: data_memory(workroot, size, args.memory_limit_mib) for size in sizes}
        print(memory, flush=True)
        report = render_data(memory, args.memory_limit_mib, data_speed(workroot, args.repeats))
        write_block(pathlib.Path(args.out), DATA_BEGIN, DATA_END, report)
        print(report)
        return
    if args.end_to_end:
        report = render_end_to_end(end_to_end(workroot, args.repeats))
        write_block(pathlib.Path(args.out), E2E_BEGIN, E2E_END, report)
        print(report)
        return
    if args.breakdown:
        print(
            render_breakdown(
                args.breakdown,
                loop_breakdown(WORKLOADS[args.breakdown], workroot, args.repeats),
                args.repeats,
            )
        )
        return

    rows, flops = {}, {}
    for name in args.workloads.split(","):
        workload = WORKLOADS[name]
        runs = {"jaxlab": [], "per_step": [], "scan": [], "torch": []}
        for r in range(args.repeats):
            runs["jaxlab"].append(jaxlab_steps_per_sec(workload, workroot, f"{name}{r}"))
            runs["per_step"].append(handwritten(workload, fused=False)[0])
            speed, flops[name] = handwritten(workload, fused=True)
            runs["scan"].append(speed)
            if args.torch_python:
                runs["torch"].append(torch_eager(workload, args.torch_python))
        rows[name] = {k: statistics.median(v) if v else None for k, v in runs.items()}
        print(name, {k: round(v, 1) for k, v in rows[name].items() if v}, flush=True)

    peak = matmul_peak()
    mfu = flops["wider"] * rows["wider"]["jaxlab"] / peak if "wider" in rows else float("nan")
    startup_seconds(workroot / "startup_cache", workroot / "startup_prime")  # fills the cache
    colds, warms = [], []
    for r in range(args.repeats):  # interleaved; each cold run with an empty cache of its own
        colds.append(startup_seconds(workroot / f"startup_cache{r}", workroot / f"cold{r}"))
        warms.append(startup_seconds(workroot / "startup_cache", workroot / f"warm{r}"))
    cold, warm = statistics.median(colds), statistics.median(warms)
    ckpt = statistics.median(checkpoint_cost(workroot / f"c{r}") for r in range(args.repeats))
    report = render(rows, flops, peak, mfu, (cold, colds), (warm, warms), ckpt, args.repeats)
    write_block(pathlib.Path(args.out), BEGIN, END, report)
    print(report)


def render(rows, flops, peak, mfu, cold, warm, ckpt, repeats) -> str:
    """``cold`` and ``warm``: (median, every repeat) of the start-up seconds."""
    (cold, colds), (warm, warms) = cold, warm
    batches = {name: w["batch"] for name, w in WORKLOADS.items()}
    lines = [
        f"Measured by `python benchmarks/bench.py` on {machine()}. Steady-state training steps/s "
        f"(examples/s in brackets), median of {repeats} repeats, everything in one run.",
        "",
        "| workload | `jaxlab train` | hand-written JAX, jitted step per call | hand-written "
        f"JAX, {SCAN_LENGTH} steps per `lax.scan` | PyTorch eager | jaxlab / torch | "
        "jaxlab / per-step JAX |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        cell = lambda v: f"{v:,.0f} ({v * batches[name]:,.0f})" if v else "not run"
        lines.append(
            f"| {name} | {cell(row['jaxlab'])} | {cell(row['per_step'])} | "
            f"{cell(row['scan'])} | {cell(row['torch'])} | "
            f"{_ratio(row['jaxlab'], row['torch'])} | "
            f"{_ratio(row['jaxlab'], row['per_step'])} |"
        )
    lines += [
        "",
        f"- Measured float32 matmul peak (2048x2048, jitted): {peak / 1e9:,.1f} GFLOP/s.",
        f"- Wider transformer: {flops.get('wider', float('nan')) / 1e6:,.1f} MFLOP per training "
        f"step (XLA cost "
        f"analysis) -> model FLOPs utilisation of `jaxlab train` = {100 * mfu:.1f}% of that peak.",
        f"- Launch to the end of a one-step `jaxlab train minimal_transformer` run (one step, one "
        f"evaluation, one checkpoint), median of {repeats} interleaved repeats: {cold:.1f} s cold "
        f"({min(colds):.1f}-{max(colds):.1f}), {warm:.1f} s with jaxlab's persistent "
        f"compilation cache warm ({min(warms):.1f}-{max(warms):.1f}).",
        f"- Checkpointing at the default interval of `minimal_transformer` costs "
        f"{100 * ckpt:.1f}% of the run's wall time (its periodic saves, each timed from the "
        f"difference between saving every 100 steps and only at the end).",
        "",
        "### Against the targets (this run)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [
        f"| {target} | {measured} | {'yes' if met else 'no'} |"
        for target, measured, met in _targets(rows, mfu, cold, warm, ckpt)
    ]
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _targets(rows, mfu, cold, warm, ckpt) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each target of the benchmark that this run measured."""
    minimum = {"tiny": (5.0, 1.0), "small": (1.2, 1.0), "wider": (1.2, 1.0)}
    targets = []
    for name, row in rows.items():
        vs_torch, vs_step = minimum[name]
        if row["torch"]:
            targets.append(
                (
                    f"{name}: `jaxlab train` >= {vs_torch}x PyTorch eager",
                    _ratio(row["jaxlab"], row["torch"]),
                    row["jaxlab"] >= vs_torch * row["torch"],
                )
            )
        targets.append(
            (
                f"{name}: `jaxlab train` >= {vs_step}x the per-step JAX loop",
                _ratio(row["jaxlab"], row["per_step"]),
                row["jaxlab"] >= vs_step * row["per_step"],
            )
        )
    if "wider" in rows:
        targets.append(
            ("wider: >= 60% of the measured matmul peak", f"{100 * mfu:.1f}%", mfu >= 0.6)
        )
    return targets + [
        ("start-up (one-step run) <= 8 s cold", f"{cold:.1f} s", cold <= 8),
        (
            "start-up (one-step run) <= 3 s with a warm compilation cache",
            f"{warm:.1f} s",
            warm <= 3,
        ),
        (
            "checkpointing <= 5% of wall time at the default interval",
            f"{100 * ckpt:.1f}%",
            ckpt <= 0.05,
        ),
    ]


BEGIN = "<!-- generated by benchmarks/bench.py: begin -->"
END = "<!-- generated by benchmarks/bench.py: end -->"
DATA_BEGIN = "<!-- generated by benchmarks/bench.py --data: begin -->"
DATA_END = "<!-- generated by benchmarks/bench.py --data: end -->"
E2E_BEGIN = "<!-- generated by benchmarks/bench.py --end-to-end: begin -->"
E2E_END = "<!-- generated by benchmarks/bench.py --end-to-end: end -->"


if __name__ == "__main__":
    main()
