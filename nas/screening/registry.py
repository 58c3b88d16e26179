"""Zero-cost proxies by name: the registry ``search.screening.proxy`` and ``spinenas score`` select from.

A model proxy is ``score(model, batch, loss_fn, seed) -> float``: ``model`` the
task's whole Keras model (backbone plus head) freshly initialised, ``batch``
``(images, targets)`` from :meth:`nas.tasks.base.Task.minibatch`, ``loss_fn``
from :meth:`nas.tasks.base.Task.loss_fn`. Higher means "predicted better".
The runner restores the weights after each proxy, so a proxy may change them.

Cost proxies (``params``, ``multiply_adds``) come from the analytic cost model
without building anything; they are the baselines every proxy must beat.
``ensemble`` is the mean rank of :data:`ENSEMBLE_MEMBERS` over the genomes
scored together.

Example:
    >>> sorted(PROXIES)
    ['grad_norm', 'naswot', 'snip', 'synflow', 'zen']
    >>> proxy_names()[-3:]
    ['params', 'multiply_adds', 'ensemble']
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

# score(model, batch, loss_fn, seed) -> float
ProxyScore = Callable[..., float]


@dataclasses.dataclass(frozen=True)
class Proxy:
    """A registered model proxy: its name, ``module:function`` and one line on what it measures."""

    name: str
    target: str
    description: str

    def load(self) -> ProxyScore:
        """The scoring function (imported on first use: TensorFlow loads only where proxies run)."""
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)


PROXIES: dict[str, Proxy] = {}
COST_PROXIES = {"params": "parameters of backbone plus head (cost model)",
                "multiply_adds": "multiply-adds of backbone plus head at the task's image size (cost model)"}
ENSEMBLE = "ensemble"
ENSEMBLE_MEMBERS = ("naswot", "synflow", "snip", "grad_norm", "zen")


def register_proxy(name: str, target: str, description: str) -> Proxy:
    """Make ``module:function`` (a :data:`ProxyScore`) available as proxy ``name``."""
    PROXIES[name] = Proxy(name, target, description)
    return PROXIES[name]


def proxy_names() -> list[str]:
    """Every proxy name: model proxies, cost baselines, then the ensemble."""
    return [*PROXIES, *COST_PROXIES, ENSEMBLE]


def expand(names) -> list[str]:
    """``names`` with ``ensemble`` replaced by its members (kept once each, in order); unknown names raise."""
    known = proxy_names()
    out = []
    for name in names:
        if name not in known:
            from nas.config import ConfigError, closest

            raise ConfigError(f"unknown proxy {name!r}{closest(name, known)}; proxies: {', '.join(known)}")
        for member in (ENSEMBLE_MEMBERS if name == ENSEMBLE else (name,)):
            if member not in out:
                out.append(member)
    return out


register_proxy("naswot", "nas.screening.naswot:score",
               "log-determinant of the ReLU activation-pattern kernel over the batch (Mellor et al., 2021)")
register_proxy("synflow", "nas.screening.synflow:score",
               "log synaptic flow: sum of |w| * dR/d|w| for an all-ones input (Tanaka et al., 2020)")
register_proxy("snip", "nas.screening.snip:score", "log sum of |w * dL/dw| over kernels (Lee et al., 2019)")
register_proxy("grad_norm", "nas.screening.grad_norm:score", "log L2 norm of the loss gradient over all weights")
register_proxy("zen", "nas.screening.zen:score",
               "log Gaussian-perturbation response of the pre-head features plus BN scaling (Lin et al., 2021)")
