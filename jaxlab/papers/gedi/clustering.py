"""Scores of a clustering against true labels (host code: NumPy, SciPy, scikit-learn)."""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score


def nmi(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Normalised mutual information (scikit-learn's, arithmetic normalisation), in [0, 1]."""
    return float(normalized_mutual_info_score(labels, clusters))


def hungarian_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one map from clusters to labels (Hungarian algorithm).

    With more clusters than labels, points of unmatched clusters count as errors.
    """
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    contingency = np.zeros((clusters.max() + 1, labels.max() + 1), np.int64)
    np.add.at(contingency, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    return float(contingency[rows, cols].sum() / len(labels))


def cluster_entropy(clusters: np.ndarray, num_clusters: int) -> float:
    """Entropy of the cluster usage over log K: 1 for equally used clusters, 0 for one cluster."""
    usage = np.bincount(np.asarray(clusters), minlength=num_clusters) / len(clusters)
    used = usage[usage > 0]
    return float(-(used * np.log(used)).sum() / np.log(num_clusters)) + 0.0  # no -0.0
