"""The statistics behind the claims (:mod:`sharing_lab.analysis.statistics`, :mod:`sharing_lab.analysis.verdicts`)
against published worked examples and textbook definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sharing_lab.analysis.statistics import Test as SeedTest  # not a pytest class
from sharing_lab.analysis.statistics import holm, holm_levels
from sharing_lab.analysis.verdicts import Question, decide


def test_holm_on_the_published_worked_example():
    """Holm (1979) as in Wikipedia's "Holm–Bonferroni method" example: p = 0.01, 0.04, 0.03, 0.005 at α = 0.05
    rejects H4 and H1 only; the adjusted p-values are 4·0.005, 3·0.01, then max(2·0.03, 1·0.04) twice."""
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]
    assert holm([0.2, math.nan, 0.01]) == pytest.approx([0.2, math.nan, 0.02], nan_ok=True)  # NaN: not tested
    assert holm_levels([0.01, 0.04, 0.03, 0.005]) == pytest.approx([1 - 0.05 / 3, 0.95, 1 - 0.05 / 2, 1 - 0.05 / 4])


def test_welch_student_and_newcombe_are_the_textbook_ones():
    a, b = [1.0, 2.0, 4.0, 3.5, 2.5], [0.5, 1.0, 0.0, 1.5]
    test = SeedTest("welch", tuple(a), tuple(b))
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert test.value == pytest.approx(np.mean(a) - np.mean(b))
    assert test.interval() == pytest.approx((test.value - half, test.value + half))
    assert test.p() == pytest.approx(2 * stats.t.sf(test.value / math.sqrt(va + vb), dof))
    one = SeedTest("t", tuple(a))
    half = stats.t.ppf(0.975, len(a) - 1) * np.std(a, ddof=1) / math.sqrt(len(a))
    assert one.interval() == pytest.approx((np.mean(a) - half, np.mean(a) + half))
    # Newcombe (1998), method 10, example (h): 5/56 − 0/29 → [−0.0381, 0.1926]
    low, high = SeedTest("proportions", (5, 56), (0, 29)).interval()
    assert (round(low, 4), round(high, 4)) == (-0.0381, 0.1926)


def test_bounded_intervals_stay_within_the_bounds_where_t_intervals_leave_them():
    rhos = (1.0, 1.0, 0.8, 1.0, 0.4)
    t_high = stats.ttest_1samp(rhos, 0).confidence_interval(0.95).high
    assert t_high > 1  # the defect of issue 23: a mean of correlations with an interval reaching past 1
    test = SeedTest("bounded-mean", rhos, delta=0.2)
    for level in (0.95, 0.99, 0.999):
        low, high = test.interval(level)
        assert -1 <= low <= test.value <= high <= 1
    low, high = SeedTest("bounded-difference", (1.0, 0.8, 1.0, 1.0, 0.6), (-1.0, -0.8, -1.0, -0.6, -1.0)).interval()
    assert -2 <= low <= high <= 2
    assert SeedTest("bounded-mean", (1.0,) * 5).interval() == (1.0, 1.0)  # zero width: decide() gives no verdict


def test_permutation_p_values_are_exact_on_few_seeds():
    """Five seeds all positive: a sign-flip test's two-sided p is 2/2⁵; two arms of three fully separated:
    2/C(6, 3)."""
    assert SeedTest("bounded-mean", (0.2, 0.4, 0.6, 0.8, 1.0)).p() == pytest.approx(2 / 32)
    assert SeedTest("bounded-difference", (0.9, 0.8, 0.7), (0.1, 0.2, 0.3)).p() == pytest.approx(2 / 20)


def test_tost_decides_equivalence_within_the_margin():
    close = SeedTest("welch", (1.0, 1.1, 0.9, 1.05, 0.95), (1.02, 0.98, 1.0, 1.01, 0.99), delta=0.5)
    far = SeedTest("welch", (1.0, 2.1, 0.2, 1.8, 0.4), (1.02, 0.98, 1.0, 1.01, 0.99), delta=0.5)
    assert close.p_equivalent() < 0.01 and far.p_equivalent() > 0.05
    # the TOST is the larger of two one-sided Welch tests at ±δ
    a, b = np.array(close.first), np.array(close.second)
    lower = stats.ttest_ind(a + 0.5, b, equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind(a - 0.5, b, equal_var=False, alternative="less").pvalue
    assert close.p_equivalent() == pytest.approx(max(lower, upper))


def test_seeds_for_eighty_percent_power_is_the_textbook_number():
    """Two arms, effect of one standard deviation, α = 0.05 two-sided: 17 per arm (non-central t; 16 by the
    normal approximation)."""
    a = (0.0, 1.0, 2.0, -1.0, 0.5)
    b = tuple(x + 0.3 for x in a)
    test = SeedTest("welch", a, b)
    assert test.seeds_for(test.sd) == 17
    assert test.seeds_for(test.sd / 100) == 10_001  # "more than" the planning cap
    assert SeedTest("welch", a, (1.0,)).seeds_for(1.0) is None  # one seed: its spread is unknown


def question(id: str, a, b, delta: float = 0.5, expects: str = "effect") -> Question:
    return Question(id, id, "", "x", SeedTest("welch", tuple(a), tuple(b), delta), {}, "", expects)


def test_holm_removes_a_verdict_that_stands_alone():
    """A difference with p ≈ 0.02 holds alone, and not among twenty claims."""
    a = (1.0, 1.9, 0.2, 1.3, 0.5, 1.1)
    b = (0.0, 0.5, -0.6, 0.2, -0.3, 0.4)
    alone = decide([question("x", a, b, delta=0.01)])[0]
    assert 0.05 / 20 < alone.p < 0.05 and alone.verdict == "holds"
    noise = [question(f"n{k}", (0.1, -0.2, 0.3, 0.0, -0.1), (0.0, 0.2, -0.1, 0.1, -0.3), delta=0.01)
             for k in range(19)]
    crowded = decide([question("x", a, b, delta=0.01), *noise])[0]
    assert crowded.p == pytest.approx(alone.p) and crowded.p_adjusted > 0.05 and crowded.verdict == "inconclusive"


def test_every_verdict_from_questions():
    up, flat = (1.0, 1.1, 0.9, 1.05, 0.95), (0.0, 0.1, -0.1, 0.05, -0.05)
    same = tuple(x + 0.01 for x in flat)
    noisy = (2.0, -1.0, 1.5, -2.0, 0.5)
    verdicts = {claim.id: claim.verdict for claim in decide([
        question("holds", up, flat), question("fails", flat, up), question("none", same, flat),
        question("unclear", noisy, flat), question("overlap", same, flat, expects="no effect"),
        question("apart", up, flat, expects="no effect"), question("few", up[:4], flat[:4]),
        question("constant", (1.0,) * 5, flat)])}
    assert verdicts == {"holds": "holds", "fails": "fails", "none": "no effect", "unclear": "inconclusive",
                        "overlap": "holds", "apart": "fails", "few": "inconclusive", "constant": "inconclusive"}
