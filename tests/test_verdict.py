"""nas.verdict on cases with known answers."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nas.verdict import TooFewRuns, compare, holm, judge, winner


def test_welch_matches_scipy_and_uses_both_sides_noise():
    a, b = [0.52, 0.50, 0.51, 0.47], [0.40, 0.41, 0.45]
    result = compare(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    low, high = reference.confidence_interval(0.95)
    assert result.ci == pytest.approx((low, high), rel=1e-12)
    assert result.n == (4, 3) and result.difference == pytest.approx(0.08)
    # A noisier candidate with the same mean is less certain: its own runs count, not only the seed's.
    noisy = compare([0.62, 0.40, 0.56, 0.42], b)
    assert noisy.difference == pytest.approx(result.difference) and noisy.p_value > result.p_value


def test_equal_groups_are_no_difference_and_minimised_metrics_flip():
    same = compare([0.4, 0.5, 0.6], [0.4, 0.5, 0.6])
    assert same.difference == 0 and same.p_value == pytest.approx(1.0)
    faster = compare([10.0, 11.0, 10.5], [20.0, 21.0, 19.0], direction=-1)  # latency: lower is better
    assert faster.difference > 0 and faster.ci[0] > 0


def test_one_run_a_side_is_refused():
    with pytest.raises(TooFewRuns, match="at least 2 runs a side"):
        compare([0.5], [0.4, 0.41])
    judged = judge({"lucky": [0.9], "real": [0.6, 0.61, 0.62]}, [0.4, 0.41, 0.42])
    assert judged["lucky"]["note"] and not judged["lucky"]["beats_seed"] and judged["lucky"]["p_holm"] is None
    assert judged["real"]["beats_seed"]


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_the_winner_beats_the_seed_after_correction_and_within_budget():
    seed = [0.40, 0.42, 0.41, 0.43]
    candidates = {"clear": [0.50, 0.51, 0.52, 0.50], "close": [0.44, 0.40, 0.46, 0.42], "worse": [0.3, 0.31, 0.29]}
    judged = judge(candidates, seed)
    assert judged["clear"]["beats_seed"] and not judged["close"]["beats_seed"] and not judged["worse"]["beats_seed"]
    assert judged["worse"]["comparison"].difference < 0  # significant, but the wrong way: never a winner
    assert winner(judged) == "clear"
    assert winner(judged, within_budget={"clear": False}) is None
    # Corrected across the three candidates: the smallest p-value is multiplied by 3.
    p = judged["clear"]["comparison"].p_value
    assert judged["clear"]["p_holm"] == pytest.approx(min(1.0, 3 * p))
    assert all(math.isfinite(row["p_holm"]) for row in judged.values())
    # A difference significant alone (p < 0.05) that does not survive the correction is not a win.
    borderline = judge({"b": [0.46, 0.43, 0.46, 0.44], "x": [0.41, 0.42, 0.40, 0.43], "y": [0.42, 0.41, 0.43, 0.40]},
                       seed)
    assert borderline["b"]["comparison"].p_value < 0.05 <= borderline["b"]["p_holm"]  # 0.017 x 3 = 0.052
    assert not borderline["b"]["beats_seed"] and winner(borderline) is None
