"""What proxies share: the backbone inside a task model, its kernels, gradients of the task loss.

A proxy whose numbers overflow or turn NaN (a broken model, a flow beyond
float32) returns :data:`FAILED` rather than a sentinel: a sentinel of
-745 would be the *best* score under a minus proxy (``-snip``), and +745
the best under a plain one. The ensemble skips a failed member and a search
ranks a failed genome last whichever way round its proxy reads.

Examples:
    >>> from nas.screening.model import safe_log
    >>> safe_log(0.0) < -600
    True
    >>> safe_log(float("inf"))
    nan
"""

from __future__ import annotations

import math

# The score of a proxy that could not be computed: NaN, which ranks below every real score.
FAILED = math.nan


def backbone_of(model):
    """The decoded backbone nested in a task model (a layer with a ``genome``), or ``model`` itself."""
    if hasattr(model, "genome"):
        return model
    for layer in model.layers:
        if hasattr(layer, "genome"):
            return layer
    return model


def kernels(model) -> list:
    """Trainable convolution and dense kernels (what pruning-based proxies weigh)."""
    return [v for v in model.trainable_variables if "kernel" in v.name]


def loss_gradients(model, batch, loss_fn, variables):
    """Gradients of the task loss on ``batch`` (batch norm in training mode) for ``variables``."""
    import tensorflow as tf

    images, targets = batch
    with tf.GradientTape() as tape:
        loss = loss_fn(model(tf.constant(images), training=True), targets)
    return tape.gradient(loss, variables)


def is_piecewise_linear(model) -> bool:
    """True when every activation in ``model`` (nested models included) is ReLU or linear and nothing gates.

    Such a network with zero biases is positively homogeneous: scaling its
    input scales every activation alike (what float32 synflow relies on).
    """
    import tf_keras

    for layer in [model, *model.submodules]:
        if isinstance(layer, tf_keras.layers.Multiply):
            return False  # squeeze-excitation: a product of two paths
        activation = getattr(layer, "activation", None)
        if activation is not None and getattr(activation, "__name__", str(activation)) not in ("relu", "linear"):
            return False
    return True


def safe_log(value: float) -> float:
    """``log(value)`` with 0 mapped to a very low finite number (ranks stay defined); NaN or infinity to FAILED."""
    if not math.isfinite(value):
        return FAILED
    return math.log(value) if value > 0 else -745.0
