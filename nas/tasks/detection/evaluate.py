"""Detections from a RetinaNet and their COCO AP (pycocotools COCOeval)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nas.tasks.detection.data import CocoSplit
from nas.tasks.detection.anchors import decode_boxes
from nas.tasks.detection.coco import METRIC_NAMES, score_detections
from nas.tasks.detection.config import EvaluationConfig

__all__ = ["METRIC_NAMES", "coco_metrics", "detect", "make_postprocess"]


def make_postprocess(model, anchors: np.ndarray, evaluation: EvaluationConfig):
    """A compiled function: images -> (boxes, scores, classes, count), per-class NMS and top-k."""
    anchors = tf.constant(anchors)

    @tf.function
    def postprocess(images):
        outputs = model(images, training=False)
        boxes = decode_boxes(outputs["boxes"], anchors[None])
        scores = tf.sigmoid(outputs["classes"])
        k = min(evaluation.pre_nms_top_k, anchors.shape[0])
        _, top = tf.math.top_k(tf.reduce_max(scores, axis=-1), k=k)
        boxes = tf.gather(boxes, top, batch_dims=1)
        scores = tf.gather(scores, top, batch_dims=1)
        result = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :], scores, max_output_size_per_class=evaluation.max_detections,
            max_total_size=evaluation.max_detections, iou_threshold=evaluation.nms_iou,
            score_threshold=evaluation.score_threshold, clip_boxes=False)
        return result.nmsed_boxes, result.nmsed_scores, result.nmsed_classes, result.valid_detections

    return postprocess


def detect(postprocess, dataset, split: CocoSplit) -> list[dict]:
    """COCO-format detections (original image coordinates) for every image of ``dataset``."""
    sizes = dict(zip(split.image_ids, split.image_sizes))
    results = []
    for images, targets in dataset:
        boxes, scores, classes, counts = (t.numpy() for t in postprocess(images))
        for i, image_id in enumerate(targets["image_id"].numpy()):
            height, width = sizes[int(image_id)]
            scale = float(targets["scale"][i])
            for box, score, label in zip(boxes[i, :counts[i]], scores[i, :counts[i]], classes[i, :counts[i]]):
                y0, x0, y1, x1 = np.clip(box / scale, 0, [height, width, height, width])
                if x1 - x0 <= 0 or y1 - y0 <= 0:
                    continue
                results.append({"image_id": int(image_id), "category_id": split.category_ids[int(label)],
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "score": float(score)})
    return results


def coco_metrics(split: CocoSplit, detections: list[dict], per_class: bool = False) -> dict:
    """AP, AP50, AP75, APs, APm, APl of ``detections`` on ``split`` (all zero if there are none).

    Scored against the split's normalised ground truth, never the raw file
    (see :mod:`nas.tasks.detection.coco`).
    """
    return score_detections(split, detections, per_class=per_class)
