"""Rank statistics: Kendall and Spearman correlations and the proxies' rank ensemble.

Examples:
    >>> kendall([1, 2, 3, 4], [10, 20, 40, 30])
    0.6667
    >>> rank_ensemble({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 2.0]})
    [0.5, 0.25, 0.75]
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np


def _finite_pairs(x, y):
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None
             and math.isfinite(a) and math.isfinite(b)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def kendall(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Kendall's tau-b of the finite pairs, to 4 places; None with fewer than 3 pairs or a constant side."""
    from scipy.stats import kendalltau

    a, b = _finite_pairs(x, y)
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(kendalltau(a, b).statistic), 4)


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Spearman's rho of the finite pairs, to 4 places; None as for :func:`kendall`."""
    from scipy.stats import spearmanr

    a, b = _finite_pairs(x, y)
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(spearmanr(a, b).statistic), 4)


def normalised_ranks(values: Sequence[float]) -> list[float]:
    """Ranks scaled to [0, 1] (ties share their mean rank; a missing or non-finite value ranks lowest)."""
    from scipy.stats import rankdata

    clean = [v if v is not None and math.isfinite(v) else -math.inf for v in values]
    if len(clean) < 2:
        return [0.5] * len(clean)
    ranks = rankdata(np.array(clean, dtype=np.float64))
    return [float((r - 1) / (len(clean) - 1)) for r in ranks]


def rank_ensemble(scores: Mapping[str, Sequence[float]]) -> list[float]:
    """Mean normalised rank of each item over the proxies in ``scores`` (name -> one value per item).

    A missing or non-finite value is a proxy that failed on that item: the
    proxy ranks only the items it scored, and an item's mean skips it (NaN
    when every proxy failed). Ranking a failure lowest instead would make it
    the best under a reversed ensemble (``-ensemble``).
    """
    columns = []
    for values in scores.values():
        scored = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        column = [math.nan] * len(values)
        for i, rank in zip(scored, normalised_ranks([values[i] for i in scored])):
            column[i] = rank
        columns.append(column)
    if not columns:
        return []
    return [float(np.mean(kept)) if (kept := [r for r in row if not math.isnan(r)]) else math.nan
            for row in zip(*columns)]
