"""Screening in a search: score candidate genomes with a zero-cost proxy, in the trial's child process.

The search parent never imports TensorFlow: model proxies run in the warm
:class:`~nas.search.child.TrialProcess` (its ``score`` message); cost proxies
(``params``, ``multiply_adds``) come from the cost model right here. Scores
are cached by fingerprint, so the screened winner's scores are recorded on its
trial without scoring it twice.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Optional, Sequence

from nas.config import to_data
from nas.screening.ranks import rank_ensemble
from nas.screening.registry import COST_PROXIES, ENSEMBLE, ENSEMBLE_MEMBERS, expand, oriented
from nas.tasks.base import model_cost


class Screener:
    """Scores genomes for one experiment; higher predicts a better trained objective.

    Args:
        experiment: the experiment (its ``search.screening`` names the proxy).
        process: the :class:`~nas.search.child.TrialProcess` model proxies run in.
        num_classes: the task's class count (for costs).
        budget: a constraint (genome -> values, feasible when all <= 0); infeasible genomes score -inf unscored.
    """

    def __init__(self, experiment, process, num_classes: int, budget=None, log: Callable[[str], None] = print):
        self.settings = experiment.search.screening
        self.proxy = self.settings.proxy
        self.names = expand([self.proxy])
        self.experiment, self.process, self.num_classes, self.budget, self.log = \
            experiment, process, num_classes, budget, log
        self.config = to_data(experiment.train_config)
        self.cache: dict[str, dict] = {}

    def scores(self, genomes: Sequence) -> list[dict]:
        """Every proxy's raw score per genome (the proxy and, for the ensemble, its members)."""
        missing = {g.fingerprint: g for g in genomes if g.fingerprint not in self.cache}
        if missing:
            model_names = [n for n in self.names if n not in COST_PROXIES]
            rows = [{} for _ in missing]
            if model_names:
                rows = self.process.score(list(missing.values()), self.config, model_names, self.experiment.seed,
                                          batch_size=self.settings.batch_size)
            for row, genome in zip(rows, missing.values()):
                total, _ = model_cost(self.experiment.task_plugin, genome, self.experiment.train_config,
                                      self.num_classes)
                row.update({name: float(getattr(total, name)) for name in COST_PROXIES})
                self.cache[genome.fingerprint] = row
        return [dict(self.cache[g.fingerprint]) for g in genomes]

    def values(self, genomes: Sequence) -> list[float]:
        """The screening value of each genome, higher preferred (the ensemble ranks within ``genomes``; a ``-proxy``
        negated); -inf when over budget or when its proxy failed (NaN), whichever way round the proxy reads."""
        feasible = [self.budget is None or all(v <= 0 for v in self.budget(g)) for g in genomes]
        kept = [g for g, ok in zip(genomes, feasible) if ok]
        rows = self.scores(kept)
        proxy, sign = oriented(self.proxy)
        if proxy == ENSEMBLE:
            scored = rank_ensemble({m: [r[m] for r in rows] for m in ENSEMBLE_MEMBERS})
        else:
            scored = [r[proxy] for r in rows]
        scored = [sign * v if v is not None and math.isfinite(v) else -math.inf for v in scored]
        it = iter(scored)
        return [next(it) if ok else -math.inf for ok in feasible]

    def best(self, genomes: Sequence):
        """The genome with the highest screening value (the first on ties)."""
        values = self.values(genomes)
        return genomes[max(range(len(genomes)), key=lambda i: values[i])]

    def record(self, trial, genome) -> None:
        """Store the genome's proxy scores on ``trial`` (user attrs ``proxy`` and ``proxy_scores``)."""
        trial.set_user_attr("proxy", self.proxy)
        trial.set_user_attr("proxy_scores", self.scores([genome])[0])


def prescreen(study, space, screener: Screener, n_trials: int, seed: int, log: Callable[[str], None] = print) -> int:
    """Once per study: score ``candidates`` x ``prescreen`` random genomes and queue the best ``prescreen``.

    Returns how many were queued: over-budget genomes and failed scores among the best are not.
    """
    if study.user_attrs.get("prescreened"):
        return 0
    settings = screener.settings
    keep = settings.prescreen or max(1, n_trials // 2)
    rng = random.Random(seed)
    pool, seen = [], set()
    for _ in range(keep * settings.candidates * 20):
        if len(pool) >= keep * settings.candidates:
            break
        genome = space.random_genome(rng)
        if genome.fingerprint not in seen:
            seen.add(genome.fingerprint)
            pool.append(genome)
    log(f"pre-screen: scoring {len(pool)} random genomes with {settings.proxy}")
    values = screener.values(pool)
    ranked = [i for i in sorted(range(len(pool)), key=lambda i: -values[i])[:keep] if math.isfinite(values[i])]
    for rank, i in enumerate(ranked):
        study.enqueue_trial(space.encode(pool[i]), user_attrs={"prescreen_rank": rank})
    if len(ranked) < keep:
        log(f"pre-screen: only {len(ranked)} of {len(pool)} genomes are within budget and scored")
    study.set_user_attr("prescreened", True)
    return len(ranked)


def optional(experiment, process, num_classes, budget, log) -> Optional[Screener]:
    """A :class:`Screener` when the experiment screens, else None."""
    return Screener(experiment, process, num_classes, budget, log) if experiment.search.screening else None
