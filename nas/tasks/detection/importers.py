"""Convert Pascal VOC and YOLO datasets to the COCO-format layout ``task.data.root`` reads.

Written layout: ``OUT/instances_train.json``, ``OUT/instances_val.json``,
``OUT/train/``, ``OUT/val/``, and ``OUT/instances_test.json``, ``OUT/test/``
when the source has a test split (images hard-linked when the filesystem
allows, else copied; tiles of large images written as PNG). Category ids run from 1 in class-name order (VOC: sorted
names; YOLO: its class indices plus one).
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import xml.etree.ElementTree as ElementTree
from typing import Optional

from nas.tasks.base import DataError
from nas.tasks.detection.images import ImageReadError, displayed_size, open_displayed

# The splits an import writes: train and val always, test when the source has one (held out from training).
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class _Record:
    """One image to write: where it is, its name in the output, its size if known and its objects."""

    def __init__(self, source: str, file_name: str, size=None, crop=None):
        self.source, self.file_name, self.size = source, file_name, size
        self.crop = crop  # (left, top) of a tile of ``size`` cut from the source, or None for the whole image
        self.objects: list[tuple[int, list[float], int]] = []  # (category id, [x, y, w, h], iscrowd)


def _prepare_out(out: str, overwrite: bool) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"{out}: is a file, not a folder")
    if os.path.exists(os.path.join(out, "instances_train.json")) and not overwrite:
        raise DataError(f"{out} already holds a dataset; pass --overwrite to replace it")
    for split in SPLITS:
        shutil.rmtree(os.path.join(out, split), ignore_errors=True)
    for split in ("train", "val"):
        os.makedirs(os.path.join(out, split))
    stale = os.path.join(out, "instances_test.json")  # an earlier import's test split, if this one has none
    if os.path.exists(stale):
        os.remove(stale)


def _place(source: str, target: str) -> None:
    try:
        os.link(source, target)  # no copy of the pixels when source and target share a filesystem
    except OSError:
        shutil.copyfile(source, target)


def _write(out: str, splits: dict[str, list[_Record]], names: list[str]) -> dict:
    counts = {}
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(names)]
    opened: dict = {}  # the source image the last tile came from (tiles of one image are written together)
    for split, records in splits.items():
        os.makedirs(os.path.join(out, split), exist_ok=True)
        images, annotations = [], []
        for image_id, record in enumerate(records, start=1):
            target = os.path.join(out, split, record.file_name)
            if record.crop is None:
                _place(record.source, target)
            else:
                if record.source not in opened:
                    opened = {record.source: open_displayed(record.source)}
                (left, top), (height, width) = record.crop, record.size
                opened[record.source].crop((left, top, left + width, top + height)).save(target)
            entry = {"id": image_id, "file_name": record.file_name}
            if record.size:
                entry.update(height=record.size[0], width=record.size[1])
            images.append(entry)
            for category_id, box, crowd in record.objects:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                    "bbox": [round(v, 2) for v in box], "area": round(box[2] * box[3], 2),
                                    "iscrowd": crowd})
        with open(os.path.join(out, f"instances_{split}.json"), "w", encoding="utf-8") as handle:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
        counts[f"{split}_images"], counts[f"{split}_objects"] = len(images), len(annotations)
    return counts


def _seeded_split(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    items = sorted(items)
    random.Random(seed).shuffle(items)
    n_val = min(max(1, round(val_fraction * len(items))), len(items) - 1)
    return sorted(items[n_val:]), sorted(items[:n_val])


def import_voc(src: str, out: str, *, val_fraction: float = 0.2, seed: int = 0, overwrite: bool = False,
               tile: Optional[int] = None, min_visible: float = 0.5) -> dict:
    """Convert a Pascal VOC folder (``Annotations/*.xml``, ``JPEGImages/``, optional ``ImageSets/Main/``).

    A flat folder, XML files beside their images, is read too. Splits come
    from ``ImageSets/Main/train.txt`` and ``val.txt`` when both exist, else a
    seeded random split with ``val_fraction`` of the images (or tiles) in
    val; annotated images in none of the lists are left out and counted.
    ``ImageSets/Main/test.txt`` becomes the test split, kept out of train and
    val (a seeded split is over the other images). VOC pixel coordinates are 1-based and inclusive; ``difficult``
    objects become ``iscrowd`` regions, which training skips and evaluation
    ignores, as VOC's own evaluation does.

    ``tile`` cuts every image into non-overlapping ``tile`` x ``tile`` crops
    (right and bottom remainders dropped), for a few large photos such as
    aerial scenes: an object keeping at least ``min_visible`` of its box in a
    tile is an object there, one cut off more is an ignored region.
    """
    annotations_dir, images_dir = _voc_folders(src)
    ids = sorted(f[:-4] for f in os.listdir(annotations_dir) if f.lower().endswith(".xml"))
    if len(ids) < (1 if tile else 2):
        raise DataError(f"{annotations_dir}: need at least {'one annotation file' if tile else 'two annotation files'}"
                        f", found {len(ids)}")
    parsed, skipped = {}, collections.Counter()
    for image_id in ids:
        parsed[image_id] = _parse_voc(os.path.join(annotations_dir, image_id + ".xml"), images_dir, image_id)
    names = sorted({name for _, _, objects in parsed.values() if objects for name, _, _ in objects})
    if not names:
        raise DataError(f"{annotations_dir}: no <object> in any annotation file")
    category = {name: i + 1 for i, name in enumerate(names)}
    for image_id in ids:
        if parsed[image_id][0] is None:
            skipped["annotation files without an image"] += 1
    records = {}  # image id -> its records (one image, or its tiles)
    for image_id, (image_path, size, objects) in parsed.items():
        if image_path is None:
            continue
        boxes = [(category[name], box, int(difficult)) for name, box, difficult in objects]
        skipped["difficult objects (kept as ignored regions)"] += sum(crowd for _, _, crowd in boxes)
        if tile:
            records[image_id] = _tiles(image_path, image_id, boxes, tile, min_visible, skipped)
        else:
            record = _Record(image_path, os.path.basename(image_path), size)
            record.objects.extend(boxes)
            records[image_id] = [record]

    lists = _image_sets(src, parsed, skipped)
    held_out = set(lists.get("test", ()))  # never in train or val, whichever way those are split

    def records_of(wanted):
        return [r for i in wanted if i in records for r in records[i]]

    if "train" in lists and "val" in lists:
        splits = {split: records_of(lists[split]) for split in ("train", "val")}
        listed = held_out.union(lists["train"], lists["val"])
        skipped["annotated images in no ImageSets/Main list (left out)"] += sum(1 for i in records if i not in listed)
        skipped["images in test.txt and in train.txt or val.txt (kept in both)"] += len(
            held_out & set(lists["train"] + lists["val"]))
        how = "ImageSets/Main/{train,val}.txt"
    elif tile:
        every = {r.file_name: r for i, rs in records.items() if i not in held_out for r in rs}
        train_names, val_names = _seeded_split(list(every), val_fraction, seed) if len(every) > 1 else (list(every), [])
        splits = {"train": [every[n] for n in train_names], "val": [every[n] for n in val_names]}
        how = f"a seeded split (seed {seed}, {val_fraction:.0%} val of the tiles)"
    else:  # split the annotation files, as always, so a seed gives the split it gave before
        free = [i for i in ids if i not in held_out]
        train_ids, val_ids = _seeded_split(free, val_fraction, seed) if len(free) > 1 else (free, [])
        splits = {"train": records_of(train_ids), "val": records_of(val_ids)}
        how = f"a seeded split (seed {seed}, {val_fraction:.0%} val)"
    if held_out:
        splits["test"] = records_of(lists["test"])
        how += "; test from ImageSets/Main/test.txt"
        if not splits["test"]:
            del splits["test"]
            skipped["images in test.txt, none usable (no test split written)"] += len(held_out)
    if not splits["train"] or not splits["val"]:
        notes = "; ".join(f"{count} {reason}" for reason, count in skipped.items() if count)
        raise DataError(f"{src}: the train or val split is empty ({how})" + (f"; {notes}" if notes else ""))
    _prepare_out(out, overwrite)
    counts = _write(out, splits, names)
    counts.update(classes=names, split_from=how, notes={k: v for k, v in skipped.items() if v})
    return counts


def _image_sets(src: str, parsed: dict, skipped) -> dict[str, list[str]]:
    """The image ids of each of ``ImageSets/Main/{train,val,test}.txt`` that exists, in file order."""
    lists = {}
    for split in SPLITS:
        path = os.path.join(src, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            wanted = [line.split()[0] for line in handle if line.strip()]
        lists[split] = wanted
    # train.txt alone is not used (the split is seeded then), so its missing files are not counted.
    used = list(lists) if "train" in lists and "val" in lists else [s for s in ("test",) if s in lists]
    skipped["listed images without annotation file"] += sum(1 for s in used for i in lists[s] if i not in parsed)
    return lists


def _voc_folders(src: str) -> tuple[str, str]:
    """(annotations folder, images folder): VOC's ``Annotations/`` and ``JPEGImages/``, or ``src`` itself."""
    annotations_dir, images_dir = os.path.join(src, "Annotations"), os.path.join(src, "JPEGImages")
    if os.path.isdir(annotations_dir) and os.path.isdir(images_dir):
        return annotations_dir, images_dir
    try:
        flat = any(f.lower().endswith(".xml") for f in os.listdir(src))
    except OSError as err:
        raise DataError(f"{src}: cannot list the folder ({err.strerror})") from None
    if flat:
        return src, src
    missing = images_dir if os.path.isdir(annotations_dir) else annotations_dir
    raise DataError(f"{missing}: not found (a VOC folder has Annotations/ and JPEGImages/, or XML files "
                    "beside their images)")


def _tiles(image_path: str, image_id: str, boxes: list, tile: int, min_visible: float, skipped) -> list[_Record]:
    """The non-overlapping tiles of one image, each with the parts of ``boxes`` it holds."""
    height, width = displayed_size(image_path)  # the file wins over the XML's size
    if height < tile or width < tile:
        skipped[f"images smaller than one {tile}x{tile} tile"] += 1
        return []
    records = []
    kept_width, kept_height = (width // tile) * tile, (height // tile) * tile
    skipped["objects only in the right or bottom remainder a tiling drops"] += sum(
        1 for _, (x, y, _, _), _ in boxes if x >= kept_width or y >= kept_height)
    for row in range(height // tile):
        for col in range(width // tile):
            left, top = col * tile, row * tile
            record = _Record(image_path, f"{image_id}_r{row:02d}_c{col:02d}.png", (tile, tile), (left, top))
            for category_id, (x, y, w, h), crowd in boxes:
                x0, y0 = max(x, left), max(y, top)
                x1, y1 = min(x + w, left + tile), min(y + h, top + tile)
                if x1 - x0 < 1 or y1 - y0 < 1:
                    continue
                kept = (x1 - x0) * (y1 - y0) / (w * h)
                cut = kept < min_visible and not crowd
                skipped["objects cut by a tile edge (kept as ignored regions)"] += int(cut)
                record.objects.append((category_id, [x0 - left, y0 - top, x1 - x0, y1 - y0], int(crowd or cut)))
            records.append(record)
    return records


def _parse_voc(path: str, images_dir: str, image_id: str):
    """(image path or None, (height, width) or None, [(name, [x, y, w, h], difficult)]) of one XML file."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as err:
        raise DataError(f"{path}: not a readable VOC annotation ({err})") from None
    file_name = (root.findtext("filename") or "").strip()
    candidates = [file_name] if file_name else []
    candidates += [image_id + ext for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS)]
    image_path = next((os.path.join(images_dir, c) for c in candidates if os.path.isfile(os.path.join(images_dir, c))),
                      None)
    size = None
    try:
        height, width = int(float(root.findtext("size/height"))), int(float(root.findtext("size/width")))
        if height > 0 and width > 0:
            size = (height, width)
    except (TypeError, ValueError):
        pass  # read from the file header later
    objects = []
    for index, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        try:
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise DataError(f"{path}: object {index} ({name or 'no name'}) has no numeric bndbox") from None
        if not name:
            raise DataError(f"{path}: object {index} has no <name>")
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true")
        objects.append((name, [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1], difficult))
    return image_path, size, objects


def _yolo_names(src: str) -> list[str]:
    import yaml

    for name in ("data.yaml", "dataset.yaml"):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    names = (yaml.safe_load(handle) or {}).get("names")
            except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as err:
                raise DataError(f"{path}: cannot read class names ({' '.join(str(err).split())})") from None
            if isinstance(names, dict):  # {0: person, 1: car}
                names = [names[k] for k in sorted(names)]
            if not isinstance(names, list) or not names:
                raise DataError(f"{path}: expected 'names' as a list or a mapping of index -> name")
            return [str(n) for n in names]
    path = os.path.join(src, "classes.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            names = [line.strip() for line in handle if line.strip()]
        if names:
            return names
    raise DataError(f"{src}: no class names (data.yaml with 'names', or classes.txt, one name a line)")


def import_yolo(src: str, out: str, *, overwrite: bool = False) -> dict:
    """Convert a YOLO folder (``images/{train,val}/``, ``labels/{train,val}/*.txt``, names in data.yaml or classes.txt).

    Each label line is ``class cx cy w h`` normalised to the image (a polygon
    ``class x1 y1 x2 y2 ...`` becomes its bounding box); images without a
    label file are kept as images with no objects. ``valid/`` is accepted for ``val/``;
    ``images/test/`` becomes the test split when any of its images has a label.
    """
    names = _yolo_names(src)
    folders = {}
    for split, options in (("train", ("train",)), ("val", ("val", "valid")), ("test", ("test",))):
        found = next((o for o in options if os.path.isdir(os.path.join(src, "images", o))), None)
        if found is None and split != "test":
            raise DataError(f"{os.path.join(src, 'images', options[0])}: not found (a YOLO folder has "
                            "images/train/, images/val/ and labels/train/, labels/val/)")
        if found is not None:
            folders[split] = found
    _prepare_out(out, overwrite)
    skipped, splits = collections.Counter(), {}
    for other in sorted(set(os.listdir(os.path.join(src, "images"))) - set(folders.values())):
        folder = os.path.join(src, "images", other)
        if os.path.isdir(folder):
            count = sum(1 for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            skipped[f"images in images/{other}/ (not a train, val or test folder; left out)"] += count
    for split, folder in folders.items():
        image_dir, label_dir = os.path.join(src, "images", folder), os.path.join(src, "labels", folder)
        records, seen = [], collections.Counter()  # seen: this split's notes, kept only if the split is written
        for file_name in sorted(os.listdir(image_dir)):
            if not file_name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(image_dir, file_name)
            try:
                size = displayed_size(path)  # YOLO labels are fractions of the displayed image
            except ImageReadError:
                seen["unreadable images"] += 1
                continue
            record = _Record(path, file_name, size)
            label_path = os.path.join(label_dir, os.path.splitext(file_name)[0] + ".txt")
            if os.path.isfile(label_path):
                _read_yolo_labels(label_path, size, len(names), record, seen)
            else:
                seen["images without a label file (kept, no objects)"] += 1
            records.append(record)
        if split == "test" and not any(r.objects for r in records):
            # Test images shipped without labels (a competition's hidden set) score nothing.
            skipped[f"images in images/{folder}/ without any label (no test split written)"] += len(records)
            continue
        skipped.update(seen)
        if not records:
            raise DataError(f"{image_dir}: no images")
        splits[split] = records
    counts = _write(out, splits, names)
    counts.update(classes=names, split_from=", ".join(f"images/{folders[s]}" for s in splits),
                  notes=dict(skipped))
    return counts


def _read_yolo_labels(path: str, size, num_classes: int, record: _Record, skipped) -> None:
    height, width = size
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.split()
            if not parts:
                continue
            try:
                index, values = int(float(parts[0])), [float(v) for v in parts[1:]]
            except ValueError:
                skipped["malformed label lines"] += 1
                continue
            if not 0 <= index < num_classes:
                skipped["labels with a class index beyond the names"] += 1
                continue
            if len(values) == 4:
                cx, cy, w, h = values
                x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            elif len(values) >= 6 and len(values) % 2 == 0:
                xs, ys = values[0::2], values[1::2]
                x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            else:
                skipped["malformed label lines"] += 1
                continue
            x0, y0 = max(0.0, x0) * width, max(0.0, y0) * height
            x1, y1 = min(1.0, x1) * width, min(1.0, y1) * height
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                skipped["labels with no area"] += 1
                continue
            record.objects.append((index + 1, [x0, y0, x1 - x0, y1 - y0], 0))
