"""Reproduction report of "Reducing the Transformer Architecture to a Minimum" on digits.

Trains every attention variant with and without the MLP, 3 seeds each (the experiment's ``report``
preset: 6 encoders, width 32, 1 head, MLP 4x width, 800 steps), then writes
the results section of docs/transformer_minimization.md (the table and the paper's claims as
checks, between the ``results`` markers), docs/transformer_minimization_accuracy.png (test accuracy
against parameter count) and docs/transformer_minimization_runs.json (every run's final numbers).

    python scripts/reproduce_transformer_minimization.py [--workdir runs/minimization]
    python scripts/reproduce_transformer_minimization.py --from-json   # rewrite only
"""
import argparse
import importlib.metadata
import json
import os
import pathlib
import platform
import tempfile
import time

import jax

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
VARIANTS = (("full", False), ("wqk", False), ("wqk_novo", False), ("symmetric", False),
            ("symmetric_novo", False), ("symmetric_novo", True))  # (attention, triangular)


def label(attention: str, triangular: bool) -> str:
    return attention + (" (T·Tᵀ)" if triangular else "")


def spec(attention: str, triangular: bool, mlp: bool) -> str:
    return (f"minimal_transformer:report,attention={attention},mlp={mlp}"
            + (",triangular" if triangular else ""))


def counted_parameters(config) -> tuple[int, int, int, int]:
    """(parameters of the initialised model, of the formula, train examples K, test examples)."""
    data = data_lib.load(config.data)
    image_shape = data.train["x"].shape[1:]
    model = models.build(config.model, num_classes=10)
    init = jax.eval_shape(model.init, jax.random.key(0), data.train["x"][:1])
    return (parameter_total(init), parameter_count(model, image_shape), data.num_train,
            len(data.test["label"]))


def setup_of(config) -> dict:
    """What the table's caption says about the runs."""
    m, t = config.model, config.train
    return dict(depth=m.depth, width=m.width, heads=m.heads, mlp_dim=m.mlp_dim, steps=t.steps,
                batch_size=t.batch_size, learning_rate=config.optimizer.learning_rate,
                log_every=t.log_every)


def run_all(workdir: pathlib.Path) -> list[dict]:
    rows = []
    for mlp in (True, False):
        for attention, triangular in VARIANTS:
            name = f"{attention}{'_tri' if triangular else ''}_{'mlp' if mlp else 'nomlp'}"
            finals = []
            for seed in SEEDS:
                config = jaxlab.load_config(spec(attention, triangular, mlp), {"seed": seed})
                finals.append(jaxlab.train(config, workdir / name / f"seed{seed}", quiet=True))
            params, formula, num_train, num_test = counted_parameters(config)
            if params != formula:
                raise RuntimeError(f"{name}: {params} parameters, the formula says {formula}")
            accuracy = np.array([f["eval/accuracy"] for f in finals])
            rows.append(dict(attention=attention, triangular=triangular, mlp=mlp, params=params,
                             num_train=num_train, num_test=num_test, setup=setup_of(config),
                             accuracy=accuracy.tolist(),
                             train_loss=float(np.mean([f["train/loss"] for f in finals])),
                             test_loss=float(np.mean([f["eval/loss"] for f in finals])),
                             wall_time_s=float(sum(f["wall_time_s"] for f in finals))))
            print(f"{name}: params={params} accuracy={accuracy.mean():.4f}±{accuracy.std(ddof=1):.4f}",
                  flush=True)
    return rows


def find(rows, attention, mlp, triangular=False):
    return next(r for r in rows if (r["attention"], r["mlp"], r["triangular"])
                == (attention, mlp, triangular))


def below(gap: float) -> str:
    return f"{gap:.1f} points below" if gap >= 0 else f"{-gap:.1f} points above"


def mean(row) -> float:
    return float(np.mean(row["accuracy"]))


def checks(rows) -> list[tuple[str, str, bool]]:
    """The paper's claims at this scale: (claim, what was measured, passed)."""
    full = find(rows, "full", True)
    result = []
    for row in (r for r in rows if not r["mlp"]):
        gap = 100 * (mean(full) - mean(row))
        result.append((f"{label(row['attention'], row['triangular'])} without MLP within 2 points "
                       f"of the full model", below(gap), gap <= 2.0))
    for symmetric, asymmetric, tri in (("symmetric", "wqk", False), ("symmetric_novo", "wqk_novo", False),
                                       ("symmetric_novo", "wqk_novo", True)):
        s, a = find(rows, symmetric, False, tri), find(rows, asymmetric, False)
        diff = 100 * (mean(s) - mean(a))
        result.append((f"{label(symmetric, tri)} without MLP at least as good as {asymmetric} "
                       f"without MLP, minus 1 point", f"{diff:+.1f} points", diff >= -1.0))
    minimal = find(rows, "wqk_novo", False)
    share = 100 * minimal["params"] / full["params"]
    gap = 100 * (mean(full) - mean(minimal))
    result.append(("minimal variant (wqk_novo, no MLP) under 10% of the full model's parameters",
                   f"{share:.1f}%", share < 10.0))
    result.append(("minimal variant (wqk_novo, no MLP) within 5 points of the full model",
                   below(gap), gap <= 5.0))
    return result


def results_section(rows, machine: str) -> str:
    full = find(rows, "full", True)
    s = full["setup"]
    lines = [
        "<!-- written by scripts/reproduce_transformer_minimization.py; do not edit -->", "",
        f"scikit-learn digits (K = {full['num_train']} training examples, M = 10 outputs), "
        f"`minimal_transformer:report` preset ({s['depth']} encoders, width {s['width']}, "
        f"{s['heads']} head(s), MLP width {s['mlp_dim']}, {s['steps']} AdamW steps of batch "
        f"{s['batch_size']}, peak learning rate {s['learning_rate']}), seeds "
        f"{', '.join(map(str, SEEDS))}. Test accuracy: mean ± sample standard deviation over the "
        f"seeds, on the {full['num_test']} test images. Losses: mean over the seeds (train loss: "
        f"mean of the last {s['log_every']} steps). Q = K·M/P (the paper's Eq. 12). "
        f"% of full: parameters relative to the full model with MLP.", "",
        "| attention | MLP | parameters | % of full | test accuracy | train loss | test loss | Q |",
        "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        acc = np.array(r["accuracy"])
        q = r["num_train"] * 10 / r["params"]
        lines.append(f"| {label(r['attention'], r['triangular'])} | {'yes' if r['mlp'] else 'no'} "
                     f"| {r['params']:,} | {100 * r['params'] / full['params']:.1f} "
                     f"| {acc.mean():.4f} ± {acc.std(ddof=1):.4f} | {r['train_loss']:.4f} "
                     f"| {r['test_loss']:.4f} | {q:.2f} |")
    lines += ["", "## The paper's claims, checked at this scale", "",
              "| claim | measured | at this scale |", "|---|---|---|"]
    lines += [f"| {claim} | {measured} | {'pass' if ok else 'FAIL'} |"
              for claim, measured, ok in checks(rows)]
    lines += ["", machine, ""]
    return "\n".join(lines)


def plot(rows) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {variant: plt.cm.tab10(i) for i, variant in enumerate(VARIANTS)}
    for mlp, marker in ((True, "o"), (False, "s")):
        for r in (r for r in rows if r["mlp"] == mlp):
            acc = np.array(r["accuracy"])
            ax.errorbar(r["params"], acc.mean(), yerr=acc.std(ddof=1), fmt=marker, capsize=3,
                        color=colors[(r["attention"], r["triangular"])],
                        mfc="none" if not mlp else None,
                        label=f"{label(r['attention'], r['triangular'])}{'' if mlp else ', no MLP'}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy (mean ± std, 3 seeds)")
    ax.set_title("Transformer minimization on digits (filled: with MLP, open: without)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


def versions() -> str:
    """The packages whose numerics decide the table (a new jax or flax moves it by a few tenths)."""
    return ", ".join(f"{name} {importlib.metadata.version(name)}"
                     for name in ("jax", "jaxlib", "flax", "optax", "numpy"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where the runs go (default: a temporary directory)")
    parser.add_argument("--from-json", action="store_true",
                        help=f"rewrite the table and plot from {RUNS.name} without training")
    args = parser.parse_args()
    if args.from_json:
        record = json.loads(RUNS.read_text())
    else:
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            workdir = pathlib.Path(args.workdir or tmp)
            # Seeds of one variant compile to the same programs: compile each once.
            jax.config.update("jax_compilation_cache_dir", str(workdir / "compilation_cache"))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
            rows = run_all(workdir)
        minutes = (time.time() - start) / 60
        record = {"rows": rows, "machine": (
            f"Wall time of the whole report: {minutes:.1f} min on {os.cpu_count()} visible CPUs "
            f"({platform.machine()}), 1-minute load average {os.getloadavg()[0]:.1f} at the end; "
            f"{versions()}.")}
        RUNS.write_text(json.dumps(record, indent=1) + "\n")
    section = results_section(record["rows"], record["machine"])
    write_block(DOC, BEGIN, END, section)
    plot(record["rows"])
    print(section)


if __name__ == "__main__":
    main()
