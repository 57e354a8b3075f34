"""Two-dimensional clustering benchmarks: scikit-learn's two moons and concentric circles.

The GEDI paper (Sansone & Manhaeve, arXiv 2401.00873, Sec. 6 "synthetic data", Table 2) evaluates
clustering on these two generators. Train and test points are drawn independently from the
generator with fixed seeds (``seed`` and ``seed + 1``), so the test split is never trained on.
"""

import numpy as np
from sklearn import datasets

from jaxlab.data.dataset import Dataset
from jaxlab.errors import UserError

SHAPES = ("moons", "circles")


def _generate(shape: str, n: int, noise: float, factor: float, seed: int):
    if shape == "moons":
        return datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    return datasets.make_circles(n_samples=n, noise=noise, factor=factor, random_state=seed)


def load(
    shape: str = "moons",
    num_train: int = 2000,
    num_test: int = 1000,
    noise: float = 0.1,
    factor: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Points ``x`` (N, 2) float32 and their generating component ``label`` (N,) int32.

    ``noise`` is the std of the Gaussian noise the generator adds; ``factor`` is the ratio of the
    inner to the outer radius (circles only).
    """
    if shape not in SHAPES:
        raise UserError(f"config.data.shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    if num_train <= 0 or num_test <= 0:
        raise UserError(
            f"config.data.num_train and num_test must be positive, got {num_train} and {num_test}"
        )
    splits = {}
    for name, n, split_seed in (("train", num_train, seed), ("test", num_test, seed + 1)):
        x, label = _generate(shape, n, noise, factor, split_seed)
        splits[name] = {"x": x.astype(np.float32), "label": label.astype(np.int32)}
    return Dataset(**splits)
