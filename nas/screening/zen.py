"""Zen-score: expected response of the pre-head features to a small Gaussian perturbation (Lin et al., 2021).

Zen-NAS scores ``log E||f(x) - f(x + a e)||`` on the features before the
head, plus the log of each batch norm's batch standard deviation (the scale
BN divides out). Here ``x`` is the task's real batch, ``f`` the backbone's
endpoints concatenated, ``a = 0.01``, ``e`` seeded Gaussian noise; the batch
variances are read from the moving variances one training-mode pass updates.
"""

from __future__ import annotations

import numpy as np

from nas.screening.model import backbone_of, safe_log

MIXUP = 0.01


def score(model, batch, loss_fn, seed: int) -> float:
    """``log mean_i sum |f(x_i) - f(x_i + a e_i)|`` plus ``sum_BN log sqrt(mean batch variance)``."""
    import tensorflow as tf
    import tf_keras

    backbone = backbone_of(model)
    norms = [layer for layer in backbone.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    images = np.asarray(batch[0], np.float32)
    noise = np.random.default_rng(seed).standard_normal(images.shape).astype(np.float32)
    before = [layer.moving_variance.numpy() for layer in norms]
    clean = backbone(tf.constant(images), training=True)
    after = [layer.moving_variance.numpy() for layer in norms]
    mixed = backbone(tf.constant(images + MIXUP * noise), training=True)
    response = 0.0
    for level in clean:
        diff = np.abs(clean[level].numpy().astype(np.float64) - mixed[level].numpy())
        response += float(np.mean(np.sum(diff.reshape(diff.shape[0], -1), axis=1)))
    scaling = 0.0
    for layer, old, new in zip(norms, before, after):
        momentum = layer.momentum
        variance = (new - momentum * old) / (1.0 - momentum)  # the batch variance this pass used
        scaling += 0.5 * safe_log(float(np.mean(np.maximum(variance, 0.0))))
    return safe_log(response / MIXUP) + scaling
