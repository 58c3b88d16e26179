"""The task's data: read the configured image folders, generating the embedded default first if needed.

No TensorFlow here, so a search can check its data before any trial starts.
"""

from __future__ import annotations

import os

from nas.tasks.classification.config import DataConfig
from nas.tasks.classification.data import ImageFolderSplit, read_image_folder
from nas.tasks.classification.shapes import write_shapes_dataset
from nas.tasks.generated import generate_if_missing


def prepare_data(data: DataConfig, progress: bool = False) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """Read (and, for the embedded default, first generate) the train and val splits."""
    generate_if_missing(data, write_shapes_dataset, lambda: os.path.isdir(data.split_dir("train")), progress)
    train = read_image_folder(data.split_dir("train"))
    val = read_image_folder(data.split_dir("val"), class_names=train.class_names)
    return train, val
