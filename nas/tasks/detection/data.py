"""COCO-format detection data as ``tf.data`` pipelines.

:func:`read_coco` reads an instances JSON and its image folder into plain
arrays, checking every annotation: annotations that cannot be used (a missing
image file, a box with no area, an unknown image or category id, a crowd
region) are skipped and counted, and a file with nothing usable is an error.
:func:`make_dataset` turns that into batches: decode (PIL: any mode, EXIF
orientation applied), resize the long side to the target size and pad to a
square, then (for training) random horizontal flips and scale jitter.

Boxes are ``(ymin, xmin, ymax, xmax)`` in pixels of the padded square image;
padding rows have class -1.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import json
import math
import os
from typing import Mapping, Sequence, Union

import numpy as np

from nas.tasks.base import DataError


# What ``task.data.categories`` may be: names to keep, or a mapping old name -> new name.
CategorySelection = Union[Sequence[str], Mapping[str, str], None]


@dataclasses.dataclass
class CocoSplit:
    """One split of a COCO-format dataset, checked and flattened to arrays.

    ``image_sizes`` are the sizes of the images as displayed (the file's own
    header, EXIF orientation applied), whatever the JSON says. Crowd regions
    are not trained on but kept (``crowd_boxes``) so evaluation ignores
    detections on them, as COCO does.
    """

    annotations_path: str
    image_paths: list[str]
    image_ids: list[int]
    image_sizes: list[tuple[int, int]]  # (height, width)
    boxes: list[np.ndarray]  # per image [n, 4] (ymin, xmin, ymax, xmax), original pixels
    labels: list[np.ndarray]  # per image [n] contiguous labels 0..C-1
    category_ids: list[int]  # contiguous label -> COCO category id
    category_names: list[str]
    skipped: dict = dataclasses.field(default_factory=dict)
    areas: list[np.ndarray] = dataclasses.field(default_factory=list)  # per image [n]: the file's area or box area
    crowd_boxes: list[np.ndarray] = dataclasses.field(default_factory=list)  # per image [k, 4]
    crowd_labels: list[np.ndarray] = dataclasses.field(default_factory=list)  # per image [k]
    notes: dict = dataclasses.field(default_factory=dict)  # things fixed on the way (not skipped)
    empty_categories: list[str] = dataclasses.field(default_factory=list)  # left out: no annotations

    @property
    def num_classes(self) -> int:
        """Number of categories (contiguous labels 0..C-1)."""
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.image_paths)

    def class_counts(self) -> dict[str, int]:
        """Objects per class name, in label order."""
        counts = np.bincount(np.concatenate([np.zeros(0, np.int64)] + [l.astype(np.int64) for l in self.labels]),
                             minlength=self.num_classes)
        return {name: int(n) for name, n in zip(self.category_names, counts)}

    def summary(self) -> str:
        """One line: images, objects, classes and what was skipped."""
        objects = sum(len(b) for b in self.boxes)
        text = f"{len(self)} images, {objects} objects, {self.num_classes} classes"
        if self.skipped:
            text += " (skipped: " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())) + ")"
        if self.notes:
            text += " (notes: " + ", ".join(f"{v} {k}" for k, v in sorted(self.notes.items())) + ")"
        return text

    def report(self) -> str:
        """Several lines: the summary, per-class object counts and the categories left out."""
        lines = [self.summary()]
        counts = self.class_counts()
        width = max((len(n) for n in counts), default=0)
        lines += [f"  {name:<{width}}  {n}" for name, n in counts.items()]
        if self.empty_categories:
            lines.append(f"  left out (no usable annotations): {', '.join(self.empty_categories)}"
                         " (task.data.keep_empty_categories: true keeps them)")
        return "\n".join(lines)


def _load_json(path: str):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise DataError(f"{path}: cannot read annotations ({err.strerror})") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))  # -sig: files saved by some Windows tools start with a BOM
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); COCO files are UTF-8 JSON") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def _classes_of(path: str, names: dict, categories: CategorySelection) -> dict:
    """Category id -> class name after ``categories`` selects or renames; ids left out are absent."""
    if categories is None:
        return dict(names)
    rename = dict(categories) if isinstance(categories, Mapping) else {n: n for n in categories}
    known = set(names.values())
    for old in rename:
        if old not in known:
            hint = difflib.get_close_matches(str(old), sorted(known), n=1)
            raise DataError(f"{path}: task.data.categories names {old!r}, which is not one of its categories"
                            + (f" (did you mean {hint[0]!r}?)" if hint else f" ({', '.join(sorted(known))})"))
    return {cid: rename[name] for cid, name in names.items() if name in rename}


def _image_sizes(paths: list[str]) -> list:
    """Displayed ``(height, width)`` of each file from its header, or the error; read in threads (I/O bound)."""
    from concurrent.futures import ThreadPoolExecutor

    from nas.tasks.detection.images import ImageReadError, displayed_size

    def size(path):
        try:
            return displayed_size(path)
        except ImageReadError as err:
            return err

    if len(paths) < 64:
        return [size(p) for p in paths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(size, paths))


def read_coco(annotations_path: str, images_dir: str, category_ids: Sequence[int] | None = None, *,
              categories: CategorySelection = None, class_names: Sequence[str] | None = None,
              keep_empty_categories: bool = False) -> CocoSplit:
    """Read and check one split.

    ``categories`` selects classes by name (a list) or renames them (a
    mapping old -> new; two old names may map to one new name). For the
    training split, leave ``class_names`` and ``category_ids`` unset: classes
    are then the selected categories in id order, without those with no usable
    annotation unless ``keep_empty_categories``. For the validation split pass
    the training split's ``category_names`` as ``class_names`` and its
    ``category_ids`` so labels mean the same thing (``category_ids`` alone
    fixes the label order by id).
    """
    document = _load_json(annotations_path)
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

    names = {}
    for index, c in enumerate(document["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise DataError(f"{annotations_path}: categories[{index}] needs an integer 'id', got {c!r}")
        names[c["id"]] = str(c.get("name", c["id"]))
    class_of = _classes_of(annotations_path, names, categories)
    skipped: collections.Counter = collections.Counter()
    notes: collections.Counter = collections.Counter()

    entries = {}
    for image in document["images"]:
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            skipped["image entries without id or file_name"] += 1
            continue
        if image["id"] in entries:
            skipped["duplicate image ids"] += 1
            continue
        entries[image["id"]] = image
    found = {i: os.path.join(images_dir, e["file_name"]) for i, e in entries.items()}
    found = {i: p for i, p in found.items() if os.path.isfile(p)}
    skipped["missing image files"] += len(entries) - len(found)
    images = {}
    for (image_id, path), size in zip(found.items(), _image_sizes(list(found.values()))):
        if isinstance(size, Exception):
            skipped["unreadable image files"] += 1
            continue
        listed = entries[image_id]
        try:
            listed_size = (int(listed["height"]), int(listed["width"]))
        except (KeyError, TypeError, ValueError):
            notes["images without width/height in the JSON (read from the file)"] += 1
        else:
            if listed_size != size:
                notes["images whose JSON width/height disagree with the file (the file is trusted)"] += 1
        images[image_id] = (path, *size)
    if not images:
        raise DataError(f"{annotations_path}: none of its {len(document['images'])} images exist in {images_dir}"
                        " (or none could be read)")

    per_image = collections.defaultdict(list)
    crowd = collections.defaultdict(list)
    for ann in document["annotations"]:
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            skipped["annotations of missing images"] += 1
            continue
        if ann.get("category_id") not in class_of:
            skipped["annotations of unknown categories" if ann.get("category_id") not in names
                    else "annotations of categories not selected"] += 1
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
        name = class_of[ann["category_id"]]
        if ann.get("iscrowd", 0):
            skipped["crowd annotations"] += 1
            crowd[ann["image_id"]].append(([y0, x0, y1, x1], name))
            continue
        area = ann.get("area")
        area = float(area) if isinstance(area, (int, float)) and not isinstance(area, bool) and area > 0 \
            and math.isfinite(area) else (x1 - x0) * (y1 - y0)
        per_image[ann["image_id"]].append(([y0, x0, y1, x1], name, area))

    # Classes (label order) and their category ids.
    first_id = {}
    for cid in sorted(class_of):
        first_id.setdefault(class_of[cid], cid)
    empty = []
    if class_names is not None:
        order = list(class_names)
        ids = list(category_ids) if category_ids is not None else [first_id.get(n, -1 - i) for i, n in enumerate(order)]
    elif category_ids is not None:
        order = [class_of.get(cid, names.get(cid, str(cid))) for cid in category_ids]
        ids = list(category_ids)
    else:
        order = list(dict.fromkeys(class_of[cid] for cid in sorted(class_of)))
        if isinstance(categories, Sequence) and not isinstance(categories, str):
            order = list(dict.fromkeys(categories))  # the order the user listed
        if not keep_empty_categories:
            used = {o[1] for objects in per_image.values() for o in objects}
            empty = [n for n in order if n not in used]
            order = [n for n in order if n in used]
        ids = [first_id[n] for n in order]
    label_of = {name: label for label, name in enumerate(order)}

    split = CocoSplit(annotations_path, [], [], [], [], [], ids, order, {}, notes=dict(notes),
                      empty_categories=empty)
    for image_id, (path, height, width) in sorted(images.items(), key=lambda kv: _id_order(kv[0])):
        objects = [o for o in per_image.get(image_id, []) if o[1] in label_of]
        skipped["annotations of categories not scored"] += len(per_image.get(image_id, [])) - len(objects)
        regions = [o for o in crowd.get(image_id, []) if o[1] in label_of]
        split.image_paths.append(path)
        split.image_ids.append(image_id)
        split.image_sizes.append((height, width))
        split.boxes.append(np.array([o[0] for o in objects], np.float32).reshape(-1, 4))
        split.labels.append(np.array([label_of[o[1]] for o in objects], np.int32))
        split.areas.append(np.array([o[2] for o in objects], np.float32))
        split.crowd_boxes.append(np.array([o[0] for o in regions], np.float32).reshape(-1, 4))
        split.crowd_labels.append(np.array([label_of[o[1]] for o in regions], np.int32))
    split.skipped = {k: v for k, v in skipped.items() if v}
    if not any(len(b) for b in split.boxes):
        raise DataError(f"{annotations_path}: no usable annotation ({split.summary()})")
    return split


def _id_order(image_id):
    # Integer ids in numeric order; any other ids (strings) after them, as text.
    return (0, image_id, "") if isinstance(image_id, int) else (1, 0, str(image_id))


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


# Bump when the cached pixels would change (resizing, padding, decoding), so old caches are never read.
CACHE_VERSION = 1
CACHE_DIR = ".spinenas-cache"
# Cached images up to this size enter tf.data as one in-memory tensor; larger ones are read per image.
_IN_GRAPH_BYTES = 1 << 30


def _resized_sizes(split: CocoSplit, image_size: int):
    sizes = np.array(split.image_sizes, np.float32).reshape(-1, 2)
    scales = image_size / sizes.max(axis=1)
    return scales, np.maximum(np.round(sizes * scales[:, None]), 1).astype(np.int32)


def image_cache_path(split: CocoSplit, image_size: int) -> str:
    """Where :func:`build_image_cache` keeps ``split``'s images at ``image_size``: beside its annotations.

    The name hashes the cache version, the image size and every image's path,
    size on disk and modification time, so a changed image list or file never
    reads a stale cache.
    """
    import hashlib

    digest = hashlib.sha256(f"v{CACHE_VERSION} {image_size}px\n".encode())
    for path in split.image_paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    folder = os.path.join(os.path.dirname(os.path.abspath(split.annotations_path)), CACHE_DIR)
    return os.path.join(folder, f"images-{image_size}px-{len(split)}-{digest.hexdigest()[:16]}.npy")


def build_image_cache(split: CocoSplit, image_size: int, progress: bool = False):
    """Decode and resize ``split``'s images once into a ``uint8 [N, S, S, 3]`` file; its path, or None.

    Each image is resized (long side ``image_size``) and padded to a square
    exactly as :func:`make_dataset` does without a cache. The file is written
    under a temporary name and renamed, so concurrent workers never read half
    of one. None when the folder is not writable (the caller decodes instead).
    """
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    path = image_cache_path(split, image_size)
    if os.path.exists(path):
        return path
    _, targets = _resized_sizes(split, image_size)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".images-", suffix=".npy", dir=os.path.dirname(path))
        os.close(handle)
    except OSError:
        return None
    try:
        images = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8, shape=(len(split), image_size,
                                                                                      image_size, 3))

        def fill(index):
            image = _load_resized(split.image_paths[index], targets[index])
            images[index, :image.shape[0], :image.shape[1]] = image[:image_size, :image_size]

        # PIL releases the GIL while decoding and resizing, so threads use every core.
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            list(pool.map(fill, range(len(split))))
        images.flush()
        del images
        os.replace(staging, path)
    except OSError:
        return None
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    if progress:
        print(f"cached {len(split)} images at {image_size}x{image_size} in {path}", flush=True)
    return path


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
    scales, targets = _resized_sizes(split, image_size)
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
        image = tf.numpy_function(_load_resized, [item["path"], item["size"]], tf.uint8, stateful=False)
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
        ds = ds.shuffle(min(count, 4096), seed=seed, reshuffle_each_iteration=True)
        # Each example brings its own draw from the seed (new ones every epoch): a shared random op would give
        # the parallel map's threads its numbers in whatever order they ran, and a seed would not fix a trial.
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, draws).map(
            lambda item, draw: _augment(item, image_size, scale_jitter, flip, tf.stack([draw, seed])),
            num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(_finish, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def _load_resized(path, size) -> np.ndarray:
    from nas.tasks.detection.images import load_image

    return load_image(path.decode() if isinstance(path, bytes) else str(path), (int(size[0]), int(size[1])))


def _augment(item, image_size: int, scale_jitter, flip: bool, seed):
    """Scale jitter, crop or pad, and flip of one example, every random number drawn from ``seed`` ([2] int64)."""
    import tensorflow as tf

    scale_seed, y_seed, x_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    image, boxes, classes = tf.cast(item["image"], tf.float32), item["boxes"], item["classes"]
    low, high = scale_jitter
    factor = tf.random.stateless_uniform([], scale_seed, low, high)
    scaled = tf.cast(tf.round(image_size * factor), tf.int32)
    image = tf.image.resize(image, [scaled, scaled], method="bilinear")
    # Random crop (zoomed in) or pad (zoomed out) back to the square size.
    room = tf.maximum(scaled - image_size, 0)
    oy = tf.random.stateless_uniform([], y_seed, 0, room + 1, dtype=tf.int32)
    ox = tf.random.stateless_uniform([], x_seed, 0, room + 1, dtype=tf.int32)
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
        do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
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
