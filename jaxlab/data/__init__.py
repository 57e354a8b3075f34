"""Datasets as in-memory arrays, and batches as a pure function of (key, step)."""
from jaxlab.data.dataset import Dataset
from jaxlab.data.sampling import batch_indices, sample_batch

__all__ = ["Dataset", "batch_indices", "sample_batch"]
