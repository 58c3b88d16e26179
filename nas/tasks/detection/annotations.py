"""Reading and checking one split of a COCO-format dataset: its instances JSON and its image folder.

:func:`read_coco` flattens a split into plain arrays (a :class:`CocoSplit`),
checking every annotation: annotations that cannot be used (a missing image
file, a box with no area, an unknown image or category id, a crowd region)
are skipped and counted, and a file with nothing usable is an error.

Boxes are ``(ymin, xmin, ymax, xmax)`` in pixels of the original image. No
TensorFlow here, so a search can check its data before any trial starts.
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
