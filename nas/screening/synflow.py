"""synflow: data-free synaptic flow through the network with every weight made positive (Tanaka et al., 2020).

Batch norm runs in inference mode with its initial statistics (mean 0,
variance 1), so it is a positive linear map. The flow of SpineNet-sized
networks passes e**130, beyond float32's largest number (about e**88).
At initialisation every bias before the last layer is zero, so a ReLU
network is linear in its input: an input of ``c`` instead of ones, and ``s``
times the outputs' sum as ``R``, scale the forward values by ``c``, the
backward ones by ``s`` and the flow by exactly ``c * s``. The score is
computed in float32 at the mildest scale ``c = s = 2**k`` whose flow is
finite and reported as ``log(flow) - 2 k log 2``: the float64 value without a
float64 model. Only piecewise-linear networks (ReLU, no squeeze-excitation
gates) scale so; for any other the runner builds the model in float64 and
the flow is computed there unscaled. A flow that is not finite at any
scale (NaN weights, or more than float32 holds even at the smallest) is a
failed score, not the best one.
"""

from __future__ import annotations

import math

import numpy as np

from nas.screening.model import FAILED, kernels, safe_log

# Input scales tried in turn (powers of two, so the rescaling itself is exact).
SCALE_EXPONENTS = (0, -32, -64, -96)


def score(model, batch, loss_fn, seed: int) -> float:
    """Log of ``sum |w| * dR/d|w|`` over kernels, ``R`` the sum of every output for an all-ones image (NaN: failed)."""
    import tensorflow as tf

    for variable in model.variables:  # the runner restores the weights afterwards
        variable.assign(tf.abs(variable))
    weights = kernels(model)
    shape = (1, *np.asarray(batch[0]).shape[1:])
    dtype = weights[0].dtype if weights else tf.float32
    exponents = SCALE_EXPONENTS if dtype == tf.float32 else (0,)
    for exponent in exponents:
        scale = 2.0 ** exponent
        flow = _flow(model, weights, tf.fill(shape, tf.constant(scale, dtype)), scale)
        if flow == 0.0:
            return safe_log(0.0)  # no flow at all (no kernels, or every path cut): the lowest score
        if math.isfinite(flow):
            return safe_log(flow) - 2 * exponent * math.log(2.0)
    return FAILED  # NaN, or beyond every scale: nothing to rank it by


def _flow(model, weights, image, scale: float) -> float:
    import tensorflow as tf

    with tf.GradientTape() as tape:
        outputs = model(image, training=False)
        total = scale * tf.add_n([tf.reduce_sum(tf.cast(o, image.dtype)) for o in tf.nest.flatten(outputs)])
    grads = tape.gradient(total, weights)
    return sum(float(np.sum(g.numpy().astype(np.float64) * w.numpy().astype(np.float64)))
               for g, w in zip(grads, weights) if g is not None)
