"""RetinaNet on a decoded backbone: shared class and box subnets, per-level batch norm, losses."""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras

from nas.tasks.detection.config import HeadConfig, LossConfig

# Classifier bias so every anchor starts at probability 0.01 (Lin et al., 2017).
_PRIOR_PROBABILITY = 0.01
PRIOR_BIAS = -math.log((1 - _PRIOR_PROBABILITY) / _PRIOR_PROBABILITY)


def retinanet_head(features: dict, num_classes: int, head: HeadConfig, *, activation: str = "relu",
                   norm_momentum: float = 0.99, norm_epsilon: float = 1e-3):
    """Class logits [B, N, num_classes] and box deltas [B, N, 4] over every level of ``features``.

    Convolutions are shared across levels; each level has its own batch norm.
    Under a mixed-precision policy the two final convolutions still run in
    float32: logits feed the focal loss and deltas the box decoding, where
    bfloat16's 8-bit mantissa would cost accuracy.
    """
    A = head.num_anchors

    def conv(filters, name, std=0.01, bias=0.0, dtype=None):
        if head.separable:  # 3x3 depthwise then 1x1 pointwise, one layer
            return tf_keras.layers.SeparableConv2D(
                filters, 3, padding="same", name=name, dtype=dtype,
                pointwise_initializer=tf_keras.initializers.RandomNormal(stddev=std),
                bias_initializer=tf_keras.initializers.Constant(bias))
        return tf_keras.layers.Conv2D(
            filters, 3, padding="same", name=name, dtype=dtype,
            kernel_initializer=tf_keras.initializers.RandomNormal(stddev=std),
            bias_initializer=tf_keras.initializers.Constant(bias))

    subnets = {
        "class": ([conv(head.num_filters, f"head_class_conv{i}") for i in range(head.num_convs)],
                  conv(A * num_classes, "head_class_logits", dtype="float32",
                       bias=PRIOR_BIAS), num_classes),
        "box": ([conv(head.num_filters, f"head_box_conv{i}") for i in range(head.num_convs)],
                conv(A * 4, "head_box_deltas", std=1e-5, dtype="float32"), 4),
    }
    outputs = {"class": [], "box": []}
    for level in sorted(features, key=int):
        for kind, (convs, final, width) in subnets.items():
            x = features[level]
            for i, layer in enumerate(convs):
                x = layer(x)
                x = tf_keras.layers.BatchNormalization(momentum=norm_momentum, epsilon=norm_epsilon,
                                                       name=f"head_{kind}_bn{i}_l{level}")(x)
                x = tf_keras.layers.Activation(activation, name=f"head_{kind}_act{i}_l{level}")(x)
            x = final(x)
            outputs[kind].append(tf_keras.layers.Reshape((-1, width), name=f"head_{kind}_flat_l{level}",
                                                         dtype="float32")(x))
    classes = tf_keras.layers.Concatenate(axis=1, name="classes", dtype="float32")(outputs["class"])
    boxes = tf_keras.layers.Concatenate(axis=1, name="boxes", dtype="float32")(outputs["box"])
    return classes, boxes


def build_detector(backbone: tf_keras.Model, num_classes: int, head: HeadConfig) -> tf_keras.Model:
    """RetinaNet: ``backbone`` (a decoded genome) plus :func:`retinanet_head`."""
    config = backbone.get_config() if hasattr(backbone, "genome") else {}
    inputs = tf_keras.Input(shape=backbone.input_shape[1:], name="image")
    classes, boxes = retinanet_head(backbone(inputs), num_classes, head,
                                    activation=config.get("activation", "relu"),
                                    norm_momentum=config.get("norm_momentum", 0.99),
                                    norm_epsilon=config.get("norm_epsilon", 1e-3))
    return tf_keras.Model(inputs, {"classes": classes, "boxes": boxes}, name="retinanet")


def detection_losses(outputs: dict, classes, box_targets, loss: LossConfig):
    """Focal loss and Huber box loss, each normalised by the number of positive anchors.

    ``classes`` holds each anchor's class (-1 negative, -2 ignored), as
    :func:`~nas.tasks.detection.anchors.label_anchors` returns it.
    """
    logits = outputs["classes"]
    num_classes = logits.shape[-1]
    positive = classes >= 0
    counted = tf.cast(classes >= -1, logits.dtype)
    normaliser = tf.reduce_sum(tf.cast(positive, logits.dtype)) + 1.0
    onehot = tf.one_hot(tf.maximum(classes, 0), num_classes, dtype=logits.dtype) * tf.cast(positive, logits.dtype)[..., None]
    probs = tf.sigmoid(logits)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits)
    p_t = onehot * probs + (1 - onehot) * (1 - probs)
    alpha_t = onehot * loss.focal_alpha + (1 - onehot) * (1 - loss.focal_alpha)
    focal = alpha_t * tf.pow(1 - p_t, loss.focal_gamma) * cross_entropy
    class_loss = tf.reduce_sum(focal * counted[..., None]) / normaliser
    error = tf.abs(outputs["boxes"] - box_targets)
    delta = loss.huber_delta
    huber = tf.where(error < delta, 0.5 * error**2, delta * (error - 0.5 * delta))
    box_loss = tf.reduce_sum(huber * tf.cast(positive, logits.dtype)[..., None]) / (normaliser * 4)
    return class_loss, box_loss
