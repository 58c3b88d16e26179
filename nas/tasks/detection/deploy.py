"""The deployed detector: RetinaNet, box decoding and class-aware NMS in LiteRT built-in ops; and its COCO AP.

Training's evaluation (:func:`nas.tasks.detection.evaluate.make_postprocess`)
uses ``tf.image.combined_non_max_suppression``, which LiteRT has no
built-in kernel for. The deployed post-process gets the same result from
ops it has: per image, the ``pre_nms_top_k`` anchors by best class score,
then one ``NonMaxSuppressionV5`` (LiteRT's NON_MAX_SUPPRESSION_V5) over every
(anchor, class) pair, the boxes of each class shifted by the class index
times a step wider than the image so boxes of different classes never
overlap. Boxes are clipped to the image first (the shift needs bounded boxes),
so an IoU near an edge may differ slightly from training's evaluation.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nas.tasks.deploy import InferenceFunction
from nas.tasks.detection.anchors import decode_boxes, generate_anchors
from nas.tasks.detection.annotations import CocoSplit
from nas.tasks.detection.coco import score_detections
from nas.tasks.detection.config import EvaluationConfig
from nas.tasks.detection.pixel_cache import load_resized, resized_sizes

OUTPUTS = {
    "boxes": "[B, D, 4] float32: ymin, xmin, ymax, xmax in input pixels, clipped to the image; rows past "
             "num_detections are 0",
    "scores": "[B, D] float32: sigmoid class score of each detection, highest first; 0 past num_detections",
    "classes": "[B, D] int32: class index 0..C-1 (the training split's categories in id order); 0 past "
               "num_detections",
    "num_detections": "[B] int32: how many of the D rows of each image are detections",
}

# How an image becomes the input, as training's evaluation prepares it (see padded_image).
RESIZE = ("RGB, resized (aspect kept) so its long side is S, then zero-padded at the bottom and right to S x S; "
          "divide output boxes by that resize scale for original pixels")


def detection_inference(model, train_config, num_classes: int) -> InferenceFunction:
    """The deployed detector of ``model`` (:func:`~nas.tasks.detection.head.build_detector`'s RetinaNet).

    Its anchors are the ones training matched at ``task.data.image_size``; its
    post-process is ``task.evaluation``'s (pre-NMS top-k, NMS IoU, score
    threshold, ``max_detections`` rows per image).
    """
    task = train_config.task
    size = task.data.image_size
    logits = model.output["classes"]
    if logits.shape[-1] != num_classes:
        raise ValueError(f"the model has {logits.shape[-1]} classes, not {num_classes}")
    genome = _genome(model)
    anchors = generate_anchors(size, genome.min_level, genome.max_level, task.head.num_scales,
                               task.head.aspect_ratios, task.head.anchor_size)
    if anchors.shape[0] != logits.shape[1]:
        raise ValueError(f"the model predicts {logits.shape[1]} anchors, the head config makes {anchors.shape[0]}")
    evaluation = task.evaluation

    def call(images):
        outputs = model(images / 127.5 - 1.0, training=False)
        return postprocess(outputs["classes"], outputs["boxes"], anchors, evaluation, size)

    details = {"anchors": int(anchors.shape[0]), "pre_nms_top_k": min(evaluation.pre_nms_top_k, anchors.shape[0]),
               "nms_iou": evaluation.nms_iou, "score_threshold": evaluation.score_threshold,
               "max_detections": evaluation.max_detections, "nms": "class-aware (per-class NMS, one op)"}
    return InferenceFunction(call, OUTPUTS, model=model, resize=RESIZE, details=details)


def _genome(model):
    for layer in model.layers:
        if hasattr(layer, "genome"):
            return layer.genome
    raise ValueError(f"model {model.name!r} holds no decoded backbone (a layer with a genome)")


def postprocess(logits, deltas, anchors: np.ndarray, evaluation: EvaluationConfig, image_size: int) -> dict:
    """Detections of head outputs ``logits`` [B, N, C] and ``deltas`` [B, N, 4] against ``anchors`` [N, 4].

    Returns the :data:`OUTPUTS` tensors, ``max_detections`` rows per image.
    With a known batch size the images are unrolled (LiteRT's batch-1 file
    then has no loop); otherwise ``tf.map_fn`` runs them one by one.
    """
    anchors = tf.constant(anchors)
    boxes = tf.clip_by_value(decode_boxes(deltas, anchors[None]), 0.0, float(image_size))
    scores = tf.sigmoid(logits)

    def one(args):
        return _detect_one(args[0], args[1], evaluation, image_size)

    if boxes.shape[0] is not None:
        per_image = [one((boxes[i], scores[i])) for i in range(boxes.shape[0])]
        return {name: tf.stack([d[name] for d in per_image]) for name in OUTPUTS}
    signature = {"boxes": tf.TensorSpec([evaluation.max_detections, 4], tf.float32),
                 "scores": tf.TensorSpec([evaluation.max_detections], tf.float32),
                 "classes": tf.TensorSpec([evaluation.max_detections], tf.int32),
                 "num_detections": tf.TensorSpec([], tf.int32)}
    return tf.map_fn(one, (boxes, scores), fn_output_signature=signature)


def _detect_one(boxes, scores, evaluation: EvaluationConfig, image_size: int) -> dict:
    """One image's detections: ``boxes`` [N, 4] (clipped), ``scores`` [N, C]."""
    count, num_classes = boxes.shape[0], scores.shape[1]
    k = min(evaluation.pre_nms_top_k, count)
    _, top = tf.math.top_k(tf.reduce_max(scores, axis=-1), k=k)
    boxes, scores = tf.gather(boxes, top), tf.gather(scores, top)
    # Candidates are (anchor, class) pairs, anchor-major like the reshaped scores.
    candidate_boxes = tf.reshape(tf.tile(boxes[:, None, :], [1, num_classes, 1]), [k * num_classes, 4])
    candidate_classes = tf.tile(tf.range(num_classes, dtype=tf.float32), [k])
    # Clipped boxes span at most image_size, so a step of image_size + 1 keeps classes apart.
    shifted = candidate_boxes + (candidate_classes * float(image_size + 1))[:, None]
    size = evaluation.max_detections
    selected, selected_scores, valid = tf.raw_ops.NonMaxSuppressionV5(
        boxes=shifted, scores=tf.reshape(scores, [k * num_classes]), max_output_size=size,
        iou_threshold=evaluation.nms_iou, score_threshold=evaluation.score_threshold, soft_nms_sigma=0.0,
        pad_to_max_output_size=True)
    kept = tf.range(size) < valid
    return {"boxes": tf.where(kept[:, None], tf.gather(candidate_boxes, selected), 0.0),
            "scores": tf.where(kept, selected_scores, 0.0),
            "classes": tf.where(kept, tf.cast(tf.gather(candidate_classes, selected), tf.int32), 0),
            "num_detections": tf.cast(valid, tf.int32)}


def padded_image(path: str, resized, image_size: int) -> np.ndarray:
    """The image at ``path`` resized to ``resized`` (height, width) and zero-padded at the bottom and right.

    What training and evaluation feed the model (before normalisation): float32 [S, S, 3] in 0..255.
    """
    image = load_resized(path, resized)
    padded = np.zeros([image_size, image_size, 3], np.float32)
    padded[:image.shape[0], :image.shape[1]] = image[:image_size, :image_size]
    return padded


def deployed_detections(run, split: CocoSplit, image_size: int, batch_size: int = 1) -> list[dict]:
    """COCO-format detections (original image coordinates) of a deployed detector on every image of ``split``.

    ``run(images)`` takes float32 pixels [B, S, S, 3] and returns the
    :data:`OUTPUTS` arrays: a :class:`~spinenet.latency.runtime.LiteRTModel`'s
    ``run`` (``batch_size`` 1) or :func:`nas.tasks.deploy.load_saved_model`'s
    function. Each class index is mapped to its category id, each box divided
    by the image's resize scale and clipped to the original image, and boxes
    with no area left dropped, as training's evaluation does.
    """
    scales, resized = resized_sizes(split, image_size)
    results = []
    for start in range(0, len(split), batch_size):
        indices = range(start, min(start + batch_size, len(split)))
        images = np.stack([padded_image(split.image_paths[i], resized[i], image_size) for i in indices])
        outputs = run(images)
        for row, i in enumerate(indices):
            height, width = split.image_sizes[i]
            count = int(outputs["num_detections"][row])
            boxes = np.asarray(outputs["boxes"][row, :count], np.float32) / scales[i]
            boxes = np.clip(boxes, 0, [height, width, height, width])
            for (y0, x0, y1, x1), score, label in zip(boxes, outputs["scores"][row, :count],
                                                      outputs["classes"][row, :count]):
                if x1 - x0 <= 0 or y1 - y0 <= 0:
                    continue
                results.append({"image_id": split.image_ids[i], "category_id": int(split.category_ids[int(label)]),
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "score": float(score)})
    return results


def deployed_ap(run, split: CocoSplit, image_size: int, batch_size: int = 1, per_class: bool = False) -> dict:
    """COCO AP (AP, AP50, AP75, APs, APm, APl) of a deployed detector ``run`` on ``split``.

    See :func:`deployed_detections` for ``run``; scored by
    :func:`nas.tasks.detection.coco.score_detections`, training's scorer.
    """
    return score_detections(split, deployed_detections(run, split, image_size, batch_size), per_class=per_class)


__all__ = ["OUTPUTS", "deployed_ap", "deployed_detections", "detection_inference", "padded_image", "postprocess"]
