"""COCO-format detection data as ``tf.data`` pipelines.

:func:`read_coco` reads an instances JSON and its image folder into plain
arrays, checking every annotation: annotations that cannot be used (a missing
image file, a box with no area, an unknown image or category id, a crowd
region) are skipped and counted, and a file with nothing usable is an error.
:func:`make_dataset` turns that into batches: decode, resize the long side to
the target size and pad to a square, then (for training) random horizontal
flips and scale jitter.

Boxes are ``(ymin, xmin, ymax, xmax)`` in pixels of the padded square image;
padding rows have class -1.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Sequence

import numpy as np


class DataError(ValueError):
    """A dataset that cannot be read; the message names the file and the problem."""


@dataclasses.dataclass
class CocoSplit:
    """One split of a COCO-format dataset, checked and flattened to arrays."""

    annotations_path: str
    image_paths: list[str]
    image_ids: list[int]
    image_sizes: list[tuple[int, int]]  # (height, width)
    boxes: list[np.ndarray]  # per image [n, 4] (ymin, xmin, ymax, xmax), original pixels
    labels: list[np.ndarray]  # per image [n] contiguous labels 0..C-1
    category_ids: list[int]  # contiguous label -> COCO category id
    category_names: list[str]
    skipped: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of categories (contiguous labels 0..C-1)."""
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.image_paths)

    def summary(self) -> str:
        """One line: images, objects, classes and what was skipped."""
        objects = sum(len(b) for b in self.boxes)
        text = f"{len(self)} images, {objects} objects, {self.num_classes} classes"
        if self.skipped:
            text += " (skipped: " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())) + ")"
        return text


def read_coco(annotations_path: str, images_dir: str, category_ids: Sequence[int] | None = None) -> CocoSplit:
    """Read and check one split. ``category_ids`` fixes the label order (pass the train split's)."""
    try:
        with open(annotations_path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as err:
        raise DataError(f"{annotations_path}: cannot read annotations ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{annotations_path}: not valid JSON ({err})") from None
    if not isinstance(document, dict):
        raise DataError(f"{annotations_path}: expected a COCO instances object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            raise DataError(f"{annotations_path}: missing the '{key}' list of a COCO instances file")
    if not document["categories"]:
        raise DataError(f"{annotations_path}: the 'categories' list is empty")
    if not document["annotations"]:
        raise DataError(f"{annotations_path}: the 'annotations' list is empty; nothing to learn or score")
    if not os.path.isdir(images_dir):
        raise DataError(f"{images_dir}: image folder not found (for {annotations_path})")

    names = {c["id"]: c.get("name", str(c["id"])) for c in document["categories"]}
    if category_ids is None:
        category_ids = sorted(names)
    label_of = {cid: label for label, cid in enumerate(category_ids)}
    skipped: collections.Counter = collections.Counter()

    images = {}
    for image in document["images"]:
        path = os.path.join(images_dir, image["file_name"])
        if not os.path.isfile(path):
            skipped["missing image files"] += 1
            continue
        images[image["id"]] = (path, int(image["height"]), int(image["width"]))
    if not images:
        raise DataError(f"{annotations_path}: none of its {len(document['images'])} images exist in {images_dir}")

    per_image = collections.defaultdict(list)
    for ann in document["annotations"]:
        if ann.get("image_id") not in images:
            skipped["annotations of missing images"] += 1
            continue
        if ann.get("category_id") not in label_of:
            skipped["annotations of unknown categories"] += 1
            continue
        if ann.get("iscrowd", 0):
            skipped["crowd annotations"] += 1
            continue
        _, height, width = images[ann["image_id"]]
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            skipped["malformed boxes"] += 1
            continue
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(width), x + w), min(float(height), y + h)
        if not (np.isfinite([x, y, w, h]).all() and x1 - x0 >= 1 and y1 - y0 >= 1):
            skipped["boxes with no area inside the image"] += 1
            continue
        per_image[ann["image_id"]].append(([y0, x0, y1, x1], label_of[ann["category_id"]]))

    split = CocoSplit(annotations_path, [], [], [], [], [], list(category_ids),
                      [names.get(c, str(c)) for c in category_ids], dict(skipped))
    for image_id, (path, height, width) in sorted(images.items()):
        objects = per_image.get(image_id, [])
        split.image_paths.append(path)
        split.image_ids.append(image_id)
        split.image_sizes.append((height, width))
        split.boxes.append(np.array([o[0] for o in objects], np.float32).reshape(-1, 4))
        split.labels.append(np.array([o[1] for o in objects], np.int32))
    if not any(len(b) for b in split.boxes):
        raise DataError(f"{annotations_path}: no usable annotation ({split.summary()})")
    return split


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
                 seed: int = 0, cache: bool = True):
    """Batches of ``(images [B, S, S, 3] in [-1, 1], targets)`` for training or evaluation.

    ``targets`` holds ``boxes`` [B, M, 4], ``classes`` [B, M] (-1 for padding),
    ``image_id`` [B] and ``scale`` [B] (resized / original size, to map
    detections back to the original image).
    """
    import tensorflow as tf

    boxes, labels = _padded(split, max_instances)
    sizes = np.array(split.image_sizes, np.float32)
    scales = image_size / sizes.max(axis=1)
    ds = tf.data.Dataset.from_tensor_slices({
        "path": np.array(split.image_paths), "boxes": boxes * scales[:, None, None], "classes": labels,
        "image_id": np.array(split.image_ids, np.int64), "scale": scales.astype(np.float32),
    })

    def load(item):
        image = tf.io.decode_image(tf.io.read_file(item["path"]), channels=3, expand_animations=False)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        target = tf.cast(tf.round(shape * item["scale"]), tf.int32)
        image = tf.image.resize(image, target, method="bilinear", antialias=True)
        image = tf.image.pad_to_bounding_box(image, 0, 0, image_size, image_size)
        item = dict(item)
        item["image"] = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return item

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(split), 4096), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda item: _augment(item, image_size, scale_jitter, flip),
                    num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(_finish, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def _augment(item, image_size: int, scale_jitter, flip: bool):
    import tensorflow as tf

    image, boxes, classes = tf.cast(item["image"], tf.float32), item["boxes"], item["classes"]
    low, high = scale_jitter
    factor = tf.random.uniform([], low, high)
    scaled = tf.cast(tf.round(image_size * factor), tf.int32)
    image = tf.image.resize(image, [scaled, scaled], method="bilinear")
    # Random crop (zoomed in) or pad (zoomed out) back to the square size.
    room = tf.maximum(scaled - image_size, 0)
    oy = tf.random.uniform([], 0, room + 1, dtype=tf.int32)
    ox = tf.random.uniform([], 0, room + 1, dtype=tf.int32)
    image = tf.image.pad_to_bounding_box(image, 0, 0, tf.maximum(scaled, image_size), tf.maximum(scaled, image_size))
    image = tf.image.crop_to_bounding_box(image, oy, ox, image_size, image_size)
    offset = tf.cast(tf.stack([oy, ox, oy, ox]), tf.float32)
    boxes = boxes * factor - offset
    clipped = tf.clip_by_value(boxes, 0.0, float(image_size))
    # Keep an object only if at least half of it (and two pixels each way) stays in view.
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (classes >= 0) & (kept_area >= 0.5 * area) & (clipped[:, 2] - clipped[:, 0] >= 2) \
        & (clipped[:, 3] - clipped[:, 1] >= 2)
    classes = tf.where(keep, classes, -1)
    boxes = tf.where(keep[:, None], clipped, 0.0)
    if flip:
        do_flip = tf.random.uniform([]) < 0.5
        image = tf.cond(do_flip, lambda: tf.image.flip_left_right(image), lambda: image)
        flipped = tf.stack([boxes[:, 0], image_size - boxes[:, 3], boxes[:, 2], image_size - boxes[:, 1]], axis=1)
        boxes = tf.where(do_flip & keep[:, None], flipped, boxes)
    item = dict(item)
    item.update(image=tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), boxes=boxes, classes=classes)
    return item


def _finish(item):
    import tensorflow as tf

    image = tf.cast(item["image"], tf.float32) / 127.5 - 1.0
    return image, {k: item[k] for k in ("boxes", "classes", "image_id", "scale")}
