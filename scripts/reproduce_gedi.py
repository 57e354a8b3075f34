"""Reproduces the GEDI moons/circles study (paper Table 2 setting) and writes docs/gedi.md.

For each dataset (moons, circles) and variant (full GEDI and the three ablations) it trains the
`gedi` experiment for 5 seeds (each seed re-draws the data) through `jaxlab.train`, adds k-means
on the raw inputs as a reference row and a sweep of the invariance weight of full GEDI, and
writes mean ± sample std (median) of NMI, Hungarian accuracy, cluster entropy, the assignment
confidence (mean max p, the fraction of points with max p > 0.9) and the density checks (the
energy's ROC area between test and off-data points; the fraction of SGLD samples far from the
data), and the checks of the paper's claims; every run's numbers go to docs/gedi_runs.json.

    python scripts/reproduce_gedi.py                       # 5 seeds: about 30 min on 2 CPU cores
    python scripts/reproduce_gedi.py --quick --out /tmp/gedi.md   # 1 seed, 1,000 steps: minutes
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import shutil
import statistics
import time

from jaxlab.doc_block import write_block

REPO = pathlib.Path(__file__).resolve().parent.parent
VARIANTS = ("full", "no_generative", "no_uniformity", "no_invariance")
METRICS = (
    "nmi",
    "accuracy",
    "cluster_entropy",
    "confidence",
    "confident_fraction",
    "separation_auc",
    "sgld_off_data",
)
HEADERS = (
    "NMI",
    "accuracy",
    "cluster entropy",
    "confidence",
    "max p > 0.9",
    "separation AUC",
    "SGLD off-data",
)
INVARIANCE_SWEEP = (0.0125, 0.025, 0.1, 0.5)  # besides the default 0.05 (uniformity is 0.5)
SWEEP_SEEDS = 3


def seeded(dataset: str, seed: int) -> dict:
    """The overrides of seed ``seed``: the run's seed and a new draw (or split) of the data, so
    that the spread over seeds includes the data's variance."""
    data_seed = "data.split_seed" if dataset == "digits" else "data.seed"
    return {"seed": seed, data_seed: seed}


def train_one(dataset: str, variant: str, seed: int, workdir: str, overrides: dict) -> dict:
    import jaxlab

    config = jaxlab.load_config(
        f"gedi:dataset={dataset},variant={variant}", {**seeded(dataset, seed), **overrides}
    )
    shutil.rmtree(workdir, ignore_errors=True)
    final = jaxlab.train(config, workdir, quiet=True)
    return {k.removeprefix("eval/"): v for k, v in final.items() if k.startswith("eval/")}


def kmeans_scores(dataset: str, seed: int) -> dict:
    from sklearn.cluster import KMeans

    import jaxlab
    from jaxlab import data as data_lib
    from jaxlab.papers.gedi import clustering

    config = jaxlab.load_config(f"gedi:dataset={dataset}", seeded(dataset, seed))
    data = data_lib.load(config.data)
    k = config.model.num_clusters
    clusters = (
        KMeans(n_clusters=k, n_init=10, random_state=seed)
        .fit(data.train["x"])
        .predict(data.test["x"])
    )
    labels = data.test["label"]
    return {
        "nmi": clustering.nmi(labels, clusters),
        "accuracy": clustering.hungarian_accuracy(labels, clusters),
        "cluster_entropy": clustering.cluster_entropy(clusters, k),
    }


def summary(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f} ({statistics.median(values):.2f})"


def cells(runs: list[dict]) -> str:
    return " | ".join(summary([r[m] for r in runs]) if m in runs[0] else "—" for m in METRICS)


def table(results: dict, dataset: str) -> list[str]:
    lines = [
        f"### {dataset}",
        "",
        "| method | " + " | ".join(HEADERS) + " |",
        "|---|" + "---|" * len(HEADERS),
    ]
    for method in ("k-means (raw inputs)", *VARIANTS):
        if results.get((dataset, method)):
            lines.append(f"| {method} | {cells(results[(dataset, method)])} |")
    sweep = [
        (w, results[(dataset, f"invariance={w}")])
        for w in INVARIANCE_SWEEP
        if (dataset, f"invariance={w}") in results
    ]
    if sweep:
        lines += [
            "",
            f"Full GEDI, invariance weight swept ({SWEEP_SEEDS} seeds; the default 0.05 "
            "is the row `full` above; uniformity 0.5):",
            "",
            "| invariance | " + " | ".join(HEADERS) + " |",
            "|---|" + "---|" * len(HEADERS),
        ]
        lines += [f"| {w} | {cells(runs)} |" for w, runs in sweep]
    return lines + [""]


def median_of(results: dict, key: tuple, metric: str) -> float:
    return statistics.median(r[metric] for r in results[key])


TIE = 0.01  # medians of NMI this close are a tie (the project's threshold)


def above(a: float, b: float) -> str:
    if abs(a - b) <= TIE:
        return f"tie (within {TIE}, the project's threshold)"
    return "holds" if a > b else "does not hold"


def checks(results: dict, datasets: list[str]) -> list[str]:
    """The paper's claims, each checked with a threshold of this project's (labelled)."""
    lines = []
    for dataset in datasets:
        full = median_of(results, (dataset, "full"), "nmi")
        for other in (*VARIANTS[1:], "k-means (raw inputs)"):
            b = median_of(results, (dataset, other), "nmi")
            lines.append(
                f"- {dataset}: full GEDI above {other} in median NMI ({full:.3f} vs "
                f"{b:.3f}) -> {above(full, b)}"
            )
        for variant in ("full", "no_uniformity", "no_invariance"):
            runs = results[(dataset, variant)]
            learnt = sum(r["separation_auc"] >= 0.9 for r in runs)
            lines.append(
                f"- {dataset}, {variant}: the energy learns the density (separation "
                f"AUC >= 0.9, the project's threshold) in {learnt}/{len(runs)} seeds"
            )
        entropy = [r["cluster_entropy"] for r in results[(dataset, "no_uniformity")]]
        lines.append(
            f"- {dataset}, no_uniformity: cluster entropy per seed "
            f"{', '.join(f'{e:.2f}' for e in entropy)} (collapse: toward 0)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", default="moons,circles")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default=str(REPO / "runs" / "gedi_reproduce"))
    parser.add_argument("--out", default=str(REPO / "docs" / "gedi.md"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 1,000 steps, no sweep: a few minutes, for trying it",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds = 1
    overrides = (
        {"train.steps": 1000, "train.eval_every": 1000, "train.checkpoint_every": 1000}
        if args.quick
        else {}
    )
    start, load_start = time.time(), os.getloadavg()[0]
    datasets = args.datasets.split(",")
    results: dict = {}
    for dataset in datasets:
        results[(dataset, "k-means (raw inputs)")] = [
            kmeans_scores(dataset, s) for s in range(args.seeds)
        ]
    jobs = [(d, v, v, s, overrides) for d in datasets for v in VARIANTS for s in range(args.seeds)]
    if not args.quick:
        jobs += [
            (d, f"invariance={w}", "full", s, {"loss.invariance": w})
            for d in datasets
            for w in INVARIANCE_SWEEP
            for s in range(SWEEP_SEEDS)
        ]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        futures = {
            pool.submit(train_one, d, variant, s, f"{args.workdir}/{d}_{name}_{s}", extra): (
                d,
                name,
                s,
            )
            for d, name, variant, s, extra in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            d, name, s = futures[future]
            metrics = future.result()
            print(
                f"{d} {name} seed={s} nmi={metrics['nmi']:.3f} "
                f"auc={metrics.get('separation_auc', float('nan')):.3f}",
                flush=True,
            )
        for future, (d, name, _seed) in futures.items():  # in seed order, whichever finished first
            results.setdefault((d, name), []).append(future.result())
    wall = time.time() - start
    lines = [
        f"_Generated by `python scripts/reproduce_gedi.py` ({args.seeds} seeds, "
        f"{args.workers} worker processes, wall time {wall / 60:.1f} min, 1-min load average "
        f"{load_start:.1f} at start and {os.getloadavg()[0]:.1f} at the end)._",
        "",
        f"Cells: mean ± sample std (ddof 1) (median) over {args.seeds} seeds per method "
        f"({SWEEP_SEEDS} per invariance weight), each seed a new draw of the data; test split; "
        f"every run's numbers in docs/gedi_runs.json. Separation AUC and SGLD off-data: "
        "`jaxlab/papers/gedi/density.py`.",
        "",
    ]
    for dataset in datasets:
        lines += table(results, dataset)
    lines += ["### Checks", "", *checks(results, datasets), ""]
    out = pathlib.Path(args.out)
    if not args.quick:
        runs = [
            {"dataset": d, "method": name, "seed": seed, **metrics}
            for (d, name), per_seed in results.items()
            for seed, metrics in enumerate(per_seed)
        ]
        (out.parent / "gedi_runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    write_block(
        out, "<!-- reproduce_gedi: begin -->", "<!-- reproduce_gedi: end -->", "\n".join(lines)
    )
    print(f"wrote {out} in {wall:.0f} s")


if __name__ == "__main__":
    main()
