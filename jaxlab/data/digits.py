"""scikit-learn's bundled handwritten digits: 1,797 8x8 grey images of 10 classes.

Read straight from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``: one image
per row, 64 pixel values 0..16 then the label), the file its ``load_digits`` reads: importing
scikit-learn itself takes about 2 s, a third of a warm ``jaxlab train`` start-up.
"""

import importlib.util
import pathlib

import numpy as np

from jaxlab.data.dataset import Dataset, split_by_permutation
from jaxlab.errors import UserError


def bundled_file() -> pathlib.Path:
    """The path of scikit-learn's digits file, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UserError(
            "the digits data set comes with scikit-learn, which is not installed; "
            "reinstall jaxlab's dependencies: pip install -e ."
        )
    path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise UserError(
            f"scikit-learn's digits file {path} does not exist; reinstall "
            f"scikit-learn: pip install --force-reinstall scikit-learn"
        )
    return path


def load(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """Images ``x`` (N, 8, 8, 1) float32 in [0, 1] and labels ``label`` (N,) int32, split at
    random into train/test."""
    table = np.loadtxt(bundled_file(), delimiter=",")
    images = (table[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)[..., None]
    labels = table[:, -1].astype(np.int32)
    return split_by_permutation({"x": images, "label": labels}, test_fraction, split_seed)
