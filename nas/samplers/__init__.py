"""Optuna samplers by name: the registry that ``search.sampler.name`` selects from.

Each entry builds a sampler from the experiment's ``options`` and the search
space; the experiment's seed is in ``options`` unless they set their own.
Constraint-aware samplers (TPE, NSGA-II, GP) read the values each trial
stores with ``Trial.set_constraint``. Register your own
with :func:`register_sampler`; the experiment schema accepts every registered
name.

Example:
    >>> from search_spaces import ScalePermutedSpace
    >>> sampler = make_sampler("random", {}, space=ScalePermutedSpace(), seed=0)
    >>> type(sampler).__name__
    'RandomSampler'
"""

from __future__ import annotations

from typing import Callable

import optuna

from nas.samplers.evolution import RegularizedEvolutionSampler
from nas.samplers.predictor import PredictorSampler

# factory(options, *, space) -> optuna.samplers.BaseSampler
SamplerFactory = Callable[..., optuna.samplers.BaseSampler]
SAMPLERS: dict[str, SamplerFactory] = {}


def register_sampler(name: str, factory: SamplerFactory) -> SamplerFactory:
    """Make ``factory(options, *, space)`` available as ``sampler: {name: NAME}``."""
    SAMPLERS[name] = factory
    return factory


def make_sampler(name: str, options: dict, *, space, seed: int):
    """The sampler registered as ``name``, seeded with ``seed`` unless ``options`` sets one.

    Raises ``ValueError`` naming the bad option when the sampler rejects ``options``.
    """
    from nas.config import ConfigError, closest

    if name not in SAMPLERS:
        raise ConfigError(f"search.sampler.name: unknown sampler {name!r}{closest(name, SAMPLERS)}; "
                          f"registered: {', '.join(SAMPLERS)}")
    options = {"seed": seed, **options}
    try:
        return SAMPLERS[name](options, space=space)
    except TypeError as err:
        raise ConfigError(f"search.sampler.options: {name} does not accept these options ({err})") from None
    except ValueError as err:
        raise ConfigError(f"search.sampler.options: {err}") from None


def _gp(options, *, space):
    try:
        import torch  # noqa: F401
    except ImportError:
        from nas.config import ConfigError

        raise ConfigError("search.sampler: gp needs PyTorch; pip install 'spinenas[gp]'") from None
    return optuna.samplers.GPSampler(**options)


register_sampler("tpe", lambda options, *, space: optuna.samplers.TPESampler(**options))
register_sampler("random", lambda options, *, space: optuna.samplers.RandomSampler(**options))
register_sampler("nsga2", lambda options, *, space: optuna.samplers.NSGAIISampler(**options))
register_sampler("cmaes", lambda options, *, space: optuna.samplers.CmaEsSampler(**options))
register_sampler("gp", _gp)
register_sampler("evolution", lambda options, *, space: RegularizedEvolutionSampler(space, **options))
register_sampler("predictor", lambda options, *, space: PredictorSampler(space, **options))

__all__ = ["SAMPLERS", "PredictorSampler", "RegularizedEvolutionSampler", "make_sampler", "register_sampler"]
