"""COCO AP against a normalised in-memory copy of a split's ground truth (no TensorFlow here).

pycocotools' COCOeval assumes things many valid COCO files do not give it:
a ground-truth annotation whose ``id`` is 0 is never counted as matched (it
stores matches as annotation ids and reads 0 as "no match"), and it reads
``iscrowd`` and ``area`` without a fallback. So AP is never computed on the
raw file: :func:`ground_truth` rebuilds the split (only its usable images,
its classes, annotation ids renumbered from 1, ``iscrowd`` 0 or 1, ``area``
the file's or else the box area) and :func:`score_detections` runs COCOeval
on that.

"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os

import numpy as np

from nas.config import read_text

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def ground_truth(split) -> dict:
    """The split as a clean COCO instances document (what COCOeval is given instead of the file)."""
    images, annotations = [], []
    for path, image_id, (height, width) in zip(split.image_paths, split.image_ids, split.image_sizes):
        images.append({"id": image_id, "file_name": os.path.basename(path), "height": int(height),
                       "width": int(width)})
    areas = split.areas or [None] * len(split)
    crowds = split.crowd_boxes or [np.zeros((0, 4), np.float32)] * len(split)
    crowd_labels = split.crowd_labels or [np.zeros((0,), np.int32)] * len(split)
    for image_id, boxes, labels, image_areas, crowd, crowd_label in zip(
            split.image_ids, split.boxes, split.labels, areas, crowds, crowd_labels):
        for index, (box, label) in enumerate(zip(boxes, labels)):
            annotations.append(_annotation(len(annotations) + 1, image_id, split.category_ids[int(label)], box,
                                           None if image_areas is None else float(image_areas[index]), 0))
        for box, label in zip(crowd, crowd_label):
            annotations.append(_annotation(len(annotations) + 1, image_id, split.category_ids[int(label)], box,
                                           None, 1))
    categories = [{"id": cid, "name": name} for cid, name in zip(split.category_ids, split.category_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _annotation(ann_id: int, image_id, category_id, box, area, iscrowd: int) -> dict:
    y0, x0, y1, x1 = (float(v) for v in box)
    box_area = (x1 - x0) * (y1 - y0)
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": area if area is not None and area > 0 else box_area, "iscrowd": iscrowd}


# COCOeval's object size ranges (pixel area, both ends inclusive) behind APs, APm and APl.
SIZE_RANGES = {"APs": ("small", 0, 32 ** 2), "APm": ("medium", 32 ** 2, 96 ** 2), "APl": ("large", 96 ** 2, 1e10)}


def score_detections(split, detections: list[dict], per_class: bool = False) -> dict:
    """AP, AP50, AP75, APs, APm, APl of COCO-format ``detections`` on ``split``.

    APs, APm and APl are None when the split has no object of that size (COCOeval's
    -1: nothing to measure, which is not a score of 0). Detections of images
    outside the split or of categories it does not score are left out (COCOeval
    would stop on the first). With ``per_class``, ``per_class`` maps each class
    name to its AP (None for a class with no ground truth in the split).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_ids, category_ids = set(split.image_ids), set(split.category_ids)
    kept = [d for d in detections if d["image_id"] in image_ids and d["category_id"] in category_ids]
    truth_document = ground_truth(split)
    if not kept:
        return _nothing_detected(split, truth_document, per_class)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = truth_document
        truth.createIndex()
        found = truth.loadRes(kept)
        evaluator = COCOeval(truth, found, iouType="bbox")
        evaluator.params.imgIds = list(split.image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval reports -1 where a size range (or, for AP, the split) has no objects.
    metrics = {name: None if value < 0 else float(value) for name, value in zip(METRIC_NAMES, evaluator.stats[:6])}
    if per_class:
        precision = evaluator.eval["precision"]  # [iou, recall, class, area, max dets]
        ap_of = {}
        for k, cid in enumerate(evaluator.params.catIds):  # sorted ids, not the split's label order
            values = precision[:, :, k, 0, -1]
            values = values[values > -1]
            ap_of[cid] = float(values.mean()) if values.size else None
        metrics["per_class"] = {name: ap_of.get(cid) for cid, name in zip(split.category_ids, split.category_names)}
    return metrics


def _nothing_detected(split, truth: dict, per_class: bool) -> dict:
    """The metrics of no detections: 0.0 wherever there is ground truth to find, None where there is none."""
    objects = [a for a in truth["annotations"] if not a["iscrowd"]]
    metrics = {name: 0.0 for name in METRIC_NAMES}
    for name, (_, low, high) in SIZE_RANGES.items():
        if not any(low <= a["area"] <= high for a in objects):
            metrics[name] = None
    if per_class:
        present = {a["category_id"] for a in objects}
        metrics["per_class"] = {name: 0.0 if cid in present else None
                                for cid, name in zip(split.category_ids, split.category_names)}
    return metrics


def unmeasured(name: str) -> str:
    """Why APs, APm or APl has no value, for a printed table ("n/a (no small objects)")."""
    size = SIZE_RANGES[name][0] if name in SIZE_RANGES else None
    return f"n/a (no {size} objects)" if size else "n/a"


class DetectionsError(ValueError):
    """A detections file that is not a COCO results list; the message names the file and the entry."""


def read_detections(path: str) -> list[dict]:
    """Read and check a COCO results file: a list of ``{image_id, category_id, bbox, score}``."""
    text = read_text(path, DetectionsError, what="detections", hint="expected a JSON list")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise DetectionsError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(document, list):
        raise DetectionsError(f"{path}: expected a JSON list of detections (the COCO results format)")
    detections = []
    for index, item in enumerate(document):
        where = f"{path}: detection {index}"
        if not isinstance(item, dict):
            raise DetectionsError(f"{where}: expected an object, got {item!r}")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in item]
        if missing:
            raise DetectionsError(f"{where}: missing {', '.join(missing)}")
        bbox, score = item["bbox"], item["score"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)) or bbox[2] < 0 \
                or bbox[3] < 0:
            raise DetectionsError(f"{where}: bbox must be [x, y, width, height] with width, height >= 0, got {bbox!r}")
        if not _number(score):
            raise DetectionsError(f"{where}: score must be a number, got {score!r}")
        detections.append({"image_id": item["image_id"], "category_id": item["category_id"],
                           "bbox": [float(v) for v in bbox], "score": float(score)})
    return detections


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def unmatched(split, detections: list[dict]) -> dict:
    """How many detections name an image or a category the split does not have (left out of the score)."""
    image_ids, category_ids = set(split.image_ids), set(split.category_ids)
    counts = collections.Counter()
    for d in detections:
        if d["image_id"] not in image_ids:
            counts["detections of images not in the split"] += 1
        elif d["category_id"] not in category_ids:
            counts["detections of categories not scored"] += 1
    return dict(counts)
