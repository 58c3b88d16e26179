"""The task's data: read the configured COCO splits, generating the embedded default first if needed.

No TensorFlow here, so a search can check its data before any trial starts.
"""

from __future__ import annotations

import os

from nas.tasks.detection.annotations import CocoSplit, read_coco
from nas.tasks.detection.config import DataConfig
from nas.tasks.detection.shapes import write_shapes_dataset
from nas.tasks.generated import generate_if_missing


def prepare_data(data: DataConfig, progress: bool = False) -> tuple[CocoSplit, CocoSplit]:
    """Read (and, for the embedded default, first generate) the train and val splits.

    With ``progress``, print each split's per-class object counts and what was skipped.
    """
    generate_if_missing(data, write_shapes_dataset, lambda: os.path.exists(data.path("train", "annotations")),
                        progress)
    train = read_coco(data.path("train", "annotations"), data.path("train", "images"), categories=data.categories,
                      keep_empty_categories=data.keep_empty_categories)
    val = read_coco(data.path("val", "annotations"), data.path("val", "images"), category_ids=train.category_ids,
                    categories=data.categories, class_names=train.category_names)
    if progress:
        print(f"train: {train.report()}\nval: {val.report()}", flush=True)
    return train, val
