"""synflow: data-free synaptic flow through the network with every weight made positive (Tanaka et al., 2020).

Batch norm runs in inference mode with its initial statistics (mean 0,
variance 1), so it is a positive linear map. The flow of SpineNet-sized
networks passes e**90, beyond float32: the runner builds models in float64,
and the score is a log.
"""

from __future__ import annotations

import math

import numpy as np

from nas.screening.model import kernels, safe_log



def score(model, batch, loss_fn, seed: int) -> float:
    """Log of ``sum |w| * dR/d|w|`` over kernels, ``R`` the sum of every output for an all-ones image."""
    import tensorflow as tf

    for variable in model.variables:  # the runner restores the weights afterwards
        variable.assign(tf.abs(variable))
    weights = kernels(model)
    shape = (1, *np.asarray(batch[0]).shape[1:])
    image = tf.ones(shape, weights[0].dtype if weights else tf.float32)
    with tf.GradientTape() as tape:
        outputs = model(image, training=False)
        total = tf.add_n([tf.reduce_sum(o) for o in tf.nest.flatten(outputs)])
    grads = tape.gradient(total, weights)
    flow = sum(float(np.sum(g.numpy().astype(np.float64) * w.numpy()))
               for g, w in zip(grads, weights) if g is not None)
    return safe_log(flow) if math.isfinite(flow) else 745.0  # beyond float64: more flow than anything finite
