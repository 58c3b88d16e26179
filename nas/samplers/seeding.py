"""Random draws that depend on the trial, not on the worker that runs it.

Workers on one study each build their own sampler. Seeded alike, two workers
with the same history would draw the same proposals, and half of a two-worker
search would train genomes twice. So every sampler spinenas builds draws
trial ``n``'s randomness from ``trial_seed(seed, n)``: one worker and many
explore the same sequence of proposals (given the same history), and a rerun
with one worker repeats a run.

Examples:
    >>> import optuna
    >>> sampler = TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), seed=0)
    >>> study = optuna.create_study(sampler=sampler)
    >>> study.optimize(lambda t: t.suggest_int("x", 0, 10**9), n_trials=2)
    >>> first = [t.params["x"] for t in study.trials]
    >>> again = optuna.create_study(sampler=TrialSeededSampler(sampler.build, seed=0))
    >>> again.optimize(lambda t: t.suggest_int("x", 0, 10**9), n_trials=2)
    >>> [t.params["x"] for t in again.trials] == first and first[0] != first[1]
    True
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

SEED_ATTR = "sampler_seed"


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s random draws in a study seeded with ``seed`` (a 32-bit integer).

    >>> trial_seed(0, 1) == trial_seed(0, 1) != trial_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(number)]).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler built afresh for each trial, seeded with :func:`trial_seed` of the trial's number.

    Optuna's samplers keep one random state per instance, so each worker's
    copy would replay the same draws. The samplers read their history from the
    study's storage (NSGA-II's generations, CMA-ES's state), so a new instance
    per trial decides as the long-lived one would, but from the trial's own draws.

    Args:
        build: ``seed -> sampler``.
        seed: the study's seed (the experiment's, or the sampler options' own).
    """

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self.build, self.seed = build, int(seed)
        self._number: int | None = None
        self._sampler = build(self.seed)  # builds once now, so bad options fail before any trial

    @property
    def inner(self) -> optuna.samplers.BaseSampler:
        """The sampler of the current trial."""
        return self._sampler

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if trial.number != self._number:
            self._number, self._sampler = trial.number, self.build(trial_seed(self.seed, trial.number))
        return self._sampler

    def before_trial(self, study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial: FrozenTrial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        # Draws come from the trial number; there is no per-process state to reseed.
        pass
