"""Why GEDI's clustering of the circles does not follow its learned two-ring density: measured.

Trains the `gedi` experiment on circles (seed 0) at its default (invariance 0.05) and without the
invariance term, then measures on the test split, for each:

- the partition: NMI against the rings, and how well a straight line in the plane predicts the
  cluster (a logistic regression on (x, y): 1.0 is a half-plane split);
- the cluster head's input: how well a logistic regression on the last hidden layer's features
  tells the two rings apart (1.0: the rings are linearly separable where the head reads them);
- the energy by region (hole, inner ring, gap, outer ring);
- the discriminative objective each partition reaches: the uniformity and invariance terms and
  their weighted sum (0.5 · uniformity + 0.05 · invariance, the default weights), the invariance
  averaged over 20 augmentation draws;
- the augmentation's scale against the ring gap: the fraction of points whose augmented copy
  lies on the other side of radius 0.75, midway between the rings.

    python scripts/probe_gedi_circles.py [--workdir runs/gedi_probe] [--steps 3000]
"""

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from report_runs import runs_directory
from sklearn.linear_model import LogisticRegression

import jaxlab
from jaxlab import data as data_lib
from jaxlab.papers.gedi import clustering
from jaxlab.papers.gedi.model import ClusterMLP, energy
from jaxlab.papers.gedi.task import augment, invariance_loss, uniformity_loss

MIDWAY = 0.75  # radius between the rings (outer 1.0, inner factor 0.5)
REGIONS = {"hole r<0.3": (0.0, 0.3), "inner ring": (0.3, 0.65), "gap": (0.65, 0.85)}
REGIONS["outer ring"] = (0.85, 2.0)
DRAWS = 20


def probe(workdir: pathlib.Path) -> dict:
    config, _, state = jaxlab.restore(workdir)
    params = jax.device_get(state["params"])
    data = data_lib.load(config.data)
    m = config.model
    model = ClusterMLP(
        num_clusters=m.num_clusters, hidden=tuple(m.hidden), temperature=m.temperature
    )
    x, rings = jnp.asarray(data.test["x"]), np.asarray(data.test["label"])
    logits, state_vars = model.apply(params, x, capture_intermediates=True)
    hidden_name = f"Dense_{len(m.hidden) - 1}"
    features = np.asarray(jax.nn.swish(state_vars["intermediates"][hidden_name]["__call__"][0]))
    clusters = np.asarray(jnp.argmax(logits, -1))
    radius = np.hypot(*np.asarray(x).T)
    keys = jax.random.split(jax.random.key(0), 2 * DRAWS).reshape(DRAWS, 2)
    invariance = np.mean(
        [
            invariance_loss(
                model.apply(params, augment(k1, x, config.augment.noise_std, 0)),
                model.apply(params, augment(k2, x, config.augment.noise_std, 0)),
            )
            for k1, k2 in keys
        ]
    )
    uniformity = float(uniformity_loss(logits))
    line = LogisticRegression().fit(np.asarray(x), clusters).score(np.asarray(x), clusters)
    half = len(rings) // 2
    probe_rings = LogisticRegression(max_iter=2000).fit(features[:half], rings[:half])
    e = np.asarray(energy(logits))
    return {
        "NMI against the rings": clustering.nmi(rings, clusters),
        "a line in the plane predicts the cluster": line,
        "hidden features tell the rings apart (held-out half)": probe_rings.score(
            features[half:], rings[half:]
        ),
        **{
            f"mean energy, {name}": float(e[(radius >= lo) & (radius < hi)].mean())
            for name, (lo, hi) in REGIONS.items()
            if ((radius >= lo) & (radius < hi)).any()
        },
        "uniformity term": uniformity,
        "invariance term": float(invariance),
        "0.5·uniformity + 0.05·invariance": 0.5 * uniformity + 0.05 * float(invariance),
    }


def crossings(noise_std: float) -> float:
    config = jaxlab.load_config("gedi:dataset=circles", {"seed": 0, "data.seed": 0})
    x = np.asarray(data_lib.load(config.data).test["x"])
    rng = np.random.default_rng(0)
    moved = x[None] + noise_std * rng.normal(size=(DRAWS, *x.shape))
    side = np.hypot(*x.T) > MIDWAY
    return float(np.mean((np.hypot(moved[..., 0], moved[..., 1]) > MIDWAY) != side[None]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where the two runs go (default: a temporary directory)")
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    results = {}
    with runs_directory(args.workdir) as workdir:
        for variant in ("full", "no_invariance"):
            config = jaxlab.load_config(
                f"gedi:dataset=circles,variant={variant}",
                {"seed": 0, "data.seed": 0, "train.steps": args.steps},
            )
            jaxlab.train(config, workdir / variant, quiet=True)
            results[variant] = probe(workdir / variant)
        noise = config.augment.noise_std
    print(f"| circles' test split, seed 0, {args.steps} steps | full | no_invariance |")
    print("|---|---|---|")
    for key in results["full"]:
        print(f"| {key} | {results['full'][key]:.3f} | {results['no_invariance'][key]:.3f} |")
    print(
        f"\nAugmentation (noise std {noise}): {crossings(noise):.4f} of the test points' augmented "
        f"copies cross radius {MIDWAY} (the midway between the rings)."
    )


if __name__ == "__main__":
    main()
