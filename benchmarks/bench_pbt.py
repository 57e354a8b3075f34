"""Population-based training against the random search of the same sampled runs, side by side:

1. the random search: N learning rates drawn log-uniformly (``--samples N``), every run trained to
   the end with its own, as one vmapped program;
2. population-based training of the same N runs (``--scheduler pbt``), as one vmapped program:
   every ``--interval`` steps the worst ``--fraction`` take the state of the best and a perturbed
   learning rate;

each for ``--draws`` search seeds (other draws of the N learning rates), on
`minimal_transformer:smoke` (digits; a 1-block, width-16 transformer) trained for ``--steps``
steps. Each is a fresh ``jaxlab sweep`` command. Reports the best and the median final
``eval/loss`` of each search's runs (mean ± sample std over the draws), the copies PBT made,
and the wall times.

    python benchmarks/bench_pbt.py [--samples 8] [--steps 810] [--interval 90] [--draws 3]
"""

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile

from bench_search import METRIC, SPACE, sweep  # sweep: one timed `jaxlab sweep`


def finals(rows: list[dict]) -> list[float]:
    """The final metric of each run (a failed run counts as infinitely bad)."""
    return [float(r[METRIC]) if r["status"] == "done" else float("inf") for r in rows]


def copies(workdir: pathlib.Path, rows: list[dict]) -> int:
    """How many times a run took another's state."""
    count = 0
    for row in rows:
        lines = (workdir / row["run"] / "lineage.jsonl").read_text().splitlines()
        count += sum(json.loads(line)["parent"] is not None for line in lines)
    return count


def spread(values: list[float], digits: int = 4) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=810)
    parser.add_argument("--interval", type=int, default=90)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--draws", type=int, default=3, help="search seeds")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench_pbt_"))
    fixed = [
        f"--config.train.steps={args.steps}",
        f"--config.train.eval_every={args.interval}",
        f"--config.train.log_every={args.interval}",
        f"--config.train.checkpoint_every={args.interval}",
    ]
    pbt = ["--scheduler", "pbt", "--interval", str(args.interval), "--fraction",
           str(args.fraction), "--metric", METRIC]  # fmt: skip
    found: dict[str, dict[str, list[float]]] = {
        name: {"best": [], "median": [], "wall": []} for name in ("random", "pbt")
    }
    made = []
    per_draw = []
    for draw in range(args.draws):
        drawn = ["--vmap", "--samples", str(args.samples), "--sweep", SPACE,
                 "--search-seed", str(draw), *fixed]  # fmt: skip
        row = []
        for name, flags in (("random", drawn), ("pbt", [*drawn, *pbt])):
            wall, rows = sweep(root / f"{name}_{draw}", flags)
            values = finals(rows)
            found[name]["best"].append(min(values))
            found[name]["median"].append(statistics.median(values))
            found[name]["wall"].append(wall)
            row.append(min(values))
            if name == "pbt":
                made.append(copies(root / f"{name}_{draw}", rows))
        per_draw.append(row)
    lines = [
        f"{args.samples} log-uniform learning rates in [1e-4, 1] of minimal_transformer:smoke, "
        f"{args.steps} steps, {args.draws} draws (search seeds 0-{args.draws - 1}); PBT: "
        f"interval {args.interval}, fraction {args.fraction}",
        "",
        f"| search | best final {METRIC}, mean ± sample std over draws | median run's | "
        f"wall s per search |",
        "|---|---|---|---|",
    ]
    for name, label in (("random", "random search, --vmap"), ("pbt", "PBT, --vmap")):
        lines.append(
            f"| {label} | {spread(found[name]['best'])} | {spread(found[name]['median'])} | "
            f"{spread(found[name]['wall'], 1)} |"
        )
    lines += [
        "",
        "best per draw (random, PBT): "
        + "; ".join(f"{r:.4f}, {p:.4f}" for r, p in per_draw)
        + f"; copies PBT made per draw: {', '.join(map(str, made))}",
    ]
    print("\n".join(lines))
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
