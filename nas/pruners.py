"""Optuna pruners by name: the registry that ``search.pruner.name`` selects from.

Examples:
    >>> type(make_pruner("median", {"n_startup_trials": 2})).__name__
    'MedianPruner'
"""

from __future__ import annotations

from typing import Callable

import optuna

PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
}


def register_pruner(name: str, factory: Callable[..., optuna.pruners.BasePruner]) -> None:
    """Make ``factory(**options)`` available as ``pruner: {name: NAME}``."""
    PRUNERS[name] = factory


def make_pruner(name: str, options: dict):
    """The pruner registered as ``name``, built with ``options``; bad options raise a ``ConfigError``."""
    from nas.config import ConfigError, closest

    if name not in PRUNERS:
        raise ConfigError(f"search.pruner.name: unknown pruner {name!r}{closest(name, PRUNERS)}; "
                          f"registered: {', '.join(PRUNERS)}")
    try:
        return PRUNERS[name](**options)
    except TypeError as err:
        from nas.samplers import unknown_option_hint

        hint = unknown_option_hint(err, PRUNERS[name] if isinstance(PRUNERS[name], type) else None)
        raise ConfigError(f"search.pruner.options: {name} does not accept these options ({err}){hint}") from None
    except ValueError as err:
        raise ConfigError(f"search.pruner.options: {err}") from None
