"""``spinenas evaluate``: score a COCO results file against a split of a COCO-format dataset."""

from __future__ import annotations

import json
import os

from nas.arguments import UserError, add_command


# How many unknown image ids a refusal names.
SHOWN_IDS = 3


def run(args) -> int:
    """Read the split and the detections, print COCO AP (the evaluator training uses)."""
    from nas.tasks.base import DataError
    from nas.tasks.detection.annotations import read_coco
    from nas.tasks.detection.coco import (METRIC_NAMES, DetectionsError, read_detections, score_detections,
                                          unmatched, unmeasured)

    annotations = args.annotations or os.path.join(args.data, f"instances_{args.split}.json")
    images = args.images or os.path.join(args.data, args.split)
    if not args.annotations and not os.path.isfile(annotations) and os.path.isdir(args.data):
        there = sorted(f[len("instances_"):-len(".json")] for f in os.listdir(args.data)
                       if f.startswith("instances_") and f.endswith(".json"))
        raise UserError(f"--split {args.split}: {annotations} not found"
                        + (f" (splits there: {', '.join(there)})" if there else " (no instances_SPLIT.json there)"))
    try:
        # Every category the file names is scored (the detector being judged decides what it predicts).
        split = read_coco(annotations, images, keep_empty_categories=True)
        detections = read_detections(args.detections)
    except (DataError, DetectionsError) as err:
        raise UserError(str(err)) from None
    _refuse_other_images(args, split, annotations, detections)
    metrics = score_detections(split, detections, per_class=True)
    left_out = unmatched(split, detections)
    if args.json:
        print(json.dumps({**metrics, "detections": len(detections), "left_out": left_out,
                          "ground_truth": split.summary()}))
        return 0
    print(f"{args.detections}: {len(detections)} detections on {annotations} ({split.summary()})")
    for reason, count in left_out.items():
        print(f"  left out: {count} {reason}")
    print("  " + "  ".join(f"{name} {unmeasured(name) if metrics[name] is None else f'{metrics[name]:.4f}'}"
                           for name in METRIC_NAMES))
    width = max(len(n) for n in split.category_names)
    for name, value in metrics["per_class"].items():
        print(f"  {name:<{width}}  AP {'n/a (no ground truth)' if value is None else f'{value:.4f}'}")
    return 0


def _refuse_other_images(args, split, annotations: str, detections: list[dict]) -> None:
    """Stop on a file none of whose detections is of an image of the split: it is another split's or dataset's."""
    known = set(split.image_ids)
    if not detections or any(d["image_id"] in known for d in detections):
        return
    unknown = list(dict.fromkeys(d["image_id"] for d in detections))
    shown = ", ".join(repr(i) if isinstance(i, str) else str(i) for i in unknown[:SHOWN_IDS])
    more = f" (and {len(unknown) - SHOWN_IDS} more)" if len(unknown) > SHOWN_IDS else ""
    which = f"the {args.split} split ({annotations})" if not args.annotations else annotations
    raise UserError(f"{args.detections}: none of its {len(detections)} detections is of an image in {which}; "
                    f"unknown image ids {shown}{more}; wrong --split, or another dataset's results?")


def add_parser(subparsers) -> None:
    """Register ``spinenas evaluate``."""
    parser = add_command(
        subparsers, "evaluate", run, "score a COCO detections file by COCO AP",
        "Score DETECTIONS (the COCO results format: a JSON list of {image_id, category_id, bbox [x, y, w, h], "
        "score}) against one split of a COCO-format dataset, with the evaluator training uses (pycocotools on "
        "a normalised copy of the ground truth).")
    parser.add_argument("detections", metavar="DETECTIONS.json", help="the COCO results file to score")
    parser.add_argument("--data", metavar="ROOT", default=".",
                        help="dataset folder holding instances_SPLIT.json and SPLIT/ (default: .)")
    parser.add_argument("--split", default="val", help="which split to score against (default val)")
    parser.add_argument("--annotations", metavar="FILE", help="the split's instances JSON (default ROOT/instances_SPLIT.json)")
    parser.add_argument("--images", metavar="DIR", help="the split's image folder (default ROOT/SPLIT)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (metrics and per-class AP)")
