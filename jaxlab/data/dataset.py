"""The in-memory dataset every task works with."""
import dataclasses

import numpy as np

from jaxlab.errors import UserError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test splits, each a dict of arrays that share their leading (example) axis."""
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]

    @property
    def num_train(self) -> int:
        return len(next(iter(self.train.values())))


def split_by_permutation(arrays: dict[str, np.ndarray], test_fraction: float,
                         seed: int) -> Dataset:
    """A reproducible random train/test split of ``arrays`` (the test split is never trained on)."""
    n = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(n)
    num_test = int(round(n * test_fraction))
    if not 0 < num_test < n:
        raise UserError(f"a test fraction of {test_fraction} of {n} examples leaves an empty "
                        f"train or test split")
    test_idx, train_idx = order[:num_test], order[num_test:]
    return Dataset(train={k: v[train_idx] for k, v in arrays.items()},
                   test={k: v[test_idx] for k, v in arrays.items()})
