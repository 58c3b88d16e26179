"""The task's data: read the configured COCO splits, generating the embedded default first if needed.

No TensorFlow here, so a search can check its data before any trial starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from nas.tasks.detection.data import CocoSplit, read_coco
from nas.tasks.detection.config import DataConfig


def prepare_data(data: DataConfig, progress: bool = False) -> tuple[CocoSplit, CocoSplit]:
    """Read (and, for the embedded default, first generate) the train and val splits.

    With ``progress``, print each split's per-class object counts and what was skipped.
    """
    if data.generate_shapes is not None and not os.path.exists(data.path("train", "annotations")):
        _generate_shapes(data, progress)
    train = read_coco(data.path("train", "annotations"), data.path("train", "images"), categories=data.categories,
                      keep_empty_categories=data.keep_empty_categories)
    val = read_coco(data.path("val", "annotations"), data.path("val", "images"), category_ids=train.category_ids,
                    categories=data.categories, class_names=train.category_names)
    if progress:
        print(f"train: {train.report()}\nval: {val.report()}", flush=True)
    return train, val


def _generate_shapes(data: DataConfig, progress: bool) -> None:
    from nas.tasks.detection.shapes import write_shapes_dataset

    root = data.resolved_root
    parent = os.path.dirname(os.path.abspath(root)) or "."
    os.makedirs(parent, exist_ok=True)
    # Write beside the target and rename, so concurrent workers never read a half-written dataset.
    staging = tempfile.mkdtemp(prefix=".shapes-", dir=parent)
    try:
        shapes = data.generate_shapes
        write_shapes_dataset(staging, train=shapes.train, val=shapes.val, image_size=data.image_size,
                             seed=shapes.seed, progress=progress)
        try:
            os.rename(staging, root)
        except OSError:
            if not os.path.exists(data.path("train", "annotations")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
