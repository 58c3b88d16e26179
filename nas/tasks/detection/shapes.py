"""The embedded default dataset: generated shapes in COCO format.

Images of filled and hollow circles, squares, triangles and crosses on
noisy, textured backgrounds, with object sizes log-uniform from a few pixels
to most of the image, so every level from 3 to 7 has objects to find. Boxes
and areas come from the drawn masks, so they are exact. The same arguments
give the same bytes.

Layout written (what :mod:`nas.data` reads by default)::

    OUT/instances_train.json  OUT/train/000000.png ...
    OUT/instances_val.json    OUT/val/000000.png ...

Examples:
    >>> import tempfile
    >>> from nas.tasks.detection.shapes import write_shapes_dataset
    >>> counts = write_shapes_dataset(tempfile.mkdtemp(), train=4, val=2, image_size=64, seed=0)
    >>> counts["train_images"], counts["val_images"]
    (4, 2)
"""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
from PIL import Image

CATEGORIES = (
    "filled_circle", "hollow_circle", "filled_square", "hollow_square", "triangle", "cross",
)


def _disc(yy, xx, size):
    r = size / 2
    return (yy - r + 0.5) ** 2 + (xx - r + 0.5) ** 2 <= r * r


def _ring(yy, xx, size):
    r = size / 2
    d2 = (yy - r + 0.5) ** 2 + (xx - r + 0.5) ** 2
    inner = max(r - max(1.0, size * 0.18), 0)
    return (d2 <= r * r) & (d2 >= inner * inner)


def _square(yy, xx, size):
    return np.ones_like(yy, dtype=bool)


def _frame(yy, xx, size):
    t = max(1, int(round(size * 0.18)))
    return (yy < t) | (xx < t) | (yy >= size - t) | (xx >= size - t)


def _triangle(yy, xx, size):
    # Apex at the top centre, base along the bottom row.
    half_width = (yy + 1) / size * size / 2
    return np.abs(xx + 0.5 - size / 2) <= half_width


def _cross(yy, xx, size):
    t = max(1, int(round(size / 3)))
    lo = (size - t) // 2
    return ((yy >= lo) & (yy < lo + t)) | ((xx >= lo) & (xx < lo + t))


_DRAW: dict[str, Callable] = {
    "filled_circle": _disc, "hollow_circle": _ring, "filled_square": _square,
    "hollow_square": _frame, "triangle": _triangle, "cross": _cross,
}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 215, size=3)
    gradient = rng.uniform(-40, 40, size=(2, 3))
    freq, angle, amp = rng.uniform(2, 12), rng.uniform(0, np.pi), rng.uniform(5, 25)
    stripes = amp * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    image = (base + yy[..., None] * gradient[0] + xx[..., None] * gradient[1] + stripes[..., None]
             + rng.normal(0, rng.uniform(4, 14), size=(size, size, 3)))
    return image


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / min(a[2] * a[3], b[2] * b[3])


def render_image(rng: np.random.Generator, size: int, max_objects: int = 6,
                 min_object: int = 6, max_fraction: float = 0.8):
    """One image (uint8 HxWx3) and its objects as ``(category_index, [x, y, w, h], area)``."""
    image = _background(rng, size)
    count = int(rng.integers(1, max_objects + 1))
    sides = sorted((int(np.exp(rng.uniform(np.log(min_object), np.log(max_fraction * size))))
                    for _ in range(count)), reverse=True)
    # Largest first, and little overlap, so no object hides another one.
    placed, objects = [], []
    for side in sides:
        for _attempt in range(10):
            x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            if all(_overlap((x, y, side, side), other) < 0.25 for other in placed):
                break
        else:
            continue
        placed.append((x, y, side, side))
        category = int(rng.integers(len(CATEGORIES)))
        yy, xx = np.mgrid[0:side, 0:side]
        mask = _DRAW[CATEGORIES[category]](yy, xx, side)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        # A colour far from the local background keeps every object visible.
        local = image[y:y + side, x:x + side].mean()
        shade = rng.uniform(0, 60) if local > 128 else rng.uniform(195, 255)
        colour = np.clip(shade + rng.uniform(-30, 30, size=3), 0, 255)
        region = image[y:y + side, x:x + side]
        region[mask] = colour + rng.normal(0, 3, size=(int(mask.sum()), 3))
        box = [x + int(cols[0]), y + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
        objects.append((category, box, int(mask.sum())))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def write_shapes_dataset(out: str | os.PathLike, *, train: int = 1000, val: int = 200, image_size: int = 256,
                         seed: int = 0, max_objects: int = 6, progress: bool = False) -> dict:
    """Write the shapes dataset in COCO format under ``out``; returns image and object counts."""
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if train < 1 or val < 1:
        raise ValueError(f"need at least one train and one val image, got train={train}, val={val}")
    counts = {}
    for split, number, split_seed in (("train", train, seed), ("val", val, seed + 1_000_003)):
        rng = np.random.default_rng(split_seed)
        folder = os.path.join(out, split)
        os.makedirs(folder, exist_ok=True)
        images, annotations = [], []
        indices = range(number)
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"shapes {split}", unit="img")
        for index in indices:
            pixels, objects = render_image(rng, image_size, max_objects=max_objects)
            name = f"{index:06d}.png"
            Image.fromarray(pixels).save(os.path.join(folder, name), format="PNG", optimize=False)
            images.append({"id": index + 1, "file_name": name, "width": image_size, "height": image_size})
            for category, box, area in objects:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": index + 1, "category_id": category + 1,
                    "bbox": box, "area": area, "iscrowd": 0,
                })
        document = {
            "info": {"description": "spinenas generated shapes", "seed": seed, "image_size": image_size},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)],
        }
        with open(os.path.join(out, f"instances_{split}.json"), "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True)
        counts[f"{split}_images"] = number
        counts[f"{split}_objects"] = len(annotations)
    return counts
