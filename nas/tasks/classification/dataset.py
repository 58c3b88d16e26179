"""The task's data: read the configured image folders, generating the embedded default first if needed.

No TensorFlow here, so a search can check its data before any trial starts.
"""

from __future__ import annotations

import os

from nas.tasks.classification.config import DataConfig
from nas.tasks.classification.data import ImageFolderSplit, read_image_folder
from nas.tasks.generated import write_once


def prepare_data(data: DataConfig, progress: bool = False) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """Read (and, for the embedded default, first generate) the train and val splits."""
    if data.generate_shapes is not None and not os.path.isdir(data.split_dir("train")):
        _generate_shapes(data, progress)
    train = read_image_folder(data.split_dir("train"))
    val = read_image_folder(data.split_dir("val"), class_names=train.class_names)
    return train, val


def _generate_shapes(data: DataConfig, progress: bool) -> None:
    from nas.tasks.classification.shapes import write_shapes_dataset

    shapes = data.generate_shapes
    write_once(data.resolved_root,
               lambda folder: write_shapes_dataset(folder, train=shapes.train, val=shapes.val,
                                                   image_size=data.image_size, seed=shapes.seed, progress=progress),
               ready=lambda: os.path.isdir(data.split_dir("train")))
