"""``jaxlab report WORKDIR``: the final metrics of a run as a table, and its curves as a PNG."""
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

from jaxlab.errors import UserError  # noqa: E402
from jaxlab.metrics_log import METRICS_FILE, read_metrics  # noqa: E402

PLOT_FILE = "metrics.png"


def scalar_series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """metric name -> (steps, values) for every scalar metric in ``records``."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)):
                steps, values = series.setdefault(name, ([], []))
                steps.append(record["step"])
                values.append(float(value))
    return series


def report(workdir: str) -> str:
    """Writes ``workdir/metrics.png`` and returns a Markdown table of the final metrics."""
    workdir = pathlib.Path(workdir)
    records = read_metrics(workdir)
    if not records:
        raise UserError(f"no metrics in {workdir / METRICS_FILE}: is {workdir} a jaxlab workdir?")
    series = scalar_series(records)
    plot_curves(series, workdir / PLOT_FILE, title=str(workdir))
    rows = [f"| {name} | {steps[-1]} | {values[-1]:.4g} |"
            for name, (steps, values) in sorted(series.items())]
    return "\n".join(["| metric | step | value |", "|---|---|---|", *rows,
                      "", f"curves: {workdir / PLOT_FILE}"])


def plot_curves(series: dict[str, tuple[list[int], list[float]]], path: pathlib.Path,
                title: str) -> None:
    """One small panel per metric, against the step."""
    names = sorted(series)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = series[name]
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
