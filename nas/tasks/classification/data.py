"""Image-folder classification data as ``tf.data`` pipelines.

:func:`read_image_folder` lists one split laid out in the Keras image-folder
convention (``split/<class>/<image>``), in sorted order, so labels are the
sorted class names' indices. :func:`make_dataset` turns it into batches:
decode (grey and RGBA become RGB), resize the short side to the target size,
keep the decoded images in memory, then crop a square (centred for
evaluation; at a random place and scale for training, with random left-right
flips) and scale pixels to [-1, 1].

Only :func:`make_dataset` needs TensorFlow, so a search can check its data
before any trial starts.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from nas.tasks.augmentation import augmented_per_example
from nas.tasks.base import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass
class ImageFolderSplit:
    """One split: image paths, their labels, and the class names the labels index."""

    root: str
    paths: list[str]
    labels: list[int]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        """Number of classes (labels 0..C-1), as the training split defines them."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def summary(self) -> str:
        """One line: images and classes."""
        present = len(set(self.labels))
        classes = f"{self.num_classes} classes" if present == self.num_classes else \
            f"{present} of {self.num_classes} classes"
        return f"{len(self)} images, {classes}"


def read_image_folder(root: str, class_names: Optional[Sequence[str]] = None) -> ImageFolderSplit:
    """List the images under ``root/<class>/``; ``class_names`` fixes the labels (pass the train split's).

    Without ``class_names`` every sub-folder is a class and must hold an image;
    with them, ``root`` may lack some classes but may not add new ones.
    """
    if not os.path.isdir(root):
        raise DataError(f"{root}: image folder not found (expected {root}/<class>/<image>)")
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    names = list(class_names) if class_names is not None else folders
    index = {name: i for i, name in enumerate(names)}
    unknown = [name for name in folders if name not in index]
    if unknown:
        raise DataError(f"{root}: class folder(s) {unknown} are not among the training classes")
    paths, labels = [], []
    for name in folders:
        folder = os.path.join(root, name)
        files = sorted(entry.name for entry in os.scandir(folder)
                       if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS))
        if not files and class_names is None:
            raise DataError(f"{folder}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(os.path.join(folder, f) for f in files)
        labels.extend([index[name]] * len(files))
    if not paths:
        raise DataError(f"{root}: no images in any class folder ({', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolderSplit(root, paths, labels, names)


def make_dataset(split: ImageFolderSplit, *, image_size: int, batch_size: int, training: bool,
                 crop_area: Sequence[float] = (0.75, 1.0), flip: bool = True, seed: int = 0):
    """Batches of ``(images [B, S, S, 3] float32 in [-1, 1], labels [B] int32)``.

    Training batches are shuffled, augmented and all full; evaluation keeps
    the order and the last, partial batch.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((split.paths, tf.constant(split.labels, tf.int32)))
    ds = ds.map(lambda path, label: (_load(path, image_size), label), num_parallel_calls=tf.data.AUTOTUNE)
    # Decoding dominates the input cost; resized images are small enough to keep for every epoch.
    ds = ds.cache()
    if training:
        ds = augmented_per_example(
            ds, len(split), seed,
            lambda example, example_seed: (_random_crop(example[0], image_size, crop_area, flip, example_seed),
                                           example[1]))
    else:
        ds = ds.map(lambda image, label: (_centre_crop(image, image_size), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda image, label: (tf.cast(image, tf.float32) / 127.5 - 1.0, label),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def _load(path, image_size: int):
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = image_size / tf.reduce_min(shape)
    size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), image_size)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _centre_crop(image, image_size: int):
    import tensorflow as tf

    shape = tf.shape(image)
    top, left = (shape[0] - image_size) // 2, (shape[1] - image_size) // 2
    return tf.image.crop_to_bounding_box(image, top, left, image_size, image_size)


def _random_crop(image, image_size: int, crop_area: Sequence[float], flip: bool, seed):
    """A random square crop scaled to ``image_size``, maybe flipped, every random number drawn from ``seed``."""
    import tensorflow as tf

    area_seed, top_seed, left_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    shape = tf.shape(image)
    low, high = crop_area
    # A square holding a random fraction of the short side's square, placed anywhere, scaled back up.
    side = tf.cast(tf.round(image_size * tf.sqrt(tf.random.stateless_uniform([], area_seed, low, high))), tf.int32)
    side = tf.clip_by_value(side, 1, image_size)
    top = tf.random.stateless_uniform([], top_seed, 0, shape[0] - side + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], left_seed, 0, shape[1] - side + 1, dtype=tf.int32)
    crop = tf.image.crop_to_bounding_box(image, top, left, side, side)
    crop = tf.image.resize(crop, [image_size, image_size], method="bilinear")
    if flip:
        crop = tf.image.stateless_random_flip_left_right(crop, flip_seed)
    return tf.cast(tf.clip_by_value(tf.round(crop), 0, 255), tf.uint8)
