"""Times one 8-seed sweep three ways and checks that they agree.

    python benchmarks/bench_sweep.py                                  # minimal_transformer:smoke
    python benchmarks/bench_sweep.py --experiment koopman:smoke --seeds 8 --workdir /tmp/bench

Runs ``jaxlab sweep EXPERIMENT --sweep config.seed=0,..,N-1`` as a user would (a fresh ``jaxlab``
process each, so start-up, compilation and data loading are counted):

1. sequentially: N training processes one after another (``--parallel 1``);
2. ``--parallel 2``: two training processes at a time;
3. ``--vmap``: all seeds as one compiled program in one process.

Prints the wall times and the speed-ups over sequential, and the largest difference of any final
metric between the ways (same seeds must give the same results: ``--tolerance``, default 1e-5).
Exits with status 1 when the results disagree.
"""

import argparse
import csv
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

MODES = {"sequential": ["--parallel", "1"], "parallel 2": ["--parallel", "2"], "vmap": ["--vmap"]}


def run_sweep(
    experiment: str, seeds: int, workdir: pathlib.Path, flags: list[str], overrides: list[str]
) -> float:
    command = [
        sys.executable,
        "-m",
        "jaxlab.cli",
        "sweep",
        experiment,
        "--workdir",
        str(workdir),
        "--sweep",
        "config.seed=" + ",".join(map(str, range(seeds))),
        *overrides,
        *flags,
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0 or f"{seeds} runs: {seeds} done;" not in result.stdout:
        sys.exit(
            f"sweep {' '.join(flags)} did not finish cleanly:\n{result.stdout}\n{result.stderr}"
        )
    return wall


def final_metrics(workdir: pathlib.Path) -> dict[str, dict[str, float]]:
    with open(workdir / "results.csv") as file:
        rows = list(csv.DictReader(file))
    return {row["run"]: {k: float(v) for k, v in row.items() if "/" in k and v} for row in rows}


def largest_difference(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        sys.exit(f"different runs: {sorted(a)} vs {sorted(b)}")
    return max(abs(a[run][k] - b[run][k]) for run in a for k in a[run])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="minimal_transformer:smoke")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("overrides", nargs="*", help="fixed overrides, --config.KEY=VALUE")
    args = parser.parse_args()
    root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="bench_sweep_"))
    times, results = {}, {}
    for mode, flags in MODES.items():
        workdir = root / mode.replace(" ", "")
        shutil.rmtree(workdir, ignore_errors=True)
        times[mode] = run_sweep(args.experiment, args.seeds, workdir, flags, args.overrides)
        results[mode] = final_metrics(workdir)
        print(f"{mode:>12s}: {times[mode]:7.1f} s", flush=True)
    print(
        f"{args.seeds} seeds of {args.experiment} on {os.cpu_count()} CPU cores "
        f"(load average before the end: {os.getloadavg()[0]:.1f})"
    )
    for mode in ("parallel 2", "vmap"):
        difference = largest_difference(results["sequential"], results[mode])
        print(
            f"{mode:>12s}: {times['sequential'] / times[mode]:.2f}x faster than sequential; "
            f"largest difference of a final metric: {difference:.2e}"
        )
        if difference > args.tolerance:
            print(f"results disagree by more than {args.tolerance}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
