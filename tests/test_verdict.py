"""nas.verdict on cases with known answers."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nas.verdict import TooFewRuns, compare, compare_one, holm, judge, winner


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


# With 2 degrees of freedom the t distribution has closed forms: two-sided p = 1 - t / sqrt(2 + t^2), and the
# 97.5% quantile solves t / sqrt(2 + t^2) = 0.95, so t^2 = 0.9025 x 2 / 0.0975.
T975_DF2 = math.sqrt(0.9025 * 2 / 0.0975)  # 4.302653


def test_one_run_against_the_seeds_runs_by_hand():
    seed = [0.40, 0.42, 0.44]  # mean 0.42, s 0.02, n 3: df 2, error 0.02 sqrt(1 + 1/3)
    error = 0.02 * math.sqrt(4 / 3)
    one = compare_one(0.52, seed)  # t = 0.10 / error, t^2 = 18.75
    assert (one.n, one.df, one.test, one.std[0]) == ((1, 3), 2.0, "one run", None)
    assert one.difference == pytest.approx(0.10)
    assert one.p_value == pytest.approx(1 - math.sqrt(18.75 / 20.75), rel=1e-9)  # 0.0494
    assert one.ci == pytest.approx((0.10 - T975_DF2 * error, 0.10 + T975_DF2 * error), rel=1e-9)
    assert 0 < one.ci[0] < 0.001  # p just under 0.05: the interval just clears zero
    # 0.05 above the seed's mean is more than twice its std (0.04), yet well within one run's noise: p 0.163.
    close = compare_one(0.47, seed)
    assert close.p_value == pytest.approx(1 - math.sqrt(4.6875 / 6.6875), rel=1e-9)  # t^2 = 0.05^2 / error^2
    assert close.ci[0] < 0 < close.ci[1]
    assert compare_one(0.32, seed, direction=-1).difference == pytest.approx(0.10)  # lower is better
    with pytest.raises(TooFewRuns):
        compare_one(0.52, [0.40])  # no seed variance to stand in for the run's own


def test_judge_tests_single_runs_only_when_asked_and_corrects_over_all():
    seed = [0.40, 0.42, 0.44]
    candidates = {"once": [0.52], "twice": [0.50, 0.52], "close": [0.47]}
    strict = judge(candidates, seed)  # the confirmation stage: one run is refused
    assert strict["once"]["comparison"] is None and strict["close"]["comparison"] is None
    assert strict["twice"]["comparison"].test == "welch"
    table = judge(candidates, seed, one_run=True)  # a fidelity table: one run per genome is the norm
    assert [table[n]["comparison"].test for n in candidates] == ["one run", "welch", "one run"]
    p = [table[n]["comparison"].p_value for n in candidates]
    assert [table[n]["p_holm"] for n in candidates] == pytest.approx(holm(p))
    # Alone, "once" beats the seed (p 0.0494); beside two more genomes it does not (Holm at least 2 x 0.0494).
    assert judge({"once": [0.52]}, seed, one_run=True)["once"]["beats_seed"]
    assert not table["once"]["beats_seed"] and table["once"]["p_holm"] >= 2 * p[0] - 1e-12
