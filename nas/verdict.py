"""Is a candidate better than a seed genome beyond training noise? Welch intervals and Holm's correction.

The statistics of "beats the seed" for the confirmation stage (:mod:`nas.confirm`;
``spinenas fidelity``'s seed standing still has its own rule). Each side is a
list of one metric over training seeds (repeated runs of one genome). The
difference of means gets a 95% confidence interval from Welch's t
(unequal variances, Welch-Satterthwaite degrees of freedom), which uses both
sides' runs; its two-sided p-value is corrected across all candidates with
Holm's step-down method. A candidate beats the seed when its corrected
p-value is below ``alpha`` and the difference points its way. A side with one
run has no variance to test with and is refused.

Examples:
    >>> c = compare([0.52, 0.50, 0.51], [0.40, 0.41, 0.42])
    >>> round(c.difference, 3), c.ci[0] > 0, c.p_value < 0.01
    (0.1, True, True)
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Mapping, Optional, Sequence

ALPHA = 0.05


class TooFewRuns(ValueError):
    """A side of a comparison has fewer than two runs: no variance to judge noise by."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A candidate's runs against a seed's, sign-adjusted so a positive difference favours the candidate.

    Attributes:
        n: runs of the candidate and of the seed.
        mean, std: each side's mean and sample standard deviation (in the metric's own direction).
        difference: candidate mean minus seed mean, times the direction (+1 maximise, -1 minimise).
        ci: the 95% (``1 - alpha``) Welch confidence interval of ``difference``.
        p_value: two-sided Welch p-value of "no difference" (before any correction).
        df: Welch-Satterthwaite degrees of freedom (inf when neither side varies).
    """

    n: tuple[int, int]
    mean: tuple[float, float]
    std: tuple[float, float]
    difference: float
    ci: tuple[float, float]
    p_value: float
    df: float

    def to_dict(self) -> dict:
        """Plain data (lists for the pairs), for JSON and the study's records."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


def compare(candidate: Sequence[float], seed: Sequence[float], *, direction: float = 1.0,
            alpha: float = ALPHA) -> Comparison:
    """Welch's comparison of ``candidate`` runs against ``seed`` runs (``direction`` +1: larger is better).

    Raises :class:`TooFewRuns` when either side has fewer than two finite runs.
    """
    from scipy import stats

    a = [float(v) for v in candidate if v is not None and math.isfinite(v)]
    b = [float(v) for v in seed if v is not None and math.isfinite(v)]
    if len(a) < 2 or len(b) < 2:
        raise TooFewRuns(f"a comparison needs at least 2 runs a side (training seeds); got {len(a)} and {len(b)}")
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    std_a, std_b = statistics.stdev(a), statistics.stdev(b)
    difference = direction * (mean_a - mean_b)
    var_a, var_b = std_a ** 2 / len(a), std_b ** 2 / len(b)
    error = math.sqrt(var_a + var_b)
    if error == 0.0:  # neither side varies: the runs agree exactly, so any difference is not noise
        p_value = 1.0 if difference == 0 else 0.0
        return Comparison((len(a), len(b)), (mean_a, mean_b), (std_a, std_b), difference, (difference, difference),
                          p_value, math.inf)
    df = (var_a + var_b) ** 2 / ((var_a ** 2 / (len(a) - 1) if var_a else 0.0) +
                                 (var_b ** 2 / (len(b) - 1) if var_b else 0.0))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * error
    p_value = float(2 * stats.t.sf(abs(difference) / error, df))
    return Comparison((len(a), len(b)), (mean_a, mean_b), (std_a, std_b), difference,
                      (difference - half, difference + half), p_value, df)


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
          alpha: float = ALPHA) -> dict[str, dict]:
    """Every candidate against one seed: its :class:`Comparison`, Holm-corrected p-value and whether it beats it.

    Candidates with fewer than two runs are listed with ``note`` and never beat the seed.
    """
    judged: dict[str, dict] = {}
    for name, runs in candidates.items():
        try:
            judged[name] = {"comparison": compare(runs, seed, direction=direction, alpha=alpha), "note": None}
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
