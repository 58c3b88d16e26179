"""Detection splits as ``tf.data`` pipelines of model inputs and padded targets.

:func:`make_dataset` turns a :class:`~nas.tasks.detection.annotations.CocoSplit`
into batches: decode (PIL: any mode, EXIF orientation applied), resize the
long side to the target size and pad to a square (or read those pixels from
the cache), then (for training) shuffle, random horizontal flips and scale
jitter.

Boxes are ``(ymin, xmin, ymax, xmax)`` in pixels of the padded square image;
padding rows have class -1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nas.tasks.augmentation import augmented_per_example
from nas.tasks.detection.annotations import CocoSplit
from nas.tasks.detection.augment import augment
from nas.tasks.detection.pixel_cache import build_image_cache, load_resized, resized_sizes

# Cached images up to this size enter tf.data as one in-memory tensor; larger ones are read per image.
_IN_GRAPH_BYTES = 1 << 30


def _padded(split: CocoSplit, max_instances: int):
    boxes = np.zeros((len(split), max_instances, 4), np.float32)
    labels = np.full((len(split), max_instances), -1, np.int32)
    truncated = 0
    for i, (b, l) in enumerate(zip(split.boxes, split.labels)):
        n = min(len(b), max_instances)
        truncated += len(b) - n
        boxes[i, :n], labels[i, :n] = b[:n], l[:n]
    if truncated:
        split.skipped["objects beyond max_instances"] = truncated
    return boxes, labels


def make_dataset(split: CocoSplit, *, image_size: int, batch_size: int, training: bool,
                 max_instances: int = 32, scale_jitter: Sequence[float] = (0.8, 1.2), flip: bool = True,
                 seed: int = 0, cache: bool = True, disk_cache: bool = False):
    """Batches of ``(images [B, S, S, 3] in [-1, 1], targets)`` for training or evaluation.

    ``targets`` holds ``boxes`` [B, M, 4], ``classes`` [B, M] (-1 for padding),
    ``image_id`` [B] and ``scale`` [B] (resized / original size, to map
    detections back to the original image). With ``disk_cache`` the resized
    images come from :func:`build_image_cache` (decoded once per dataset and
    size, not once per trial); the pixels and the augmentation are the same.
    """
    import tensorflow as tf

    boxes, labels = _padded(split, max_instances)
    scales, targets = resized_sizes(split, image_size)
    cached = build_image_cache(split, image_size) if disk_cache else None
    columns = {
        "boxes": boxes * scales[:, None, None], "classes": labels,
        "image_id": np.array(split.image_ids, np.int64), "scale": scales.astype(np.float32),
    }
    if cached is not None:
        images = np.load(cached, mmap_mode="r")
        if images.nbytes <= _IN_GRAPH_BYTES:
            # Small enough to enter the pipeline as one tensor: no Python call per image.
            ds = tf.data.Dataset.from_tensor_slices({**columns, "image": np.asarray(images)})
        else:
            # Too big for memory: read each image from the memory-mapped file.
            def read(item):
                image = tf.numpy_function(lambda i: np.asarray(images[i]), [item["index"]], tf.uint8, stateful=False)
                item = dict(item, image=tf.ensure_shape(image, [image_size, image_size, 3]))
                del item["index"]
                return item

            ds = tf.data.Dataset.from_tensor_slices({**columns, "index": np.arange(len(split))})
            ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _batches(ds, len(split), training, image_size, batch_size, scale_jitter, flip, seed)
    ds = tf.data.Dataset.from_tensor_slices({
        "path": np.array(split.image_paths), **columns, "size": targets,
    })

    def load(item):
        # PIL, not tf.io.decode_image: it applies EXIF orientation, reads CMYK JPEGs, 16-bit and palette
        # PNGs, and decodes large JPEGs at a reduced scale; only the resized image is ever cached.
        image = tf.numpy_function(load_resized, [item["path"], item["size"]], tf.uint8, stateful=False)
        image = tf.ensure_shape(image, [None, None, 3])
        image = tf.image.pad_to_bounding_box(image, 0, 0, image_size, image_size)
        item = dict(item)
        del item["size"]
        item["image"] = image
        return item

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
    return _batches(ds, len(split), training, image_size, batch_size, scale_jitter, flip, seed)


def _batches(ds, count: int, training: bool, image_size: int, batch_size: int, scale_jitter, flip: bool, seed):
    """Decoded items -> shuffled and augmented when ``training`` -> model inputs -> prefetched batches."""
    import tensorflow as tf

    if training:
        ds = augmented_per_example(ds, min(count, 4096), seed,
                                   lambda item, example_seed: augment(item, image_size, scale_jitter, flip,
                                                                      example_seed))
    ds = ds.map(_finish, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def _finish(item):
    import tensorflow as tf

    image = tf.cast(item["image"], tf.float32) / 127.5 - 1.0
    return image, {k: item[k] for k in ("boxes", "classes", "image_id", "scale")}
