"""MNIST from the four IDX files of its distribution in a directory (nothing is downloaded).

`load` (``config.data.loader = "jaxlab.data.mnist:load"``) returns images ``x`` and labels
``label`` of the official train/test split, every file checked first; `read_idx` reads one file.
"""

import gzip

import numpy as np
from etils import epath

from jaxlab import paths
from jaxlab.data.dataset import Dataset
from jaxlab.errors import UserError

UNSIGNED_BYTE = 0x08  # the IDX type code of MNIST's values
SIDE = 28  # MNIST's images are SIDE x SIDE pixels
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load(directory: str = "data/mnist") -> Dataset:
    root = paths.path(directory, "config.data.directory")
    expected = ", ".join(f"{name}[.gz]" for pair in FILES.values() for name in pair)
    if not root.is_dir():
        raise UserError(
            f"MNIST directory {root} does not exist; expected it to hold the four IDX "
            f"files {expected} (set config.data.directory)"
        )
    splits = {}
    for split, (images_name, labels_name) in FILES.items():
        images_path = _find(root, images_name, expected)
        images = read_idx(images_path, ndim=3)
        if not len(images):
            raise UserError(f"{images_path} holds no images, expected at least one")
        if images.shape[1:] != (SIDE, SIDE):
            raise UserError(
                f"{images_path} holds images of {images.shape[1]}x{images.shape[2]} "
                f"pixels (shape {images.shape}), expected MNIST's {SIDE}x{SIDE}"
            )
        labels = read_idx(_find(root, labels_name, expected), ndim=1)
        if len(images) != len(labels):
            raise UserError(
                f"MNIST {split} split in {root}: {len(images)} images but {len(labels)} labels"
            )
        if labels.max() > 9:
            raise UserError(f"MNIST {split} labels in {root} hold {labels.max()}, expected 0..9")
        splits[split] = {"x": images[..., None], "label": labels.astype(np.int32)}
    return Dataset(train=splits["train"], test=splits["test"])


def _find(root: epath.Path, name: str, expected: str) -> epath.Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"MNIST file {name} (or {name}.gz) is missing from {root}; "
        f"expected the four IDX files {expected}"
    )


def read_idx(path: epath.Path, ndim: int) -> np.ndarray:
    """The uint8 array of shape (n, ...) with ``ndim`` dimensions stored in ``path``."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{path} is not an IDX file (it does not start with the IDX magic number)")
    if raw[2] != UNSIGNED_BYTE:
        raise UserError(f"{path}: IDX type byte 0x{raw[2]:02x}, expected 0x08 (unsigned bytes)")
    if raw[3] != ndim:
        raise UserError(f"{path}: IDX file of {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated: {len(raw)} bytes, shorter than its IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise UserError(
            f"{path} is {state}: {len(raw)} bytes, expected {expected} for shape {shape}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: epath.Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path} is not a readable gzip file ({error})") from None
