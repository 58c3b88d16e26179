"""``spinenas data check``: what a dataset holds and whether the detection task can use it.

Reads both splits as training would (same category selection), and the
held-out test split the same way when there is one, then
reports images and objects per split and per class, what was skipped and
why, and object sizes at the configured ``image_size`` against the smallest
anchor: objects far below it (under a quarter of its side) are hard for the
detector to find, so they are flagged with what to change.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from nas.tasks.base import DataError
from nas.tasks.detection.annotations import read_coco
from nas.tasks.detection.config import DataConfig, HeadConfig

# An object whose side (square root of its box area) is below this fraction of the smallest anchor's side
# overlaps that anchor by IoU < 1/16 even when centred on it.
FAR_SMALLER = 0.25


@dataclasses.dataclass
class CheckReport:
    """The report's lines and whether the data can be trained on."""

    lines: list[str]
    usable: bool

    def __str__(self) -> str:
        return "\n".join(self.lines)


def object_sides(split, image_size: int) -> np.ndarray:
    """Side (sqrt of box area) of every object after the long side of its image is resized to ``image_size``."""
    sides = []
    for boxes, (height, width) in zip(split.boxes, split.image_sizes):
        scale = image_size / max(height, width)
        sides.append(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) * scale)
    return np.concatenate(sides) if sides else np.zeros(0)


def check_dataset(data: DataConfig, head: HeadConfig = HeadConfig(), min_level: int = 3) -> CheckReport:
    """Read and describe both splits of ``data``; ``usable`` is False when training could not start."""
    from nas.tasks.detection.dataset import prepare_data

    lines = [f"dataset {data.resolved_root} (checked at image_size {data.image_size})"]
    try:
        train, val = prepare_data(data)
    except DataError as err:
        return CheckReport(lines + [f"unusable: {err}"], False)
    anchor = head.smallest_anchor(min_level)
    usable = True
    splits = [("train", train), ("val", val)]
    if os.path.exists(data.path("test", "annotations")):
        try:
            splits.append(("test", read_coco(data.path("test", "annotations"), data.path("test", "images"),
                                             category_ids=train.category_ids, categories=data.categories,
                                             class_names=train.category_names)))
        except DataError as err:  # training never reads it, so the data stays usable
            lines.append(f"test: unusable: {err}")
    for name, split in splits:
        lines.append(f"{name}: {split.report()}")
        empty = sum(1 for b in split.boxes if len(b) == 0)
        if empty:
            lines.append(f"  {empty} images without objects (kept: background)")
        sides = object_sides(split, data.image_size)
        if sides.size:
            tiny = int((sides < FAR_SMALLER * anchor).sum())
            lines.append(f"  object sides at {data.image_size} px: min {sides.min():.1f}, median "
                         f"{np.median(sides):.1f}, max {sides.max():.1f} (smallest anchor {anchor:g} px)")
            if tiny:
                lines.append(f"  warning: {tiny} objects ({tiny / sides.size:.0%}) are under "
                             f"{FAR_SMALLER * anchor:g} px, far smaller than the smallest anchor; raise "
                             f"task.data.image_size or lower task.head.anchor_size")
        elif name != "train":
            lines.append("  warning: no objects to score")
    if len(train) < 2:
        usable = False
        lines.append(f"unusable: {len(train)} training image(s); training needs at least one batch")
    missing = [n for n, count in val.class_counts().items() if count == 0]
    if missing:
        lines.append(f"note: no validation objects of {', '.join(missing)}: their AP is not measured")
    lines.append("usable" if usable else "not usable")
    return CheckReport(lines, usable)
