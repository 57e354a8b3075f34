"""Successive halving against the full search of the same sampled runs, side by side:

1. the full random search: N learning rates drawn log-uniformly (``--samples N``), every run
   trained to the end, as one vmapped program;
2. successive halving of the same N runs (``--scheduler halving``), vmapped;
3. the same halving with worker processes (``--parallel 2``), for its wall time;
4. the noise: each search's pick trained again with ``--seeds`` other seeds.

on `minimal_transformer:smoke` (digits; a 1-block, width-16 transformer) trained for ``--steps``
steps, where the learning rate matters. Each is a fresh ``jaxlab sweep`` command. Reports the best
``eval/loss`` each search finds, the trial-steps it spent (its compute), and the wall times.

    python benchmarks/bench_search.py [--samples 27] [--steps 810] [--min-steps 30]
"""

import argparse
import csv
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SPACE = "config.optimizer.learning_rate=loguniform(1e-4,1)"
METRIC = "eval/loss"


def sweep(workdir: pathlib.Path, flags: list[str]) -> tuple[float, list[dict]]:
    """(wall seconds, the results table) of one ``jaxlab sweep`` command."""
    command = [sys.executable, "-m", "jaxlab.cli", "sweep", "minimal_transformer:smoke"]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "--workdir", str(workdir), *flags], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"sweep {' '.join(flags)} failed:\n{result.stdout}\n{result.stderr}")
    with open(workdir / "results.csv") as file:
        return wall, list(csv.DictReader(file))


def best(rows: list[dict]) -> dict:
    """The finished run with the lowest final metric."""
    return min((r for r in rows if r["status"] == "done"), key=lambda r: float(r[METRIC]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=27)
    parser.add_argument("--steps", type=int, default=810)
    parser.add_argument("--min-steps", type=int, default=30)
    parser.add_argument("--reduction", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="reruns of the best for the noise")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench_search_"))
    fixed = [
        f"--config.train.steps={args.steps}",
        f"--config.train.eval_every={args.min_steps}",
        f"--config.train.log_every={args.min_steps}",
        f"--config.train.checkpoint_every={args.steps}",
    ]
    drawn = ["--samples", str(args.samples), "--sweep", SPACE, *fixed]
    halving = [
        "--scheduler",
        "halving",
        "--min-steps",
        str(args.min_steps),
        "--reduction",
        str(args.reduction),
        "--metric",
        METRIC,
    ]
    full_wall, full = sweep(root / "full", ["--vmap", *drawn])
    vmapped_wall, vmapped = sweep(root / "halving", ["--vmap", *drawn, *halving])
    process_wall, processes = sweep(
        root / "halving_processes", [*drawn, *halving, "--parallel", "2"]
    )
    winner, found = best(full), best(vmapped)
    seeds = ",".join(str(s) for s in range(1, args.seeds + 1))
    noise = {}  # each search's pick, over its own seed 0 and --seeds more
    for name, pick in {"full": winner, "halving": found}.items():
        _, reruns = sweep(
            root / f"noise_{name}",
            ["--vmap", "--sweep", f"config.seed={seeds}"]
            + [f"--config.optimizer.learning_rate={pick['optimizer.learning_rate']}", *fixed],
        )
        noise[name] = [float(pick[METRIC])] + [float(r[METRIC]) for r in reruns]
    spent = {
        name: sum(int(r["step"]) for r in rows)
        for name, rows in {"full": full, "halving": vmapped, "processes": processes}.items()
    }
    same = sorted((r["run"], r["status"], r["step"]) for r in vmapped) == sorted(
        (r["run"], r["status"], r["step"]) for r in processes
    )
    lines = [
        f"{args.samples} log-uniform learning rates in [1e-4, 1] of minimal_transformer:smoke, "
        f"{args.steps} steps; halving: rungs from {args.min_steps}, reduction {args.reduction}",
        "",
        f"| search | its pick: learning rate | {METRIC} of the pick (seed 0) | over "
        f"{args.seeds + 1} seeds, mean ± sample std | trial-steps | share of the full "
        f"search's | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label, rows, wall in (
        ("full", "full random search, --vmap", full, full_wall),
        ("halving", "successive halving, --vmap", vmapped, vmapped_wall),
        ("processes", "successive halving, --parallel 2", processes, process_wall),
    ):
        pick = best(rows)
        values = noise.get(name)
        spread = (
            f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} "
            f"({', '.join(f'{v:.4f}' for v in values)})"
            if values
            else "(as above)"
        )
        lines.append(
            f"| {label} | {pick['optimizer.learning_rate']} | {float(pick[METRIC]):.4f} | "
            f"{spread} | {spent[name]:,} | {100 * spent[name] / spent['full']:.0f}% | "
            f"{wall:.1f} |"
        )
    agree = "yes" if same else "NO"
    lines += ["", f"Vmapped and process halving took the same decisions: {agree}."]
    print("\n".join(lines))
    shutil.rmtree(root, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
