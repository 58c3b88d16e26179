"""The classification head on a decoded backbone, and its loss and scores.

The head follows the SpineNet classification recipe of the public reference
code (its "all levels" aggregation): every output level is nearest-upsampled
to the finest level's size and the levels are averaged, optionally projected
by a 1x1 conv + batch norm + activation, globally average-pooled, passed
through dropout, and classified by one dense layer initialised with
N(0, 0.01).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from nas.tasks.classification.config import HeadConfig
from spinenet.blocks import NearestUpsampling


def classification_head(features: dict, num_classes: int, head: HeadConfig, *, activation: str = "relu",
                        norm_momentum: float = 0.99, norm_epsilon: float = 1e-3):
    """Logits [B, num_classes] from the feature pyramid ``features`` (``{'3': ..., '7': ...}``)."""
    levels = sorted(features, key=int)
    finest = int(levels[0])
    maps = []
    for level in levels:
        x = features[level]
        # The decoder makes sides divisible by 2**max_level, so every factor is exact.
        if int(level) > finest:
            x = NearestUpsampling(2 ** (int(level) - finest), name=f"head_up_l{level}")(x)
        maps.append(x)
    x = tf_keras.layers.Average(name="head_average")(maps) if len(maps) > 1 else maps[0]
    if head.projection_filters:
        x = tf_keras.layers.Conv2D(head.projection_filters, 1, use_bias=False, name="head_projection_conv")(x)
        x = tf_keras.layers.BatchNormalization(momentum=norm_momentum, epsilon=norm_epsilon,
                                               name="head_projection_bn")(x)
        x = tf_keras.layers.Activation(activation, name="head_projection_act")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if head.dropout:
        x = tf_keras.layers.Dropout(head.dropout, name="head_dropout")(x)
    # float32 under a mixed-precision policy: the softmax loss needs the logits' full precision.
    return tf_keras.layers.Dense(num_classes, name="head_logits", dtype="float32",
                                 kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01))(x)


def build_classifier(backbone: tf_keras.Model, num_classes: int, head: HeadConfig) -> tf_keras.Model:
    """``backbone`` (a decoded genome) plus :func:`classification_head`; outputs logits."""
    config = backbone.get_config() if hasattr(backbone, "genome") else {}
    inputs = tf_keras.Input(shape=backbone.input_shape[1:], name="image")
    logits = classification_head(backbone(inputs), num_classes, head,
                                 activation=config.get("activation", "relu"),
                                 norm_momentum=config.get("norm_momentum", 0.99),
                                 norm_epsilon=config.get("norm_epsilon", 1e-3))
    return tf_keras.Model(inputs, logits, name="classifier")


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example softmax cross-entropy against one-hot ``labels`` smoothed towards uniform."""
    num_classes = logits.shape[-1]
    targets = tf.one_hot(labels, num_classes, dtype=logits.dtype)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)


def top_k_hits(logits, labels, k: int):
    """Per-example 1.0 where ``labels`` is among the ``k`` highest logits (``k`` capped at the class count)."""
    k = min(k, logits.shape[-1])
    return tf.cast(tf.math.in_top_k(targets=labels, predictions=logits, k=k), tf.float32)
