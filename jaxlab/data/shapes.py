"""Shapes: a procedurally generated 10-class image set, 16x16 grey, of any size, made in code.

`load` (``config.data.loader = "jaxlab.data.shapes:load"``) returns ``num_train`` and ``num_test``
images ``x`` with labels ``label``, a fixed function of ``seed``; `generate` draws them.
"""

import numpy as np

from jaxlab.data.dataset import Dataset
from jaxlab.errors import UserError

SIDE = 16
CLASSES = (
    "disc",
    "ring",
    "square",
    "square outline",
    "triangle",
    "plus",
    "cross",
    "horizontal bars",
    "vertical bars",
    "L corner",
)
TRAIN_STREAM, TEST_STREAM = 0, 1


def load(num_train: int = 10_000, num_test: int = 2_000, seed: int = 0) -> Dataset:
    for key, value in (("num_train", num_train), ("num_test", num_test)):
        if value < 1:
            raise UserError(f"config.data.{key}={value}: the shapes set needs at least one image")
    return Dataset(
        train=generate(num_train, np.random.default_rng([seed, TRAIN_STREAM])),
        test=generate(num_test, np.random.default_rng([seed, TEST_STREAM])),
    )


def generate(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` images with balanced labels in a random order, drawn from ``rng``."""
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    centre_N2 = SIDE / 2 - 0.5 + rng.uniform(-2.5, 2.5, (n, 2))
    size = rng.uniform(3.0, 5.0, n)
    angle = np.deg2rad(rng.uniform(-20.0, 20.0, n))
    stroke = rng.uniform(0.6, 1.0, n)
    contrast = rng.uniform(0.6, 1.0, n)
    grid_2P = np.stack(np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="xy")).reshape(2, -1)
    offset_N2P = grid_2P[None] - centre_N2[:, :, None]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    u = cos * offset_N2P[:, 0] + sin * offset_N2P[:, 1]  # the shape's own axes, rotated by -angle
    v = -sin * offset_N2P[:, 0] + cos * offset_N2P[:, 1]  # v points down the image
    distance_NP = np.empty_like(u)
    for k in range(len(CLASSES)):
        rows = labels == k
        distance_NP[rows] = _signed_distance(
            k, u[rows], v[rows], size[rows, None], stroke[rows, None]
        )
    shape_NP = np.clip(0.5 - distance_NP, 0.0, 1.0) * contrast[:, None]
    image_NP = np.clip(shape_NP + _background(rng, n, grid_2P), 0.0, 1.0)
    images = image_NP.reshape(n, SIDE, SIDE, 1).astype(np.float32)
    return {"x": images, "label": labels.astype(np.int32)}


def _background(rng: np.random.Generator, n: int, grid_2P: np.ndarray) -> np.ndarray:
    """A linear gradient, a distractor blob and pixel noise: (n, SIDE²)."""
    direction = rng.uniform(0, 2 * np.pi, n)
    slope_N2 = rng.uniform(0, 0.3, n)[:, None] * np.stack([np.cos(direction), np.sin(direction)], 1)
    gradient = rng.uniform(0, 0.2, n)[:, None] + slope_N2 @ (grid_2P / (SIDE - 1) - 0.5)
    blob_centre_N2 = rng.uniform(0, SIDE - 1, (n, 2))
    blob_width = rng.uniform(0.8, 1.2, n)[:, None]
    squared_distance = ((grid_2P[None] - blob_centre_N2[:, :, None]) ** 2).sum(axis=1)
    blob = rng.uniform(0.3, 0.7, n)[:, None] * np.exp(-squared_distance / (2 * blob_width**2))
    noise = rng.uniform(0.05, 0.15, n)[:, None] * rng.standard_normal((n, SIDE * SIDE))
    return gradient + blob + noise


def _box(u, v, half_u, half_v):
    """Signed distance (inside < 0) to an axis-aligned box, exact outside the corners' regions."""
    return np.maximum(np.abs(u) - half_u, np.abs(v) - half_v)


def _signed_distance(k: int, u, v, r, w):
    """Signed distance (px, inside < 0) to shape ``k`` of half-extent ``r`` and stroke half-width
    ``w``, at the shape's own coordinates (u, v)."""
    radius = np.hypot(u, v)
    side = 0.85 * r  # a square of about the disc's area
    if k == 0:
        return radius - r
    if k == 1:
        return np.abs(radius - (r - w)) - w
    if k == 2:
        return _box(u, v, side, side)
    if k == 3:
        return np.abs(_box(u, v, side - w, side - w)) - w
    if (
        k == 4
    ):  # apex up at (0, -r), base at v = 0.7 r from -r to r: the largest of 3 edge distances
        base = v - 0.7 * r
        slant = (1.7 * np.abs(u) - v - r) / np.hypot(1.7, 1.0)  # through (0, -r), (±r, 0.7 r)
        return np.maximum(base, slant)
    if k in (5, 6):
        if k == 6:  # the plus turned by 45°
            u, v = (u + v) / np.sqrt(2), (v - u) / np.sqrt(2)
        return np.minimum(_box(u, v, r, w), _box(u, v, w, r))
    if k == 7:
        return np.minimum(_box(u, v - r / 2, r, w), _box(u, v + r / 2, r, w))
    if k == 8:
        return np.minimum(_box(u - r / 2, v, w, r), _box(u + r / 2, v, w, r))
    return np.minimum(_box(u + r - w, v, w, r), _box(u, v - r + w, r, w))  # L: left and bottom bars
