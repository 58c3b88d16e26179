"""Detections from a RetinaNet and their COCO AP (pycocotools COCOeval)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nas.tasks.detection.anchors import decode_boxes
from nas.tasks.detection.annotations import CocoSplit
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
    category_ids = np.asarray(split.category_ids)
    results = []
    # One trace for every batch size: the last, smaller batch would otherwise trace the whole
    # detector a second time (seconds per trial at proxy sizes).
    postprocess = postprocess.get_concrete_function(dataset.element_spec[0])
    for images, targets in dataset:
        boxes, scores, classes, counts = (t.numpy() for t in postprocess(images))
        image_ids = targets["image_id"].numpy()
        scales = targets["scale"].numpy()
        # Whole batch at once: keep each image's first counts[i] detections, map to original pixels.
        valid = np.arange(boxes.shape[1])[None, :] < counts[:, None]
        rows, cols = np.nonzero(valid)
        limits = np.array([sizes[int(i)] for i in image_ids], np.float32).reshape(-1, 2)  # (height, width)
        upper = np.concatenate([limits, limits], axis=1)[rows]
        box = np.clip(boxes[rows, cols] / scales[rows, None], 0, upper)
        y0, x0, y1, x1 = box.T
        keep = (x1 - x0 > 0) & (y1 - y0 > 0)
        for r, c, left, top, right, bottom in zip(rows[keep], cols[keep], x0[keep], y0[keep], x1[keep], y1[keep]):
            results.append({"image_id": int(image_ids[r]), "category_id": int(category_ids[int(classes[r, c])]),
                            "bbox": [float(left), float(top), float(right - left), float(bottom - top)],
                            "score": float(scores[r, c])})
    return results


def coco_metrics(split: CocoSplit, detections: list[dict], per_class: bool = False) -> dict:
    """AP, AP50, AP75, APs, APm, APl of ``detections`` on ``split`` (all zero if there are none).

    Scored against the split's normalised ground truth, never the raw file
    (see :mod:`nas.tasks.detection.coco`).
    """
    return score_detections(split, detections, per_class=per_class)
