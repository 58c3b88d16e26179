"""Zero-cost proxies by name: the registry ``search.screening.proxy`` and ``spinenas score`` select from.

A model proxy is ``score(model, batch, loss_fn, seed) -> float``: ``model`` the
task's whole Keras model (backbone plus head) freshly initialised, ``batch``
``(images, targets)`` from :meth:`nas.tasks.base.Task.minibatch`, ``loss_fn``
from :meth:`nas.tasks.base.Task.loss_fn`. Higher means "predicted better".
The runner restores the weights after each proxy, so a proxy may change them.

Cost proxies (``params``, ``multiply_adds``) come from the analytic cost model
without building anything; they are the baselines every proxy must beat.
``ensemble`` is the mean rank of :data:`ENSEMBLE_MEMBERS` over the genomes
scored together. Where a search should prefer *low* scores (on the shapes
proxy smaller networks trained better), name the proxy with a leading minus:
``-multiply_adds`` ranks the cheapest genome first.

Examples:
    >>> sorted(PROXIES)
    ['grad_norm', 'naswot', 'snip', 'synflow', 'zen']
    >>> proxy_names()[-3:]
    ['params', 'multiply_adds', 'ensemble']
    >>> oriented("-multiply_adds")
    ('multiply_adds', -1.0)
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


def oriented(name: str) -> tuple[str, float]:
    """``(proxy, sign)``: ``-name`` means the lowest score predicts best (sign -1), ``name`` the highest (+1)."""
    return (name[1:], -1.0) if name.startswith("-") else (name, 1.0)


def check_name(name: str) -> str:
    """``name`` when it names a proxy (optionally with a leading minus); otherwise a ConfigError saying which exist."""
    known = proxy_names()
    if oriented(name)[0] not in known:
        from nas.config import ConfigError, closest

        # The suggestion keeps the name's sign: copying it must not turn the search round.
        signed = [f"-{k}" for k in known] if name.startswith("-") else known
        raise ConfigError(f"unknown proxy {name!r}{closest(name, signed)}; proxies: {', '.join(known)} "
                          "(a leading minus prefers low scores)")
    return name


def expand(names) -> list[str]:
    """``names`` without signs, ``ensemble`` replaced by its members (each once, in order); unknown names raise."""
    out = []
    for name in names:
        name = oriented(check_name(name))[0]
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
