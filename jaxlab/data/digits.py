"""scikit-learn's bundled handwritten digits: 1,797 8x8 grey images of 10 classes."""
import numpy as np
from sklearn.datasets import load_digits as _sklearn_digits

from jaxlab.data.dataset import Dataset, split_by_permutation


def load(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """Images (N, 8, 8, 1) float32 in [0, 1] and labels (N,) int32, split at random into train/test."""
    digits = _sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    return split_by_permutation({"image": images, "label": labels}, test_fraction, split_seed)
