"""Anchors, IoU matching and box coding for RetinaNet (boxes are (ymin, xmin, ymax, xmax))."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# Largest log size ratio decoded, so exp() cannot overflow on a wild prediction.
_MAX_LOG_RATIO = math.log(1000.0 / 16)


def generate_anchors(image_size: int, min_level: int, max_level: int, num_scales: int,
                     aspect_ratios, anchor_size: float) -> np.ndarray:
    """All anchors, ordered level, then row, column, then (scale, aspect ratio): [N, 4] float32.

    The order matches a head output of shape [B, H, W, A * K] reshaped to [B, H * W * A, K].
    """
    per_level = []
    for level in range(min_level, max_level + 1):
        stride = 2**level
        cells = image_size // stride
        shapes = []
        for scale in range(num_scales):
            base = anchor_size * stride * 2 ** (scale / num_scales)
            for ratio in aspect_ratios:
                shapes.append((base / math.sqrt(ratio), base * math.sqrt(ratio)))  # (h, w)
        shapes = np.array(shapes, np.float32)
        centres = (np.arange(cells, dtype=np.float32) + 0.5) * stride
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        cy, cx = cy[..., None], cx[..., None]
        h, w = shapes[:, 0], shapes[:, 1]
        boxes = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
        per_level.append(boxes.reshape(-1, 4))
    return np.concatenate(per_level).astype(np.float32)


def pairwise_iou(a, b):
    """IoU of every box in ``a`` [..., N, 4] with every box in ``b`` [..., M, 4]: [..., N, M]."""
    a = a[..., :, None, :]
    b = b[..., None, :, :]
    inter_h = tf.maximum(0.0, tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]))
    inter_w = tf.maximum(0.0, tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]))
    inter = inter_h * inter_w
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / tf.maximum(area_a + area_b - inter, 1e-8)


def _centre_size(boxes):
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + h / 2, boxes[..., 1] + w / 2, h, w


def encode_boxes(boxes, anchors):
    """Regression targets (dy, dx, log dh, log dw) of ``boxes`` against ``anchors``."""
    y, x, h, w = _centre_size(boxes)
    ya, xa, ha, wa = _centre_size(anchors)
    h, w = tf.maximum(h, 1e-3), tf.maximum(w, 1e-3)
    return tf.stack([(y - ya) / ha, (x - xa) / wa, tf.math.log(h / ha), tf.math.log(w / wa)], axis=-1)


def decode_boxes(deltas, anchors):
    """Inverse of :func:`encode_boxes`."""
    ya, xa, ha, wa = _centre_size(anchors)
    y = deltas[..., 0] * ha + ya
    x = deltas[..., 1] * wa + xa
    h = tf.exp(tf.minimum(deltas[..., 2], _MAX_LOG_RATIO)) * ha
    w = tf.exp(tf.minimum(deltas[..., 3], _MAX_LOG_RATIO)) * wa
    return tf.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


def label_anchors(anchors, gt_boxes, gt_classes, positive_iou: float = 0.5, negative_iou: float = 0.4):
    """Match anchors to ground truth for a batch.

    Anchors with IoU >= ``positive_iou`` are positive, < ``negative_iou``
    negative, the rest ignored; each object also claims its best anchor, so
    small objects always have a positive.

    Returns ``classes`` [B, N] (the class of positives, -1 negatives, -2
    ignored) and ``box_targets`` [B, N, 4].
    """
    valid = gt_classes >= 0  # [B, M]
    iou = pairwise_iou(anchors[None], gt_boxes)  # [B, N, M]
    iou = tf.where(valid[:, None, :], iou, -1.0)
    best_iou = tf.reduce_max(iou, axis=2)
    best_gt = tf.argmax(iou, axis=2, output_type=tf.int32)
    best_anchor = tf.argmax(iou, axis=1, output_type=tf.int32)  # [B, M]
    claimed = tf.one_hot(best_anchor, tf.shape(anchors)[0], axis=1) * tf.cast(valid, tf.float32)[:, None, :]
    claimed_any = tf.reduce_max(claimed, axis=2) > 0
    matched = tf.where(claimed_any, tf.argmax(claimed, axis=2, output_type=tf.int32), best_gt)
    positive = (best_iou >= positive_iou) | claimed_any
    negative = (best_iou < negative_iou) & ~positive
    matched_classes = tf.gather(gt_classes, matched, batch_dims=1)
    classes = tf.where(positive, matched_classes, tf.where(negative, -1, -2))
    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)
    box_targets = encode_boxes(matched_boxes, anchors[None])
    return classes, tf.where(positive[..., None], box_targets, 0.0)
