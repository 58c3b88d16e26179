"""Is a candidate better than a seed genome beyond training noise? Welch intervals and Holm's correction.

The statistics of "beats the seed" for both the confirmation stage
(:mod:`nas.confirm`) and ``spinenas fidelity``'s seed standing
(:func:`nas.fidelity.stats.seed_standing`): one test, one correction. Each side
is a list of one metric over training seeds (repeated runs of one genome).
With two or more runs a side, the difference of means gets a 95% confidence
interval from Welch's t (unequal variances, Welch-Satterthwaite degrees of
freedom), which uses both sides' runs. A candidate with a single run (as most
genomes of a fidelity table have) has no variance of its own: :func:`compare_one`
then tests that run against the seed's runs with a prediction interval, which
has to assume the candidate's noise equals the seed's. The two-sided p-values
are corrected across all candidates with Holm's step-down method. A candidate
beats the seed when its corrected p-value is below ``alpha`` and the difference
points its way. A seed with fewer than two runs has no variance to test with
and is refused, as is a single-run candidate unless the caller allows it.

Examples:
    >>> c = compare([0.52, 0.50, 0.51], [0.40, 0.41, 0.42])
    >>> round(c.difference, 3), c.ci[0] > 0, c.p_value < 0.01
    (0.1, True, True)
    >>> one = compare_one(0.52, [0.40, 0.42, 0.44])  # t = 0.1 / (0.02 * sqrt(1 + 1/3)), df 2
    >>> round(one.p_value, 4), one.df, one.test
    (0.0494, 2.0, 'one run')
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Mapping, Optional, Sequence

ALPHA = 0.05


WELCH = "welch"
ONE_RUN = "one run"


class TooFewRuns(ValueError):
    """A side of a comparison has too few runs: no variance to judge noise by."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A candidate's runs against a seed's, sign-adjusted so a positive difference favours the candidate.

    Attributes:
        n: runs of the candidate and of the seed.
        mean, std: each side's mean and sample standard deviation (in the metric's own direction;
            the candidate's std is None when it has one run).
        difference: candidate mean minus seed mean, times the direction (+1 maximise, -1 minimise).
        ci: the 95% (``1 - alpha``) interval of ``difference``: Welch's, or :func:`compare_one`'s.
        p_value: two-sided p-value of "no difference" (before any correction).
        df: degrees of freedom: Welch-Satterthwaite, or the seed's runs minus one for one run
            (inf when nothing varies).
        test: ``"welch"`` (both sides have runs to estimate noise from) or ``"one run"``
            (:func:`compare_one`: the seed's noise stands in for the candidate's).
    """

    n: tuple[int, int]
    mean: tuple[float, float]
    std: tuple[Optional[float], float]
    difference: float
    ci: tuple[float, float]
    p_value: float
    df: float
    test: str = WELCH

    def to_dict(self) -> dict:
        """Plain data (lists for the pairs), for JSON and the study's records."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


def compare(candidate: Sequence[float], seed: Sequence[float], *, direction: float = 1.0,
            alpha: float = ALPHA) -> Comparison:
    """Welch's comparison of ``candidate`` runs against ``seed`` runs (``direction`` +1: larger is better).

    Raises :class:`TooFewRuns` when either side has fewer than two finite runs.
    """
    a = [float(v) for v in candidate if v is not None and math.isfinite(v)]
    b = [float(v) for v in seed if v is not None and math.isfinite(v)]
    if len(a) < 2 or len(b) < 2:
        raise TooFewRuns(f"a comparison needs at least 2 runs a side (training seeds); got {len(a)} and {len(b)}")
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    std_a, std_b = statistics.stdev(a), statistics.stdev(b)
    difference = direction * (mean_a - mean_b)
    var_a, var_b = std_a ** 2 / len(a), std_b ** 2 / len(b)
    error = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / ((var_a ** 2 / (len(a) - 1) if var_a else 0.0) +
                                 (var_b ** 2 / (len(b) - 1) if var_b else 0.0)) if error else math.inf
    return _t_test((len(a), len(b)), (mean_a, mean_b), (std_a, std_b), difference, error, df, alpha, WELCH)


def compare_one(run: float, seed: Sequence[float], *, direction: float = 1.0, alpha: float = ALPHA) -> Comparison:
    """One ``run`` of a candidate against the ``seed``'s runs: a prediction-interval t test, df = seed runs - 1.

    One run carries no estimate of its own noise, so Welch's interval does not
    exist. Assuming the candidate's training noise has the seed's variance
    (the one assumption this test adds; a noisier candidate makes it too
    eager), a run of a genome no better than the seed falls within
    ``seed mean +- t(1 - alpha/2, n - 1) * s * sqrt(1 + 1/n)`` of the seed's
    mean with probability ``1 - alpha``, ``s`` the sample standard deviation
    of the seed's ``n`` runs. The p-value is that t test's two-sided one (the
    pooled two-sample t test with one run on one side: only the seed's runs
    give degrees of freedom). Unlike a fixed "seed mean plus two standard
    deviations" margin, it widens for few seed runs and counts the run's own
    spread. Raises :class:`TooFewRuns` when the run is not finite or the seed
    has fewer than two finite runs.
    """
    b = [float(v) for v in seed if v is not None and math.isfinite(v)]
    if run is None or not math.isfinite(run) or len(b) < 2:
        raise TooFewRuns(f"one run against the seed needs a finite run and at least 2 seed runs; got {len(b)}")
    mean_b, std_b = statistics.fmean(b), statistics.stdev(b)
    difference = direction * (float(run) - mean_b)
    error = std_b * math.sqrt(1.0 + 1.0 / len(b))
    return _t_test((1, len(b)), (float(run), mean_b), (None, std_b), difference, error, float(len(b) - 1), alpha,
                   ONE_RUN)


def _t_test(n, mean, std, difference: float, error: float, df: float, alpha: float, test: str) -> Comparison:
    """The two-sided t test and interval of ``difference`` with standard error ``error`` at ``df`` degrees of freedom."""
    from scipy import stats

    if error == 0.0:  # the runs agree exactly, so any difference is not noise
        return Comparison(n, mean, std, difference, (difference, difference), 1.0 if difference == 0 else 0.0,
                          math.inf, test)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * error
    p_value = float(2 * stats.t.sf(abs(difference) / error, df))
    return Comparison(n, mean, std, difference, (difference - half, difference + half), p_value, df, test)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (capped at 1, never decreasing with rank)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = round(running, 12)
    return adjusted


def judge(candidates: Mapping[str, Sequence[float]], seed: Sequence[float], *, direction: float = 1.0,
          alpha: float = ALPHA, one_run: bool = False) -> dict[str, dict]:
    """Every candidate against one seed: its :class:`Comparison`, Holm-corrected p-value and whether it beats it.

    Candidates with two or more runs get :func:`compare` (Welch); with one run,
    :func:`compare_one` when ``one_run`` (a fidelity table, where most genomes
    are trained once), otherwise they are listed with ``note`` and never beat
    the seed (the confirmation stage trains repeats to avoid that assumption).
    Holm's correction runs over every candidate tested, whichever test it got.
    """
    judged: dict[str, dict] = {}
    for name, runs in candidates.items():
        finite = [v for v in runs if v is not None and math.isfinite(v)]
        try:
            comparison = (compare_one(finite[0], seed, direction=direction, alpha=alpha)
                          if one_run and len(finite) == 1 else compare(runs, seed, direction=direction, alpha=alpha))
            judged[name] = {"comparison": comparison, "note": None}
        except TooFewRuns as err:
            judged[name] = {"comparison": None, "note": str(err)}
    tested = [name for name, row in judged.items() if row["comparison"] is not None]
    for name, adjusted in zip(tested, holm([judged[n]["comparison"].p_value for n in tested])):
        row = judged[name]
        row["p_holm"] = adjusted
        row["beats_seed"] = adjusted < alpha and row["comparison"].difference > 0
    for row in judged.values():
        row.setdefault("p_holm", None)
        row.setdefault("beats_seed", False)
    return judged


def winner(judged: Mapping[str, dict], within_budget: Optional[Mapping[str, bool]] = None) -> Optional[str]:
    """The candidate with the largest difference among those that beat the seed (and fit the budget); or None."""
    fits = within_budget or {}
    best = [(row["comparison"].difference, name) for name, row in judged.items()
            if row["beats_seed"] and fits.get(name, True)]
    return max(best)[1] if best else None
