"""Reproduces the GEDI moons/circles study (paper Table 2 setting) and writes docs/gedi.md, as the
gedi experiment's own sweeps.

Every study is a `get_sweep` grid of experiments/gedi.py, trained by `jaxlab.sweep` with
``vmap=True`` (what ``jaxlab sweep gedi:PRESET --vmap`` runs: one program per seed, since each
seed re-draws the data, its runs differing in loss weights) and read back from the sweep's results
table (`STUDIES`): per dataset (moons, circles), full GEDI and its three ablations over 5 seeds
at our defaults, the invariance weight swept over 3 seeds, and the paper's own setting (β = 0.05,
i.e. invariance weight 0.025, and 7,000 steps) over 5 seeds. K-means on the raw inputs is a
reference row. Cells are mean ± sample std (median) of NMI, Hungarian accuracy, cluster entropy,
the assignment confidence (mean max p, the fraction of points with max p > 0.9) and the density
checks (the energy's ROC area between test and off-data points; the fraction of SGLD samples
far from the data), with the checks of the paper's claims; every run's numbers go to
docs/gedi_runs.json.

    python scripts/reproduce_gedi.py [--workdir runs/gedi_report]   # resumable; about 45 min
    python scripts/reproduce_gedi.py --quick     # moons, the variants at 500 steps; prints only
    python scripts/reproduce_gedi.py --from-json  # rewrite the section only
"""

import json
import pathlib
import statistics
import time

from jaxlab.experiments import gedi
from report_runs import arguments
from report_runs import record as record_of

import jaxlab
from jaxlab.doc_block import write_block
from jaxlab.sweep import experiment_points

REPO = pathlib.Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "gedi.md"
RUNS = REPO / "docs" / "gedi_runs.json"
BEGIN, END = "<!-- reproduce_gedi: begin -->", "<!-- reproduce_gedi: end -->"
DATASETS = ("moons", "circles")
PAPER_SETTING = "invariance=0.025,steps=7000"  # the loss function's default β 0.05; 7k steps
# study directory -> the gedi experiment's preset (its get_sweep grid)
STUDIES = {
    f"{d}_{name}": f"dataset={d},{preset}"
    for d in DATASETS
    for name, preset in (
        ("table2", "study=table2"),
        ("invariance", "study=invariance"),
        ("paper_setting", f"study=table2,{PAPER_SETTING}"),
    )
}
QUICK = {"moons_table2": "dataset=moons,study=table2,steps=500"}
VARIANTS = tuple(gedi.VARIANTS)
KMEANS = "k-means (raw inputs)"
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


def method(loss: dict) -> str:
    """The report's name of a run with loss overrides ``loss``: the variant whose weights they
    are, or the invariance weight of the invariance study."""
    if set(loss) == {"invariance"}:
        return f"invariance={loss['invariance']:g}"
    return next(v for v in VARIANTS if all((loss[k] == 0) == (k in gedi.VARIANTS[v]) for k in loss))


def run_study(workdir: pathlib.Path, study: str, preset: str) -> list[dict]:
    """Trains (or resumes) one study's sweep; one row per run."""
    spec = f"gedi:{preset}"
    started = time.time()
    table = jaxlab.sweep(spec, experiment_points(spec), workdir / study, vmap=True, quiet=False)
    wall = time.time() - started
    rows = []
    for row in table:
        if row["status"] != "done":
            raise SystemExit(f"{study}: run {row['run']} is {row['status']}: {row['error']}")
        loss = {k.removeprefix("loss."): v for k, v in row.items() if k.startswith("loss.")}
        rows.append(
            {
                "study": study,
                "dataset": study.split("_")[0],
                "method": method(loss),
                "seed": int(row["seed"]),
                "steps": int(row["step"]),
                "study_wall_s": wall,
                **{m: float(row[f"eval/{m}"]) for m in METRICS},
            }
        )
    return rows


def kmeans_scores(dataset: str, seed: int) -> dict:
    from sklearn.cluster import KMeans

    from jaxlab import data as data_lib
    from jaxlab.papers.gedi import clustering

    config = jaxlab.load_config(f"gedi:dataset={dataset}", {"seed": seed, "data.seed": seed})
    data = data_lib.load(config.data)
    k = config.model.num_clusters
    clusters = (
        KMeans(n_clusters=k, n_init=10, random_state=seed)
        .fit(data.train["x"])
        .predict(data.test["x"])
    )
    labels = data.test["label"]
    return {
        "study": "kmeans",
        "dataset": dataset,
        "method": KMEANS,
        "seed": seed,
        "nmi": clustering.nmi(labels, clusters),
        "accuracy": clustering.hungarian_accuracy(labels, clusters),
        "cluster_entropy": clustering.cluster_entropy(clusters, k),
    }


def summary(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f} ({statistics.median(values):.2f})"


def runs_of(rows: list[dict], study: str, method: str) -> list[dict]:
    """The runs of ``method`` in ``study`` (k-means: its dataset's), in seed order."""
    dataset = study.split("_")[0]
    found = [
        r
        for r in rows
        if r["method"] == method
        and (r["study"] == study or (method == KMEANS and r["dataset"] == dataset))
    ]
    return sorted(found, key=lambda r: r["seed"])


def table(rows: list[dict], study: str, methods: list[str], first: str) -> list[str]:
    lines = [
        f"| {first} | n | " + " | ".join(HEADERS) + " |",
        "|---|---|" + "---|" * len(HEADERS),
    ]
    for name in methods:
        runs = runs_of(rows, study, name)
        if runs:
            summaries = (summary([r[m] for r in runs]) if m in runs[0] else "—" for m in METRICS)
            lines.append(
                f"| {name.removeprefix('invariance=')} | {len(runs)} | "
                + " | ".join(summaries)
                + " |"
            )
    return lines + [""]


TIE = 0.01  # medians of NMI this close are a tie (the project's threshold)


def above(a: float, b: float) -> str:
    if abs(a - b) <= TIE:
        return f"tie (within {TIE}, the project's threshold)"
    return "holds" if a > b else "does not hold"


def checks(rows: list[dict], study: str) -> list[str]:
    """The paper's claims in ``study``, each checked with a threshold of this project's
    (labelled)."""
    dataset = study.split("_")[0]

    def median_nmi(name: str) -> float:
        return statistics.median(r["nmi"] for r in runs_of(rows, study, name))

    full, lines = median_nmi("full"), []
    for other in (*VARIANTS[1:], KMEANS):
        lines.append(
            f"- {dataset}: full GEDI above {other} in median NMI ({full:.3f} vs "
            f"{median_nmi(other):.3f}) -> {above(full, median_nmi(other))}"
        )
    for variant in ("full", "no_uniformity", "no_invariance"):
        runs = runs_of(rows, study, variant)
        learnt = sum(r["separation_auc"] >= 0.9 for r in runs)
        lines.append(
            f"- {dataset}, {variant}: the energy learns the density (separation "
            f"AUC >= 0.9, the project's threshold) in {learnt}/{len(runs)} seeds"
        )
    entropy = [r["cluster_entropy"] for r in runs_of(rows, study, "no_uniformity")]
    lines.append(
        f"- {dataset}, no_uniformity: cluster entropy per seed "
        f"{', '.join(f'{e:.2f}' for e in entropy)} (collapse: toward 0)"
    )
    return lines


def section(record: dict) -> str:
    rows = record["rows"]
    walls = {r["study"]: r["study_wall_s"] for r in rows if "study_wall_s" in r}
    lines = [
        f"_Generated by `python scripts/reproduce_gedi.py`. {record['machine']} Sweep wall "
        "times (min): "
        + ", ".join(f"{study} {wall / 60:.1f}" for study, wall in walls.items())
        + "._",
        "",
        "Cells: mean ± sample std (ddof 1) (median) over the n seeds of each row, each seed a "
        "new draw of the data; test split; every run's numbers in docs/gedi_runs.json. "
        "Separation AUC and SGLD off-data: `jaxlab/papers/gedi/density.py`.",
        "",
    ]
    settings = {
        "table2": "our defaults: invariance weight 0.05 (β = 0.1)",
        "paper_setting": "the paper's setting: invariance weight 0.025 (β = 0.05, the loss "
        "function's default)",
    }
    for dataset in DATASETS:
        for setting, title in settings.items():
            study = f"{dataset}_{setting}"
            if not runs_of(rows, study, "full"):
                continue
            steps = runs_of(rows, study, "full")[0]["steps"]
            lines += [f"### {dataset}, {title}, {steps:,} steps", ""]
            lines += table(rows, study, [KMEANS, *VARIANTS], "method")
            if setting == "table2" and runs_of(rows, f"{dataset}_invariance", "invariance=0.1"):
                lines += [
                    "Full GEDI, invariance weight swept (the default 0.05 is the row `full` "
                    "above; uniformity 0.5):",
                    "",
                ]
                names = [f"invariance={w:g}" for w in gedi.INVARIANCE_SWEEP]
                lines += table(rows, f"{dataset}_invariance", names, "invariance")
    lines += ["### Checks", ""]
    for setting, title in settings.items():
        studies = [f"{d}_{setting}" for d in DATASETS if runs_of(rows, f"{d}_{setting}", "full")]
        if studies:
            lines += [f"At {title}:", ""]
            lines += [line for study in studies for line in checks(rows, study)] + [""]
    return "\n".join(lines)


def main() -> None:
    args = arguments(__doc__.splitlines()[0], RUNS, "moons, the variants at 500 steps")

    def with_kmeans(rows: list[dict]) -> dict:
        datasets = sorted({r["dataset"] for r in rows})
        return {"rows": rows + [kmeans_scores(d, s) for d in datasets for s in gedi.SEEDS]}

    record = record_of(args, RUNS, QUICK if args.quick else STUDIES, run_study, with_kmeans)
    section_text = section(record)
    if not args.quick:
        if not args.from_json:
            RUNS.write_text(json.dumps(record, indent=1) + "\n")
        write_block(DOC, BEGIN, END, section_text)
    print(section_text)


if __name__ == "__main__":
    main()
