"""Does the energy model learn the data's density? Checks a filled disc fails (host code).

"Energy on data below energy on uniform noise" holds for a model that has only learnt the data's
bounding region (on the circles: a filled disc, hole and gap included), so it cannot tell whether
the generative term did its job. These checks look where a density model and a region model
differ, away from the data but inside its range:

* `off_data`: the points of a uniform sample of the box that lie inside the convex hull of the
  training points but farther from every one of them than almost every test point does (its
  ``quantile`` of test-to-train nearest distances): for the circles, the hole and the gap
  between the rings; for the moons, the bays between them. Outside the hull a region model is
  right too, so those points are left out;
* `separation_auc`: the probability that such an off-data point has a higher energy than a test
  point (the ROC area of the energy as a data detector): 1 when the energy follows the data,
  near 0.5 or below for a filled disc, whose hole and gap are as low as the rings;
* `mmd`: the kernel two-sample distance (Gretton et al., JMLR 2012; Gaussian kernel, the median
  pairwise distance as bandwidth) between SGLD samples and held-out data: near 0 when the chains
  sample the data, as far as uniform noise when they do not move.
"""
import numpy as np
from scipy.spatial import Delaunay, cKDTree
from scipy.stats import mannwhitneyu

OFF_DATA_QUANTILE = 0.99


def off_data(points: np.ndarray, train: np.ndarray, test: np.ndarray,
             quantile: float = OFF_DATA_QUANTILE) -> np.ndarray:
    """The rows of ``points`` inside the convex hull of ``train`` and farther from every
    training point than the ``quantile`` of the test points' distances to their nearest
    training point."""
    tree = cKDTree(train)
    threshold = np.quantile(tree.query(test)[0], quantile)
    inside = Delaunay(train).find_simplex(points) >= 0
    return points[inside & (tree.query(points)[0] > threshold)]


def separation_auc(energy_off: np.ndarray, energy_data: np.ndarray) -> float:
    """P(E(off-data point) > E(data point)), ties counted half: the Mann-Whitney U of the
    off-data energies over the number of pairs."""
    statistic = mannwhitneyu(energy_off, energy_data).statistic
    return float(statistic / (len(energy_off) * len(energy_data)))


def mmd(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased squared maximum mean discrepancy between samples ``x`` and ``y`` under a
    Gaussian kernel whose width is the median distance between all the points (clipped at 0)."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    squared = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    bandwidth = np.median(squared[np.triu_indices(len(pooled), 1)])
    kernel = np.exp(-squared / bandwidth)
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    value = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy))
             / (m * (m - 1)) - 2 * kxy.mean())
    return float(max(value, 0.0))
