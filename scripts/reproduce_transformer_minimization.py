"""Reproduction report of "Reducing the Transformer Architecture to a Minimum" on digits and shapes.

Trains the paper's grid (unchanged attention with 1 and 4 heads, Wqk, Wqk without W^V and W^O,
symmetric with 1 and 4 heads, each with and without the MLP) on scikit-learn's digits and on the
generated shapes set, and the project's extensions (symmetric_novo and its T·Tᵀ form, without MLP)
on digits, 3 seeds each, with the experiment's ``report`` preset (6 encoders, width 32, MLP 4x
width). It then writes the results section of docs/transformer_minimization.md (the tables, and
the paper's own statements checked on both data sets), docs/transformer_minimization_accuracy.png
and docs/transformer_minimization_runs.json (every run's final numbers).

    python scripts/reproduce_transformer_minimization.py [--workdir runs/minimization]
    python scripts/reproduce_transformer_minimization.py --quick      # 1 seed, 1/4 of the steps
    python scripts/reproduce_transformer_minimization.py --from-json  # rewrite only
"""

import argparse
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from report_runs import provenance, runs_directory  # noqa: E402

import jaxlab  # noqa: E402
from jaxlab import data as data_lib  # noqa: E402
from jaxlab import models  # noqa: E402
from jaxlab.doc_block import write_block  # noqa: E402
from jaxlab.papers.transformer_minimization.model import parameter_count  # noqa: E402
from jaxlab.tasks.classification import parameter_total  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "transformer_minimization.md"
PLOT = REPO / "docs" / "transformer_minimization_accuracy.png"
RUNS = REPO / "docs" / "transformer_minimization_runs.json"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SEEDS = (0, 1, 2)
DATASETS = ("digits", "shapes")
# (attention, heads, triangular): the paper's grid, each with and without the MLP.
PAPER = (
    ("full", 1, False),
    ("full", 4, False),
    ("wqk", 1, False),
    ("wqk_novo", 1, False),
    ("symmetric", 1, False),
    ("symmetric", 4, False),
)
# The project's extensions, without MLP, on digits only.
EXTENSIONS = (("symmetric_novo", 1, False), ("symmetric_novo", 1, True))
SLIGHTLY = 2.0  # points of accuracy: the project's reading of the paper's "slightly inferior"


def label(row) -> str:
    name = row["attention"] + (" (T·Tᵀ)" if row["triangular"] else "")
    return f"{name}, {row['heads']} head{'s' if row['heads'] > 1 else ''}"


def spec(dataset: str, attention: str, heads: int, triangular: bool, mlp: bool) -> str:
    return (
        f"minimal_transformer:report,dataset={dataset},attention={attention},heads={heads},"
        f"mlp={mlp}" + (",triangular" if triangular else "")
    )


def counted_parameters(config) -> tuple[int, int, int, int]:
    """(parameters of the initialised model, of the formula, train examples K, test examples)."""
    data = data_lib.load(config.data)
    image_shape = data.train["x"].shape[1:]
    model = models.build(config.model, num_classes=10)
    init = jax.eval_shape(model.init, jax.random.key(0), data.train["x"][:1])
    return (
        parameter_total(init),
        parameter_count(model, image_shape),
        data.num_train,
        len(data.test["label"]),
    )


def run_grid(workdir: pathlib.Path, seeds, step_fraction: float) -> list[dict]:
    grid = [(d, *variant, mlp) for d in DATASETS for mlp in (True, False) for variant in PAPER]
    grid += [("digits", *variant, False) for variant in EXTENSIONS]
    rows = []
    for dataset, attention, heads, triangular, mlp in grid:
        name = (
            f"{dataset}_{attention}{'_tri' if triangular else ''}_h{heads}_"
            f"{'mlp' if mlp else 'nomlp'}"
        )
        finals = []
        for seed in seeds:
            config = jaxlab.load_config(
                spec(dataset, attention, heads, triangular, mlp), {"seed": seed}
            )
            steps = max(1, int(config.train.steps * step_fraction))
            config.train.update(steps=steps, eval_every=steps, checkpoint_every=steps)
            finals.append(jaxlab.train(config, workdir / name / f"seed{seed}", quiet=True))
        params, formula, num_train, num_test = counted_parameters(config)
        if params != formula:
            raise RuntimeError(f"{name}: {params} parameters, the formula says {formula}")
        m, t = config.model, config.train
        rows.append(
            dict(
                dataset=dataset,
                attention=attention,
                heads=heads,
                triangular=triangular,
                mlp=mlp,
                extension=(attention, heads, triangular) in EXTENSIONS,
                params=params,
                num_train=num_train,
                num_test=num_test,
                seeds=list(seeds),
                setup=dict(
                    depth=m.depth,
                    width=m.width,
                    mlp_dim=m.mlp_dim,
                    steps=t.steps,
                    batch_size=t.batch_size,
                    log_every=t.log_every,
                    learning_rate=config.optimizer.learning_rate,
                ),
                accuracy=[f["eval/accuracy"] for f in finals],
                train_loss=[f["train/loss"] for f in finals],
                test_loss=[f["eval/loss"] for f in finals],
                wall_time_s=float(sum(f["wall_time_s"] for f in finals)),
            )
        )
        print(
            f"{name}: params={params} accuracy={np.mean(rows[-1]['accuracy']):.4f} "
            f"test loss={np.mean(rows[-1]['test_loss']):.4f}",
            flush=True,
        )
    return rows


def find(rows, dataset, attention, heads, mlp, triangular=False):
    return next(
        r
        for r in rows
        if (r["dataset"], r["attention"], r["heads"], r["mlp"], r["triangular"])
        == (dataset, attention, heads, mlp, triangular)
    )


def mean(row, key) -> float:
    return float(np.mean(row[key]))


def spread(values) -> str:
    values = np.asarray(values, float)
    return (
        f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
    )


def compare(a, b, key) -> tuple[float, float]:
    """Mean over seeds of a[key] − b[key] (paired by seed), and the differences' std."""
    diff = np.asarray(a[key]) - np.asarray(b[key])
    return float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0


def verdict(holds: bool, difference: float, std: float) -> str:
    noisy = abs(difference) < std
    return ("holds" if holds else "does not hold") + (
        " (within the seeds' spread)" if noisy else ""
    )


def statements(rows, dataset) -> list[tuple[str, str, str, str]]:
    """The paper's statements on ``dataset``: (statement, paper's data set, measured, verdict)."""
    out = []
    pairs = [
        (find(rows, dataset, a, h, True), find(rows, dataset, a, h, False)) for a, h, _ in PAPER
    ]
    better_train = [(w, wo) for w, wo in pairs if mean(w, "train_loss") < mean(wo, "train_loss")]
    out.append(
        (
            "With the MLP, a lower training loss than without (each of the 6 variants)",
            "MNIST",
            f"{len(better_train)} of 6",
            "holds" if len(better_train) == 6 else "does not hold",
        )
    )
    shrinks = [
        (w, wo)
        for w, wo in pairs
        if mean(wo, "test_loss") - mean(w, "test_loss")
        < mean(wo, "train_loss") - mean(w, "train_loss")
    ]
    out.append(
        (
            "The MLP's advance in loss shrinks from the training to the validation set",
            "MNIST",
            f"{len(shrinks)} of 6",
            "holds" if len(shrinks) == 6 else "does not hold",
        )
    )
    for heads in (1, 4):
        sym, asym = (find(rows, dataset, a, heads, False) for a in ("symmetric", "full"))
        d, s = compare(sym, asym, "test_loss")
        da, _ = compare(sym, asym, "accuracy")
        out.append(
            (
                f"Without MLP, symmetric similarity better than unchanged (asymmetric), "
                f"{heads} head{'s' if heads > 1 else ''}: validation loss",
                "MNIST",
                f"{d:+.4f} ± {s:.4f} loss, {100 * da:+.2f} points accuracy",
                verdict(d < 0, d, s),
            )
        )
    minimum = find(rows, dataset, "wqk_novo", 1, False)
    others = [r for w, wo in pairs for r in (w, wo) if r is not minimum]
    highest = all(
        mean(minimum, k) > max(mean(r, k) for r in others) for k in ("train_loss", "test_loss")
    )
    runner_up = max(mean(r, "test_loss") for r in others)
    out.append(
        (
            "The minimum variant (Wqk, noWv.Vo, no MLP) has a higher loss than every other variant",
            "MNIST",
            f"validation {mean(minimum, 'test_loss'):.4f} against at most {runner_up:.4f}",
            "holds" if highest else "does not hold",
        )
    )
    gaps = {id(r): mean(r, "test_loss") - mean(r, "train_loss") for w, wo in pairs for r in (w, wo)}
    full_mlp = [find(rows, dataset, "full", h, True) for h in (1, 4)]
    sym_no = [find(rows, dataset, "symmetric", h, False) for h in (1, 4)]
    largest = max(gaps.values())
    widest = max((w for w, wo in pairs for w in (w, wo)), key=lambda r: gaps[id(r)])
    out.append(
        (
            "The validation − training loss gap is largest for the unchanged model with MLP",
            "MNIST",
            f"unchanged+MLP {', '.join(f'{gaps[id(r)]:.4f}' for r in full_mlp)}; "
            f"largest {largest:.4f} ({label(widest)}{'' if widest['mlp'] else ', no MLP'})",
            "holds" if max(gaps[id(r)] for r in full_mlp) == largest else "does not hold",
        )
    )
    out.append(
        (
            "... and smaller for symmetric without MLP (each number of heads)",
            "MNIST",
            f"symmetric no MLP {', '.join(f'{gaps[id(r)]:.4f}' for r in sym_no)}",
            "holds"
            if all(gaps[id(s)] < gaps[id(f)] for s, f in zip(sym_no, full_mlp))
            else "does not hold",
        )
    )
    full = find(rows, dataset, "full", 1, True)
    gap, s = compare(full, minimum, "accuracy")
    share = 100 * minimum["params"] / full["params"]
    out.append(
        (
            f"The minimum variant is slightly inferior (project threshold: at most "
            f"{SLIGHTLY:g} points below unchanged+MLP, 1 head) with < 10% of its parameters",
            "MNIST",
            f"{100 * gap:.2f} ± {100 * s:.2f} points below, {share:.1f}% of the parameters",
            "holds" if 0 <= 100 * gap <= SLIGHTLY and share < 10 else "does not hold",
        )
    )
    d, s = compare(minimum, full, "test_loss")
    out.append(
        (
            "The minimum variant has a lower validation loss than unchanged+MLP (1 head)",
            "CIFAR-10",
            f"{d:+.4f} ± {s:.4f}",
            verdict(d < 0, d, s),
        )
    )
    for heads in (1, 4):
        sym, f = (
            find(rows, dataset, "symmetric", heads, False),
            find(rows, dataset, "full", heads, True),
        )
        d, s = compare(sym, f, "test_loss")
        out.append(
            (
                f"Symmetric without MLP generalises better than unchanged+MLP ({heads} "
                f"head{'s' if heads > 1 else ''}): validation loss",
                "CIFAR-10",
                f"{d:+.4f} ± {s:.4f}",
                verdict(d < 0, d, s),
            )
        )
    return out


def extension_checks(rows) -> list[tuple[str, str, str]]:
    minimum = find(rows, "digits", "wqk_novo", 1, False)
    out = []
    for triangular in (False, True):
        row = find(rows, "digits", "symmetric_novo", 1, False, triangular)
        d, s = compare(row, minimum, "test_loss")
        da, _ = compare(row, minimum, "accuracy")
        out.append(
            (
                f"{label(row)}, no MLP, against the minimum variant (Wqk, noWv.Vo)",
                f"{d:+.4f} ± {s:.4f} validation loss, {100 * da:+.2f} points accuracy, "
                f"{row['params']:,} against {minimum['params']:,} parameters",
                "lower loss" if d < 0 else "higher loss",
            )
        )
    return out


def table(rows, full) -> list[str]:
    lines = [
        "| attention | MLP | parameters | % of full | test accuracy | train loss | test loss "
        "| gap | Q |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        q = r["num_train"] * 10 / r["params"]
        gap = mean(r, "test_loss") - mean(r, "train_loss")
        lines.append(
            f"| {label(r)} | {'yes' if r['mlp'] else 'no'} | {r['params']:,} "
            f"| {100 * r['params'] / full['params']:.1f} | {spread(r['accuracy'])} "
            f"| {mean(r, 'train_loss'):.4f} | {mean(r, 'test_loss'):.4f} | {gap:.4f} "
            f"| {q:.2f} |"
        )
    return lines


def results_section(rows, machine: str) -> str:
    lines = ["<!-- written by scripts/reproduce_transformer_minimization.py; do not edit -->", ""]
    for dataset in DATASETS:
        full = find(rows, dataset, "full", 1, True)
        s = full["setup"]
        lines += [
            f"### {dataset}",
            "",
            f"{full['num_train']:,} training and {full['num_test']:,} test images; "
            f"`minimal_transformer:report,dataset={dataset}` ({s['depth']} encoders, width "
            f"{s['width']}, MLP width {s['mlp_dim']}, {s['steps']} AdamW steps of batch "
            f"{s['batch_size']}, peak learning rate {s['learning_rate']}), seeds "
            f"{', '.join(map(str, full['seeds']))}. Test accuracy: mean ± sample std over "
            f"the seeds; losses: means (train loss: the mean of the last {s['log_every']} "
            f"steps' batch losses); gap: test − train loss; Q = K·M/P (the paper's Eq. 12); "
            f"% of full: parameters relative to unchanged attention, 1 head, with MLP.",
            "",
        ]
        lines += table([r for r in rows if r["dataset"] == dataset and not r["extension"]], full)
        lines.append("")
    lines += [
        "### The paper's statements, checked",
        "",
        "Differences are means over the seeds of the per-seed differences ± their std; "
        '"within the seeds\' spread" marks a mean difference smaller than that std. '
        "Statements the paper made for CIFAR-10 are checked on both sets too.",
        "",
        "| statement | paper's data | digits | | shapes | |",
        "|---|---|---|---|---|---|",
    ]
    by_dataset = [statements(rows, d) for d in DATASETS]
    for (claim, source, m1, v1), (_, _, m2, v2) in zip(*by_dataset):
        lines.append(f"| {claim} | {source} | {m1} | {v1} | {m2} | {v2} |")
    extensions = [r for r in rows if r["extension"]]
    lines += ["", "### The project's extensions (not in the paper), digits", ""]
    lines += table(extensions, find(rows, "digits", "full", 1, True))
    lines += ["", "| comparison | measured | |", "|---|---|---|"]
    lines += [f"| {c} | {m} | {v} |" for c, m, v in extension_checks(rows)]
    lines += ["", machine, ""]
    return "\n".join(lines)


def plot(rows) -> None:
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(12, 5.6), layout="constrained")
    variants = sorted({(r["attention"], r["heads"], r["triangular"]) for r in rows})
    colors = {v: plt.cm.tab10(i) for i, v in enumerate(variants)}
    for ax, dataset in zip(axes, DATASETS):
        for r in (r for r in rows if r["dataset"] == dataset):
            acc = np.asarray(r["accuracy"])
            ax.errorbar(
                r["params"],
                acc.mean(),
                yerr=acc.std(ddof=1) if len(acc) > 1 else 0,
                fmt="o" if r["mlp"] else "s",
                capsize=3,
                color=colors[(r["attention"], r["heads"], r["triangular"])],
                mfc=None if r["mlp"] else "none",
                label=f"{label(r)}{'' if r['mlp'] else ', no MLP'}",
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2×10⁴, 3×10⁴, ... ran into each other
        ax.set_xlabel("parameters")
        ax.set_ylabel("test accuracy (mean ± std over seeds)")
        ax.set_title(f"{dataset} (filled: with MLP, open: without)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # below the panels, over no point
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where the runs go (default: a temporary directory)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seed 0 only and a quarter of the steps; prints, writes nothing",
    )
    parser.add_argument(
        "--from-json",
        action="store_true",
        help=f"rewrite the section and plot from {RUNS.name} without training",
    )
    args = parser.parse_args()
    if args.from_json:
        record = json.loads(RUNS.read_text())
    else:
        start = time.time()
        with runs_directory(args.workdir) as workdir:
            rows = run_grid(
                workdir, SEEDS[:1] if args.quick else SEEDS, 0.25 if args.quick else 1.0
            )
        record = {"rows": rows, "machine": provenance(start)}
        if args.quick:
            print(results_section(rows, record["machine"]))
            return
        RUNS.write_text(json.dumps(record, indent=1) + "\n")
    section = results_section(record["rows"], record["machine"])
    write_block(DOC, BEGIN, END, section)
    plot(record["rows"])
    print(section)


if __name__ == "__main__":
    main()
