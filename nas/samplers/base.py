"""What every genome sampler shares: an Optuna sampler over a :class:`ScalePermutedSpace`'s parameters.

A subclass implements ``sample_relative`` (return ``{}`` to fall back to
uniform random sampling) and reads the study through :meth:`complete_trials`;
the base provides the search-space plumbing Optuna asks for, a
``random.Random`` for genome edits seeded per trial (:func:`~nas.samplers.seeding.trial_seed`,
so workers sharing a study do not replay each other's draws), distinct mutants
that skip genomes other workers are training, and the hooks a search binds (a
screener scoring candidates, a cost model).

Examples:
    >>> import optuna
    >>> from search_spaces.space import ScalePermutedSpace
    >>> class FirstMutant(GenomeSampler):
    ...     def sample_relative(self, study, trial, search_space):
    ...         done = self.complete_trials(study)
    ...         return self.space.encode(self.mutants(self.space.from_params(done[0].params), 1)[0]) if done else {}
    >>> study = optuna.create_study(sampler=FirstMutant(ScalePermutedSpace(), seed=0))
    >>> study.optimize(lambda t: float(len(t.params)), n_trials=3)
"""

from __future__ import annotations

import math
import random

import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.samplers.seeding import trial_seed
from search_spaces.space import ScalePermutedSpace


class GenomeSampler(optuna.samplers.BaseSampler):
    """Base of the samplers that edit genomes: relative sampling over every space parameter, random otherwise."""

    def __init__(self, space: ScalePermutedSpace, seed: int | None = None):
        self.space = space
        self.seed = seed
        self._rng = random.Random(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._screener = None
        self._cost = None

    def before_trial(self, study, trial) -> None:
        if self.seed is not None:  # this trial's draws, whichever worker runs it
            seed = trial_seed(self.seed, trial.number)
            self._rng = random.Random(seed)
            self._random = optuna.samplers.RandomSampler(seed=seed)

    def bind(self, *, screener=None, cost=None) -> None:
        """Use the search's screener (a :class:`nas.search.screen.Screener`) and cost model (genome -> params, madds)."""
        self._screener, self._cost = screener, cost

    @staticmethod
    def mark_screened(study, trial, candidates: int) -> None:
        """Record on ``trial`` that its genome is the screening proxy's pick of ``candidates`` (the proxy check
        tells such trials apart: :func:`nas.search.proxy_check.origin`)."""
        # A sampler holds only the frozen trial; Optuna's own samplers write trial attributes through the storage.
        study._storage.set_trial_user_attr(trial._trial_id, "screened_from", candidates)

    def reseed_rng(self) -> None:
        self._rng = random.Random()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {name: IntDistribution(low, high) for name, (low, high) in self.space.parameters.items()}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def complete_trials(self, study, feasible_only: bool = False) -> list[FrozenTrial]:
        """Complete trials with a finite value that set every space parameter (oldest first)."""
        names = self.space.parameters.keys()
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value) and names <= t.params.keys()
                and not (feasible_only and t.user_attrs.get("infeasible"))]

    @staticmethod
    def in_flight(study) -> set[str]:
        """Fingerprints of the genomes that running trials (this worker's or others') are training."""
        return {t.user_attrs["fingerprint"] for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if "fingerprint" in t.user_attrs}

    def mutant(self, genome, avoid: set[str], tries: int = 10):
        """A one-edit mutant of ``genome`` whose fingerprint is not in ``avoid`` (the last try when all are)."""
        for _ in range(tries):
            child = self.space.mutate(genome, self._rng)
            if child.fingerprint not in avoid:
                break
        return child

    def mutants(self, genome, count: int, first=None, avoid: set[str] = frozenset()) -> list:
        """Up to ``count`` distinct one-edit mutants of ``genome`` not in ``avoid`` (``first`` leads when given)."""
        out = [first] if first is not None else []
        seen = {g.fingerprint for g in out} | set(avoid)
        for _ in range(count * 5):
            if len(out) >= count:
                break
            mutant = self.space.mutate(genome, self._rng)
            if mutant.fingerprint not in seen:
                seen.add(mutant.fingerprint)
                out.append(mutant)
        return out
