"""Zen-score: expected response of the pre-head features to a small Gaussian perturbation (Lin et al., 2021).

Zen-NAS scores ``log E||f(x) - f(x + a e)||`` on the features before the
head, plus the log of each batch norm's batch standard deviation (the scale
BN divides out). Here ``x`` is the task's real batch, ``f`` the backbone's
endpoints concatenated, ``a = 0.01``, ``e`` seeded Gaussian noise; the batch
variances are computed from each batch norm's input in that pass, in float64.
(Inverting the moving-average update instead, ``(new - 0.99 old) / 0.01``,
multiplies float32 rounding by 100: a variance of 1e-6 comes out off by half, one of 1e-8 as zero.)
"""

from __future__ import annotations

import numpy as np

from nas.screening.model import backbone_of, safe_log

MIXUP = 0.01


def score(model, batch, loss_fn, seed: int) -> float:
    """``log mean_i sum |f(x_i) - f(x_i + a e_i)|`` plus ``sum_BN log sqrt(mean batch variance)`` (NaN: failed)."""
    import tensorflow as tf
    import tf_keras

    backbone = backbone_of(model)
    norms = [layer for layer in backbone.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    # The variance each batch norm normalises by, over every axis but its own (biased, as batch norm uses it).
    variances = [tf.math.reduce_variance(tf.cast(layer.input, tf.float64),
                                         axis=[a for a in range(len(layer.input.shape)) if a not in _axes(layer)])
                 for layer in norms]
    features = tf.nest.flatten(backbone.outputs)
    probe = tf_keras.Model(backbone.inputs, [*features, *variances])
    images = np.asarray(batch[0], np.float32)
    noise = np.random.default_rng(seed).standard_normal(images.shape).astype(np.float32)
    clean = tf.nest.flatten(probe(tf.constant(images), training=True))
    mixed = tf.nest.flatten(probe(tf.constant(images + MIXUP * noise), training=True))
    batch_variances = clean[len(features):]
    response = 0.0
    for a, b in zip(clean[:len(features)], mixed[:len(features)]):
        with np.errstate(invalid="ignore"):  # inf - inf from an overflowing model: a NaN, reported as failed
            diff = np.abs(a.numpy().astype(np.float64) - b.numpy())
        response += float(np.mean(np.sum(diff.reshape(diff.shape[0], -1), axis=1)))
    scaling = 0.0
    for variance in batch_variances:
        scaling += 0.5 * safe_log(float(np.mean(variance.numpy())))
    return safe_log(response / MIXUP) + scaling


def _axes(layer) -> list[int]:
    rank = len(layer.input.shape)
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return [a % rank for a in axes]
