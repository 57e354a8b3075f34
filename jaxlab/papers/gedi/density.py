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
* the fraction of SGLD samples `far_from_data`: 1 - ``quantile`` (1%) for samples of the
  data's own distribution, more when the chains also fill the hole and the gap (5% for points
  uniform in the circles' disc), about half for uniform noise over the box. (A kernel MMD with
  the usual median-distance bandwidth, and the mean distance to the nearest data point, were
  tried first: neither told a filled disc from the rings clearly.)
"""

import numpy as np
from scipy.spatial import Delaunay, cKDTree
from scipy.stats import mannwhitneyu

OFF_DATA_QUANTILE = 0.99


def far_from_data(
    points: np.ndarray, train: np.ndarray, test: np.ndarray, quantile: float = OFF_DATA_QUANTILE
) -> np.ndarray:
    """Whether each of ``points`` is farther from every training point than the ``quantile`` of
    the test points' distances to their nearest training point."""
    tree = cKDTree(train)
    return tree.query(points)[0] > np.quantile(tree.query(test)[0], quantile)


def off_data(points: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The rows of ``points`` inside the convex hull of ``train`` and `far_from_data`."""
    inside = Delaunay(train).find_simplex(points) >= 0
    return points[inside & far_from_data(points, train, test)]


def separation_auc(energy_off: np.ndarray, energy_data: np.ndarray) -> float:
    """P(E(off-data point) > E(data point)), ties counted half: the Mann-Whitney U of the
    off-data energies over the number of pairs."""
    statistic = mannwhitneyu(energy_off, energy_data).statistic
    return float(statistic / (len(energy_off) * len(energy_data)))
