"""The task's data: read the configured image folders, generating the embedded default first if needed.

No TensorFlow here, so a search can check its data before any trial starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from nas.tasks.classification.config import DataConfig
from nas.tasks.classification.data import ImageFolderSplit, read_image_folder


def prepare_data(data: DataConfig, progress: bool = False) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """Read (and, for the embedded default, first generate) the train and val splits."""
    if data.generate_shapes is not None and not os.path.isdir(data.split_dir("train")):
        _generate_shapes(data, progress)
    train = read_image_folder(data.split_dir("train"))
    val = read_image_folder(data.split_dir("val"), class_names=train.class_names)
    return train, val


def _generate_shapes(data: DataConfig, progress: bool) -> None:
    from nas.tasks.classification.shapes import write_shapes_dataset

    root = data.resolved_root
    parent = os.path.dirname(os.path.abspath(root)) or "."
    os.makedirs(parent, exist_ok=True)
    # Write beside the target and rename, so concurrent workers never read a half-written dataset.
    staging = tempfile.mkdtemp(prefix=".classes-shapes-", dir=parent)
    try:
        shapes = data.generate_shapes
        write_shapes_dataset(staging, train=shapes.train, val=shapes.val, image_size=data.image_size,
                             seed=shapes.seed, progress=progress)
        try:
            os.rename(staging, root)
        except OSError:
            # Another worker finished first (its rename won); anything else is a real failure.
            if not os.path.isdir(data.split_dir("train")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
