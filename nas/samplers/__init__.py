"""Optuna samplers by name: the registry that ``search.sampler.name`` selects from.

Each entry builds a sampler from the experiment's ``options`` and the search
space; the experiment's seed is in ``options`` unless they set their own.
Every trial's draws come from that seed and the trial's number
(:mod:`nas.samplers.seeding`), so workers sharing a study do not propose the
same genomes: the genome samplers seed each trial themselves, and Optuna's own
samplers are rebuilt for each trial by a
:class:`~nas.samplers.seeding.TrialSeededSampler`.
Over-budget trials end pruned (constraint values stored with
``Trial.set_constraint``): TPE learns from pruned trials and steers away from
them, NSGA-II and GP see complete trials only. No ``constraints_func`` is
passed: Optuna 5 deprecates it, and it would store each value a second time.
Register your own
with :func:`register_sampler`; the experiment schema accepts every registered
name.

Examples:
    >>> from search_spaces.space import ScalePermutedSpace
    >>> sampler = make_sampler("random", {}, space=ScalePermutedSpace(), seed=0)
    >>> type(sampler.inner).__name__
    'RandomSampler'
"""

from __future__ import annotations

from typing import Callable

import optuna

from nas.samplers.base import GenomeSampler
from nas.samplers.evolution import RegularizedEvolutionSampler
from nas.samplers.predictor import PredictorSampler
from nas.samplers.seeding import TrialSeededSampler

# factory(options, *, space) -> optuna.samplers.BaseSampler
SamplerFactory = Callable[..., optuna.samplers.BaseSampler]
SAMPLERS: dict[str, SamplerFactory] = {}
# The class whose constructor takes a sampler's options, so a typo can be answered with the closest name.
_OPTION_HOLDERS: dict[str, type] = {}


def register_sampler(name: str, factory: SamplerFactory, options_of: type | None = None) -> SamplerFactory:
    """Make ``factory(options, *, space)`` available as ``sampler: {name: NAME}``.

    ``options_of`` is the class whose constructor receives the options (for typo hints).
    """
    SAMPLERS[name] = factory
    if options_of is not None:
        _OPTION_HOLDERS[name] = options_of
    return factory


def unknown_option_hint(err: TypeError, holder) -> str:
    """`` (did you mean 'x'?)`` for an unexpected keyword argument named in ``err``, given its class."""
    import inspect
    import re

    from nas.config import closest

    match = re.search(r"unexpected keyword argument '(\w+)'", str(err))
    if holder is None or match is None:
        return ""
    valid = [p for p in inspect.signature(holder).parameters if p not in ("self", "args", "kwargs")]
    return closest(match.group(1), valid)


def make_sampler(name: str, options: dict, *, space, seed: int):
    """The sampler registered as ``name``, seeded with ``seed`` unless ``options`` sets one.

    Each trial draws from that seed and its own number; a sampler that is not
    a :class:`~nas.samplers.base.GenomeSampler` (which does so itself) is
    wrapped in a :class:`~nas.samplers.seeding.TrialSeededSampler`.
    Raises ``ConfigError`` naming the bad option when the sampler rejects ``options``.
    """
    from nas.config import ConfigError, closest

    if name not in SAMPLERS:
        raise ConfigError(f"search.sampler.name: unknown sampler {name!r}{closest(name, SAMPLERS)}; "
                          f"registered: {', '.join(SAMPLERS)}")
    options = {"seed": seed, **options}
    try:
        sampler = SAMPLERS[name](options, space=space)
        if isinstance(sampler, GenomeSampler) or options["seed"] is None:
            return sampler
        return TrialSeededSampler(lambda trial_seed: SAMPLERS[name]({**options, "seed": trial_seed}, space=space),
                                  options["seed"])
    except TypeError as err:
        hint = unknown_option_hint(err, _OPTION_HOLDERS.get(name))
        raise ConfigError(f"search.sampler.options: {name} does not accept these options ({err}){hint}") from None
    except ValueError as err:
        raise ConfigError(f"search.sampler.options: {err}") from None


def _gp(options, *, space):
    try:
        import torch  # noqa: F401
    except ImportError:
        from nas.config import ConfigError

        raise ConfigError("search.sampler: gp needs PyTorch; pip install 'spinenas[gp]'") from None
    return optuna.samplers.GPSampler(**options)


register_sampler("tpe", lambda options, *, space: optuna.samplers.TPESampler(**options), optuna.samplers.TPESampler)
register_sampler("random", lambda options, *, space: optuna.samplers.RandomSampler(**options),
                 optuna.samplers.RandomSampler)
register_sampler("nsga2", lambda options, *, space: optuna.samplers.NSGAIISampler(**options),
                 optuna.samplers.NSGAIISampler)
register_sampler("cmaes", lambda options, *, space: optuna.samplers.CmaEsSampler(**options),
                 optuna.samplers.CmaEsSampler)
register_sampler("gp", _gp, optuna.samplers.GPSampler)
register_sampler("evolution", lambda options, *, space: RegularizedEvolutionSampler(space, **options),
                 RegularizedEvolutionSampler)
register_sampler("predictor", lambda options, *, space: PredictorSampler(space, **options), PredictorSampler)

__all__ = ["SAMPLERS", "GenomeSampler", "PredictorSampler", "RegularizedEvolutionSampler", "TrialSeededSampler",
           "make_sampler", "register_sampler", "unknown_option_hint"]
