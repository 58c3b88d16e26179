"""The embedded default dataset: one shape per image, ten classes of size x shape.

Each image holds a single disc, square, triangle, cross or ring, either small
(14-24% of the image side) or large (40-62%), on a noisy background of
gradients and stripes. Telling the ten classes apart needs both the shape and
its scale, so a backbone must see fine detail and whole-image extent. Classes
are dealt round-robin, so every class gets the same count (give or take one).
The same arguments give the same bytes.

Layout written (the Keras image-folder convention that :mod:`.data` reads)::

    OUT/train/large_cross/000003.png ...
    OUT/val/small_disc/000000.png ...

Examples:
    >>> import tempfile
    >>> counts = write_shapes_dataset(tempfile.mkdtemp(), train=20, val=10, image_size=64, seed=0)
    >>> counts["train"], counts["val"], len(CLASSES)
    (20, 10, 10)
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
from PIL import Image

SHAPES = ("disc", "square", "triangle", "cross", "ring")
# Side of the shape as a fraction of the image side; the gap between the ranges stays wider than
# the training crop jitter can close (a crop of 75% of the area zooms by at most 1.155x).
SIZES = {"small": (0.14, 0.24), "large": (0.40, 0.62)}
CLASSES = tuple(f"{size}_{shape}" for size in SIZES for shape in SHAPES)


def _centred(side: int):
    # Pixel centres relative to the middle of a side x side box, in units of the side.
    c = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
    return c[:, None], c[None, :]


def _disc(side: int) -> np.ndarray:
    yy, xx = _centred(side)
    return yy**2 + xx**2 <= 0.25


def _ring(side: int) -> np.ndarray:
    yy, xx = _centred(side)
    r2 = yy**2 + xx**2
    inner = 0.5 - max(0.2, 1.5 / side)  # at least a pixel and a half thick at any size
    return (r2 <= 0.25) & (r2 >= inner**2)


def _square(side: int) -> np.ndarray:
    return np.ones((side, side), dtype=bool)


def _triangle(side: int) -> np.ndarray:
    yy, xx = _centred(side)
    # Apex at the top centre, base along the bottom: half-width grows linearly downwards.
    return np.abs(xx) <= (yy + 0.5) / 2


def _cross(side: int) -> np.ndarray:
    yy, xx = _centred(side)
    arm = 1 / 6
    return (np.abs(yy) <= arm) | (np.abs(xx) <= arm)


_MASKS: dict[str, Callable[[int], np.ndarray]] = {
    "disc": _disc, "square": _square, "triangle": _triangle, "cross": _cross, "ring": _ring,
}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(50, 205, size=3)
    slope = rng.uniform(-50, 50, size=(2, 3))
    period, angle, amplitude = rng.uniform(0.05, 0.4), rng.uniform(0, np.pi), rng.uniform(3, 15)
    waves = amplitude * np.sin(2 * np.pi / period * (np.cos(angle) * xx + np.sin(angle) * yy))
    noise = rng.normal(0, rng.uniform(2, 8), size=(size, size, 3))
    return base + yy[..., None] * slope[0] + xx[..., None] * slope[1] + waves[..., None] + noise


def render_image(rng: np.random.Generator, size: int, label: int) -> np.ndarray:
    """One ``size`` x ``size`` RGB image (uint8) of class ``CLASSES[label]``."""
    scale, shape = CLASSES[label].split("_")
    low, high = SIZES[scale]
    side = max(3, int(round(rng.uniform(low, high) * size)))
    # Rotating by quarter turns only changes the triangle, which then points any of four ways.
    mask = np.rot90(_MASKS[shape](side), k=int(rng.integers(4)))
    image = _background(rng, size)
    margin = 2
    y, x = (int(v) for v in rng.integers(margin, size - side - margin + 1, size=2))
    region = image[y:y + side, x:x + side]
    # A shade far from the local background keeps the shape visible at any contrast.
    shade = rng.uniform(10, 70) if region.mean() > 128 else rng.uniform(185, 245)
    colour = shade + rng.uniform(-25, 25, size=3)
    region[mask] = colour + rng.normal(0, 4, size=(int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_shapes_dataset(out: str | os.PathLike, *, train: int = 1000, val: int = 200, image_size: int = 128,
                         seed: int = 0, progress: bool = False) -> dict:
    """Write the shapes dataset as image folders under ``out``; returns the image count of each split."""
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    if train < len(CLASSES) or val < 1:
        raise ValueError(f"need one train image per class ({len(CLASSES)}) and one val image, "
                         f"got train={train}, val={val}")
    counts = {}
    # Separate generators per split, so growing one split never changes the other's images.
    for split, number, split_seed in (("train", train, seed), ("val", val, seed + 1_000_003)):
        rng = np.random.default_rng(split_seed)
        for name in CLASSES:
            os.makedirs(os.path.join(out, split, name), exist_ok=True)
        indices = range(number)
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"shapes {split}", unit="img")
        for index in indices:
            label = index % len(CLASSES)
            pixels = render_image(rng, image_size, label)
            path = os.path.join(out, split, CLASSES[label], f"{index:06d}.png")
            Image.fromarray(pixels).save(path, format="PNG", optimize=False)
        counts[split] = number
    return counts
