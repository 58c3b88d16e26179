"""grad-norm: how strongly the untrained network's loss reacts to its weights (Abdelfattah et al., 2021)."""

from __future__ import annotations

import numpy as np

from nas.screening.model import loss_gradients, safe_log


def score(model, batch, loss_fn, seed: int) -> float:
    """Log of the L2 norm of the task loss's gradient over every trainable weight."""
    variables = model.trainable_variables
    grads = loss_gradients(model, batch, loss_fn, variables)
    total = sum(float(np.sum(np.square(g.numpy(), dtype=np.float64))) for g in grads if g is not None)
    return 0.5 * safe_log(total)
