"""Pool-based search comparison: how many trainings each strategy needs to find a recorded pool's best genomes.

Every genome of the pool has a known (recorded) objective; a strategy is an
order in which to "train" them. Strategies: ``random``; ``proxy:<name>``
(highest score first, ties at random: a pre-screen that scores the whole
pool); ``screened:<name>`` (each training the best-scored of ``candidates``
untrained genomes drawn at random: a screened random search, which is how
evolution's screening of mutants behaves without the tournament);
``predictor`` (random for
``n_startup``, then the highest expected improvement of the surrogate fitted
on what has been trained); ``evolution`` (aging evolution restricted to the
pool: a mutation is the untrained pool genome nearest the tournament winner
in standardised feature space). Reported: trainings until the pool's best
and until any of its top 5%, mean and standard deviation over repetitions.

Examples:
    >>> import numpy as np
    >>> y = np.arange(20.0); X = y[:, None]
    >>> result = compare(X, y, {"proxy:oracle": y}, repetitions=3, strategies=("random", "proxy:oracle"))
    >>> result["proxy:oracle"]["to_best"]["mean"]
    1.0
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from nas.samplers.surrogate import Surrogate, expected_improvement


def order_random(n: int, rng) -> list[int]:
    """A random order."""
    return list(rng.permutation(n))


def order_by_score(scores: Sequence[float], rng) -> list[int]:
    """Highest score first; ties (and missing scores, last) in random order."""
    values = _comparable(scores)
    return list(np.lexsort((rng.random(len(values)), -values)))


def _comparable(scores: Sequence[float]) -> np.ndarray:
    # A missing or non-finite score loses to every real one.
    return np.array([s if s is not None and math.isfinite(s) else -np.inf for s in scores], float)


def order_screened(scores: Sequence[float], rng, candidates: int = 8) -> list[int]:
    """Each next training is the highest-scored of ``candidates`` untrained genomes drawn at random.

    Scores are compared as given: a rank ensemble ranked over the whole pool
    stands in for one ranked within each draw.
    """
    if candidates < 1:
        raise ValueError(f"candidates must be at least 1, got {candidates}")
    values = _comparable(scores)
    rest = list(range(len(values)))
    order = []
    while rest:
        drawn = rng.choice(len(rest), size=min(candidates, len(rest)), replace=False)
        drawn_genomes = np.array(rest)[drawn]
        winner = drawn[np.lexsort((rng.random(len(drawn)), -values[drawn_genomes]))[0]]  # a position in rest
        order.append(rest.pop(int(winner)))
    return order


def order_predictor(X, y, rng, n_startup: int = 5, n_models: int = 3, refit_every: int = 1) -> list[int]:
    """Random for ``n_startup``, then the untrained genome with the highest expected improvement.

    The surrogate is refitted after every ``refit_every`` trainings (in between, the next-best of the last fit).
    """
    n = len(y)
    order = list(rng.permutation(n)[:n_startup])
    ranked: list[int] = []
    while len(order) < n:
        if (len(order) - n_startup) % refit_every == 0 or not ranked:
            rest = np.setdiff1d(np.arange(n), order)
            seen = np.array(order)
            surrogate = Surrogate(n_models, int(rng.integers(1 << 30)), n_estimators=30).fit(X[seen], y[seen])
            ei = expected_improvement(*surrogate.predict(X[rest]), float(np.max(y[seen])))
            ranked = [int(rest[i]) for i in np.argsort(-ei)]
        order.append(ranked.pop(0))
    return order


def order_evolution(X, y, rng, population: int = 8, tournament: int = 3) -> list[int]:
    """Aging evolution inside the pool: the child is the untrained genome nearest the tournament winner."""
    n = len(y)
    Z = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    order = list(rng.permutation(n)[:min(population, n)])
    while len(order) < n:
        alive = order[-population:]
        contestants = rng.choice(alive, size=min(tournament, len(alive)), replace=False)
        parent = max(contestants, key=lambda i: y[i])
        rest = np.setdiff1d(np.arange(n), order)
        distance = np.linalg.norm(Z[rest] - Z[parent], axis=1) + 1e-9 * rng.random(len(rest))
        order.append(int(rest[int(np.argmin(distance))]))
    return order


def trainings_needed(order: Sequence[int], y, top_fraction: float = 0.05) -> tuple[int, int]:
    """Trainings until the pool's best, and until any of its top ``top_fraction`` (at least one genome)."""
    y = np.asarray(y, float)
    best = float(np.max(y))
    k = max(1, math.ceil(top_fraction * len(y)))
    threshold = np.sort(y)[-k]
    to_best = next(i for i, j in enumerate(order, 1) if y[j] >= best)
    to_top = next(i for i, j in enumerate(order, 1) if y[j] >= threshold)
    return to_best, to_top


def compare(X, y, scores: Mapping[str, Sequence[float]], repetitions: int = 20, seed: int = 0,
            strategies: Sequence[str] | None = None, n_startup: int = 5, refit_every: int = 1,
            screened: Sequence[str] = (), candidates: int = 8) -> dict:
    """Strategy -> ``{"to_best": {mean, std}, "to_top5": {mean, std}}`` over ``repetitions`` seeded repetitions.

    ``scores`` maps ``proxy:<name>`` to one score per genome (higher predicts better).
    ``screened`` names proxies (``<name>``, a key ``proxy:<name>`` of ``scores``) also
    run as ``screened:<name>``, best of ``candidates`` per training.
    """
    X, y = np.asarray(X, float), np.asarray(y, float)
    strategies = list(strategies or ["random", *scores, *(f"screened:{name}" for name in screened),
                                     "predictor", "evolution"])
    out = {}
    for name in strategies:
        counts = []
        for r in range(repetitions):
            rng = np.random.default_rng(seed + r)
            if name == "random":
                order = order_random(len(y), rng)
            elif name == "predictor":
                order = order_predictor(X, y, rng, n_startup, refit_every=refit_every)
            elif name == "evolution":
                order = order_evolution(X, y, rng)
            elif name.startswith("screened:"):
                order = order_screened(scores[f"proxy:{name[len('screened:'):]}"], rng, candidates)
            else:
                order = order_by_score(scores[name], rng)
            counts.append(trainings_needed(order, y))
        counts = np.array(counts, float)
        out[name] = {key: {"mean": round(float(counts[:, i].mean()), 2), "std": round(float(counts[:, i].std()), 2)}
                     for i, key in enumerate(("to_best", "to_top5"))}
    return out
