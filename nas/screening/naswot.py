"""NASWOT: how differently the untrained network's ReLUs cut up one batch (Mellor et al., 2021).

Each image's binary code is which ReLU units are on; the kernel
``K[i, j]`` counts the units where images ``i`` and ``j`` agree, and the
score is ``log |det K|``: networks that keep images apart score higher.
A NaN or infinite activation has no on/off pattern: the score then fails.
"""

from __future__ import annotations

import numpy as np

from nas.screening.model import FAILED, backbone_of


def score(model, batch, loss_fn, seed: int) -> float:
    """``log |det K|`` of the activation-pattern kernel of the backbone's ReLUs over the batch."""
    import tensorflow as tf
    import tf_keras

    backbone = backbone_of(model)
    relus = [layer.output for layer in backbone.layers
             if isinstance(layer, tf_keras.layers.Activation) and _is_relu(layer)]
    if not relus:
        raise ValueError("naswot needs ReLU activations; this backbone has none (decode with activation: relu)")
    probe = tf_keras.Model(backbone.inputs, relus)
    images = tf.constant(batch[0])
    n = int(images.shape[0])
    kernel = np.zeros((n, n), np.float64)
    for act in tf.nest.flatten(probe(images, training=True)):  # one ReLU: a tensor, not a list
        if not bool(tf.reduce_all(tf.math.is_finite(act))):
            return FAILED
        codes = tf.cast(tf.reshape(act, (n, -1)) > 0, tf.float32)
        on = tf.matmul(codes, codes, transpose_b=True)
        off = tf.matmul(1.0 - codes, 1.0 - codes, transpose_b=True)
        kernel += (on + off).numpy().astype(np.float64)
    _, logdet = np.linalg.slogdet(kernel)
    return float(logdet) if np.isfinite(logdet) else -745.0


def _is_relu(layer) -> bool:
    activation = layer.get_config().get("activation")
    return activation == "relu" or getattr(activation, "__name__", "") == "relu"
