"""A predictor-guided sampler: a surrogate of the trained objective picks among mutations of the best trials.

Until ``n_startup_trials`` trials are complete it samples at random. Then,
for every new trial, it refits a bootstrap ensemble of gradient-boosted trees
(:class:`~nas.samplers.surrogate.Surrogate`) on the complete trials'
interpretable features (blocks per level, residual share, depth, cross-scale
edges, resampling counts, params, multiply-adds, and the zero-cost scores
when every trial recorded them), proposes ``n_candidates`` genomes (mutations
of the ``top_parents`` best trials, a quarter at random), and returns the one
with the highest expected improvement. With screening on, the best
``screening.candidates`` by a structure-only fit are scored with the proxy
and the final pick uses a fit that includes the proxy scores.

Examples:
    >>> import optuna
    >>> from search_spaces.space import ScalePermutedSpace
    >>> from search_spaces.features import genome_features
    >>> from nas.samplers.predictor import PredictorSampler
    >>> space = ScalePermutedSpace()
    >>> sampler = PredictorSampler(space, n_startup_trials=4, n_candidates=16, seed=0)
    >>> study = optuna.create_study(direction="maximize", sampler=sampler)
    >>> study.optimize(lambda t: genome_features(space.sample(t))["depth"], n_trials=6)
    >>> len(study.trials)
    6
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution

from nas.samplers.base import GenomeSampler
from nas.samplers.surrogate import Surrogate, design_matrix, expected_improvement
from nas.trials import sign
from search_spaces.space import ScalePermutedSpace
from spinenet.cost import network_cost


class PredictorSampler(GenomeSampler):
    """Expected improvement of a tree-ensemble surrogate over mutations of the best trials (one objective).

    Args:
        space: the search space whose parameters the trials suggest.
        n_startup_trials: complete trials sampled at random before the surrogate is used.
        n_candidates: genomes proposed per trial.
        top_parents: how many of the best trials are mutated.
        n_models: surrogate ensemble members.
        seed: seed of the sampler's random choices and of the surrogate.
    """

    def __init__(self, space: ScalePermutedSpace, *, n_startup_trials: int = 10, n_candidates: int = 64,
                 top_parents: int = 5, n_models: int = 5, seed: int | None = None):
        if n_startup_trials < 2:
            raise ValueError(f"n_startup_trials must be at least 2, got {n_startup_trials}")
        if n_candidates < 1 or top_parents < 1 or n_models < 1:
            raise ValueError("n_candidates, top_parents and n_models must be at least 1")
        super().__init__(space, seed)
        self.n_startup_trials, self.n_candidates, self.top_parents, self.n_models = \
            n_startup_trials, n_candidates, top_parents, n_models
        self._costs: dict[str, tuple[float, float]] = {}

    def sample_relative(self, study, trial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if len(study.directions) > 1:
            raise ValueError("PredictorSampler supports single-objective studies only; use nsga2 for several")
        done = self.complete_trials(study, feasible_only=True)
        if len(done) < self.n_startup_trials:
            return {}
        direction = sign(study.direction)
        genomes = [self.space.from_params(t.params) for t in done]
        y = [direction * t.value for t in done]
        costs = [self._genome_cost(g) for g in genomes]
        candidates = self._candidates(done, genomes, y, self.in_flight(study))
        if not candidates:
            return {}
        X, _ = design_matrix(genomes, costs)
        Xc, _ = design_matrix(candidates, [self._genome_cost(g) for g in candidates])
        ei = expected_improvement(*Surrogate(self.n_models, self.seed or 0).fit(X, y).predict(Xc), max(y))
        order = sorted(range(len(candidates)), key=lambda i: -ei[i])
        proxies = self._proxy_names(done)
        if proxies:
            short = [candidates[i] for i in order[:self._screener.settings.candidates]]
            chosen, used = self._with_proxies(done, genomes, costs, y, short, proxies)
            if used:  # the proxy scores helped pick it: the proxy check counts it as the proxy's pick
                self.mark_screened(study, trial, len(short))
        else:
            chosen = candidates[order[0]]
        return self.space.encode(chosen)

    def bind(self, *, screener=None, cost=None) -> None:
        super().bind(screener=screener, cost=cost)
        self._costs = {}  # costed by the previous model

    # ---------------------------------------------------------------- helpers
    def _genome_cost(self, genome) -> tuple[float, float]:
        """Params and multiply-adds of a trial's genome and of a candidate alike, so the features compare.

        The search binds its cost model (backbone plus head at the task's size);
        unbound, the backbone alone at the proxy's 128 px and 0.25 widths.
        Trials' recorded costs are not read: they may come from another cost model.
        """
        if genome.fingerprint not in self._costs:
            if self._cost is not None:
                self._costs[genome.fingerprint] = tuple(self._cost(genome))
            else:
                cost = network_cost(genome, 128, filter_size_scale=0.25, resample_alpha=0.25)
                self._costs[genome.fingerprint] = float(cost.params), float(cost.multiply_adds)
        return self._costs[genome.fingerprint]

    def _candidates(self, done, genomes, y, busy: set[str]) -> list:
        seen = {g.fingerprint for g in genomes} | busy
        best = sorted(range(len(done)), key=lambda i: -y[i])[:self.top_parents]
        out = []
        for k in range(self.n_candidates * 4):
            if len(out) >= self.n_candidates:
                break
            if k % 4 == 3:  # a quarter at random, so the surrogate also sees unexplored regions
                genome = self.space.random_genome(self._rng)
            else:
                genome = self.space.mutate(genomes[self._rng.choice(best)], self._rng)
            if genome.fingerprint not in seen:
                seen.add(genome.fingerprint)
                out.append(genome)
        return out

    def _proxy_names(self, done) -> list[str]:
        if self._screener is None:
            return []
        recorded = [t.user_attrs.get("proxy_scores") for t in done]
        if not all(recorded):
            return []
        return sorted(set.intersection(*(set(r) for r in recorded)) - {"params", "multiply_adds"})

    def _with_proxies(self, done, genomes, costs, y, short, proxies):
        from nas.trials import TrialFailed

        try:
            scores = self._screener.scores(short)
        except TrialFailed as err:
            self._screener.log(f"screening failed, choosing without proxy scores: {err}")
            return short[0], False
        X, _ = design_matrix(genomes, costs, [t.user_attrs["proxy_scores"] for t in done], proxies)
        Xc, _ = design_matrix(short, [self._genome_cost(g) for g in short], scores, proxies)
        ei = expected_improvement(*Surrogate(self.n_models, self.seed or 0).fit(X, y).predict(Xc), max(y))
        return short[max(range(len(short)), key=lambda i: ei[i])], True
