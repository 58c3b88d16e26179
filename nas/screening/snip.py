"""snip: connection sensitivity at initialisation, summed over the network (Lee et al., 2019)."""

from __future__ import annotations

import numpy as np

from nas.screening.model import kernels, loss_gradients, safe_log


def score(model, batch, loss_fn, seed: int) -> float:
    """Log of the sum of ``|w * dL/dw|`` over convolution and dense kernels."""
    weights = kernels(model)
    grads = loss_gradients(model, batch, loss_fn, weights)
    total = sum(float(np.sum(np.abs(g.numpy() * w.numpy()), dtype=np.float64))
                for g, w in zip(grads, weights) if g is not None)
    return safe_log(total)
