"""Regularized (aging) evolution as an Optuna sampler (Real et al., 2019, arXiv 1802.01548).

The population is the ``population_size`` most recent complete trials, so the
oldest member ages out as each new one finishes. A child is a one-edit
mutation, through the search space's encoding, of the best of
``tournament_size`` members drawn at random. Until the population is full the
sampler draws uniformly at random. With screening bound (``search.screening``,
through :meth:`RegularizedEvolutionSampler.bind`) the child is the best-scored
of ``candidates`` distinct mutants of the winner.

Examples:
    >>> import optuna
    >>> from search_spaces.space import ScalePermutedSpace
    >>> from nas.samplers.evolution import RegularizedEvolutionSampler
    >>> space = ScalePermutedSpace()
    >>> sampler = RegularizedEvolutionSampler(space, population_size=8, tournament_size=3, seed=0)
    >>> study = optuna.create_study(direction="maximize", sampler=sampler)
    >>> study.optimize(lambda t: -len(space.sample(t).to_yaml()), n_trials=12)
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from nas.samplers.base import GenomeSampler
from nas.trials import sign
from search_spaces.space import ScalePermutedSpace


class RegularizedEvolutionSampler(GenomeSampler):
    """Aging evolution over a :class:`ScalePermutedSpace` for single-objective studies.

    Args:
        space: the search space whose parameters the trials suggest.
        population_size: how many of the latest complete trials form the population.
        tournament_size: how many members compete to become the parent.
        seed: seed of the sampler's random choices.
    """

    def __init__(self, space: ScalePermutedSpace, *, population_size: int = 50, tournament_size: int = 10,
                 seed: int | None = None):
        if population_size < 2:
            raise ValueError(f"population_size must be at least 2, got {population_size}")
        if not 1 <= tournament_size <= population_size:
            raise ValueError(f"tournament_size must be in [1, population_size={population_size}], got {tournament_size}")
        super().__init__(space, seed)
        self.population_size = population_size
        self.tournament_size = tournament_size

    def sample_relative(self, study, trial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if len(study.directions) > 1:
            raise ValueError("RegularizedEvolutionSampler supports single-objective studies only; "
                             "use nsga2 for several objectives")
        population = self.complete_trials(study)[-self.population_size:]
        if len(population) < self.population_size:
            return {}  # fill the population at random (sample_independent)
        contestants = self._rng.sample(population, self.tournament_size)
        parent = max(contestants, key=lambda t: _fitness(t, sign(study.direction)))
        genome = self.space.from_params(parent.params)
        busy = self.in_flight(study)  # another worker's child would be trained twice
        child = self.mutant(genome, busy)
        if self._screener is not None and self._screener.settings.candidates > 1:
            child = self._screened_child(study, trial, genome, child, busy)
        return self.space.encode(child)

    def _screened_child(self, study, trial, genome, first, busy):
        from nas.trials import TrialFailed

        mutants = self.mutants(genome, self._screener.settings.candidates, first, avoid=busy)
        try:
            best = self._screener.best(mutants)
        except TrialFailed as err:  # scoring broke: an unscreened mutant keeps the search going
            self._screener.log(f"screening failed, using an unscreened mutant: {err}")
            return first
        self.mark_screened(study, trial, len(mutants))
        return best


def _fitness(trial: FrozenTrial, sign: float) -> tuple:
    """Feasible trials beat infeasible ones; then the better objective value wins."""
    constraints = trial.user_attrs.get("constraints") or []
    violation = sum(max(0.0, c) for c in constraints)
    return (-violation, sign * trial.value)
