"""scikit-learn's bundled handwritten digits: 1,797 8x8 grey images of 10 classes.

Read straight from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``: one image
per row, 64 pixel values 0..16 then the label), the file its ``load_digits`` reads, without
importing scikit-learn (`jaxlab.data.bundled`).
"""

import numpy as np

from jaxlab.data.bundled import package_file
from jaxlab.data.dataset import Dataset, split_by_permutation


def load(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """Images ``x`` (N, 8, 8, 1) float32 in [0, 1] and labels ``label`` (N,) int32, split at
    random into train/test."""
    table = np.loadtxt(
        package_file(
            "sklearn",
            "datasets/data/digits.csv.gz",
            "digits",
            "pip install -e . (jaxlab's dependencies)",
        ),
        delimiter=",",
    )
    images = (table[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)[..., None]
    labels = table[:, -1].astype(np.int32)
    return split_by_permutation({"x": images, "label": labels}, test_fraction, split_seed)
