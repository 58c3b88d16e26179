"""``spinenas evaluate``: score a COCO results file against a split of a COCO-format dataset."""

from __future__ import annotations

import json
import os

from nas.commands.common import UserError


def run(args) -> int:
    """Read the split and the detections, print COCO AP (the evaluator training uses)."""
    from nas.tasks.detection.data import DataError, read_coco
    from nas.tasks.detection.coco import METRIC_NAMES, DetectionsError, read_detections, score_detections, unmatched

    annotations = args.annotations or os.path.join(args.data, f"instances_{args.split}.json")
    images = args.images or os.path.join(args.data, args.split)
    try:
        # Every category the file names is scored (the detector being judged decides what it predicts).
        split = read_coco(annotations, images, keep_empty_categories=True)
        detections = read_detections(args.detections)
    except (DataError, DetectionsError) as err:
        raise UserError(str(err)) from None
    metrics = score_detections(split, detections, per_class=True)
    left_out = unmatched(split, detections)
    if args.json:
        print(json.dumps({**metrics, "detections": len(detections), "left_out": left_out,
                          "ground_truth": split.summary()}))
        return 0
    print(f"{args.detections}: {len(detections)} detections on {annotations} ({split.summary()})")
    for reason, count in left_out.items():
        print(f"  left out: {count} {reason}")
    print("  " + "  ".join(f"{name} {metrics[name]:.4f}" for name in METRIC_NAMES))
    width = max(len(n) for n in split.category_names)
    for name, value in metrics["per_class"].items():
        print(f"  {name:<{width}}  AP {'n/a (no ground truth)' if value is None else f'{value:.4f}'}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``spinenas evaluate``."""
    parser = subparsers.add_parser(
        "evaluate", help="score a COCO detections file by COCO AP",
        description="Score DETECTIONS (the COCO results format: a JSON list of {image_id, category_id, "
                    "bbox [x, y, w, h], score}) against one split of a COCO-format dataset, with the "
                    "evaluator training uses (pycocotools on a normalised copy of the ground truth).")
    parser.add_argument("detections", metavar="DETECTIONS.json", help="the COCO results file to score")
    parser.add_argument("--data", metavar="ROOT", default=".",
                        help="dataset folder holding instances_SPLIT.json and SPLIT/ (default: .)")
    parser.add_argument("--split", default="val", help="which split to score against (default val)")
    parser.add_argument("--annotations", metavar="FILE", help="the split's instances JSON (default ROOT/instances_SPLIT.json)")
    parser.add_argument("--images", metavar="DIR", help="the split's image folder (default ROOT/SPLIT)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (metrics and per-class AP)")
    parser.set_defaults(handler=run)
