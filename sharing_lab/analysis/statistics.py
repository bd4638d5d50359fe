"""The statistics behind the claims' verdicts (DESIGN §8): a test of one statistic over seeds (its estimate, its
interval at any level, its two-sided p-value against no effect and its two one-sided tests (TOST) against a
practical margin δ), Holm's step-down adjustment over a family of tests, and the seeds per arm a decision needs.

The seed is the unit: an arm is one value per seed. Three kinds of statistic, three methods:

- unbounded values (accuracy points, nats, norms): Welch's t for a difference of two arms, Student's t for one;
- bounded values (correlations, probabilities, Kendall τ-b; and differences of them): a seed bootstrap for the
  interval (``scipy.stats.bootstrap``, percentile: it never leaves the values' range, so a mean of correlations
  stays in [−1, 1], where Fisher's z is infinite at ρ = ±1, which three- and four-point Spearman values often
  are) and a permutation test for the p-values (sign flips for one arm, relabelling for two; exact while the
  permutations are fewer than :data:`RESAMPLES`). At five seeds a two-sided sign-flip test cannot go below
  1/16: a bounded claim cannot be decided there, however large its effect;
- proportions of seeds: Newcombe's hybrid score interval (method 10) for a difference, Wilson's for one share,
  with the p-values read off the interval (the largest level at which it still excludes the null).

Draws are seeded (:data:`SEED`): the same records give the same table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 9999
SEED = 0
KINDS = ("welch", "t", "bounded-difference", "bounded-mean", "proportions", "proportion")
MAX_PLANNED = 10_000  # seeds per arm beyond which a plan says "more than"


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def _rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def _difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


@dataclass(frozen=True)
class Test:
    """One statistic over seeds: ``first`` (and ``second`` for a difference, first − second) are the arms' values
    per seed; for proportions they hold (successes, trials) and, for one share, ``null`` is the share it is tested
    against. ``kind`` is one of :data:`KINDS`; ``delta`` the practical margin of the TOST."""

    kind: str
    first: tuple[float, ...]
    second: tuple[float, ...] = ()
    delta: float = math.nan
    null: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown test kind {self.kind!r}")

    # --- what was measured -------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Seeds of the smallest arm (trials, for proportions)."""
        if self.kind == "proportions":
            return int(min(self.first[1], self.second[1]))
        if self.kind == "proportion":
            return int(self.first[1])
        sizes = [len(_finite(self.first))] + ([len(_finite(self.second))] if self._two_arms else [])
        return min(sizes)

    @property
    def _two_arms(self) -> bool:
        return self.kind in ("welch", "bounded-difference", "proportions")

    @property
    def value(self) -> float:
        if self.kind == "proportions":
            (k1, n1), (k2, n2) = self.first, self.second
            return k1 / n1 - k2 / n2 if n1 and n2 else math.nan
        if self.kind == "proportion":
            k, n = self.first
            return k / n - self.null if n else math.nan
        a = _finite(self.first)
        if len(a) == 0:
            return math.nan
        if not self._two_arms:
            return float(a.mean())
        b = _finite(self.second)
        return float(a.mean() - b.mean()) if len(b) else math.nan

    @property
    def sd(self) -> float:
        """Standard deviation of one seed's value (pooled over the arms), what the plan's power uses."""
        if self.kind in ("proportions", "proportion"):
            return math.nan
        arms = [_finite(self.first)] + ([_finite(self.second)] if self._two_arms else [])
        if any(len(arm) < 2 for arm in arms):
            return math.nan
        return float(math.sqrt(sum((len(arm) - 1) * arm.var(ddof=1) for arm in arms) /
                               sum(len(arm) - 1 for arm in arms)))

    # --- interval and p-values ---------------------------------------------------------------------------

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        """The two-sided interval at ``level`` (NaN bounds where the arms cannot give one)."""
        if not math.isfinite(self.value) or not 0 < level < 1:
            return math.nan, math.nan
        if self.kind == "proportions":
            return _newcombe(*self.first, *self.second, level)
        if self.kind == "proportion":
            k, n = self.first
            low, high = stats.binomtest(int(k), int(n)).proportion_ci(level, method="wilson")
            return float(low - self.null), float(high - self.null)
        a, b = _finite(self.first), _finite(self.second)
        if len(a) < 2 or (self._two_arms and len(b) < 2):
            return math.nan, math.nan
        if self.kind == "welch":
            if np.ptp(a) == 0 and np.ptp(b) == 0:
                return self.value, self.value
            ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
        elif self.kind == "t":
            if np.ptp(a) == 0:
                return self.value, self.value
            ci = stats.ttest_1samp(a, 0.0).confidence_interval(level)
        else:
            samples, statistic = ((a, b), _difference) if self._two_arms else ((a,), np.mean)
            if all(np.ptp(s) == 0 for s in samples):
                return self.value, self.value
            ci = stats.bootstrap(samples, statistic, confidence_level=level, method="percentile",
                                 n_resamples=RESAMPLES, rng=_rng()).confidence_interval
        return float(ci.low), float(ci.high)

    def p(self) -> float:
        """Two-sided p-value of no effect (θ = 0)."""
        return self._p_against(0.0, "two-sided")

    def p_equivalent(self) -> float:
        """TOST: the larger of the one-sided p-values of θ ≤ −δ and θ ≥ δ (small: θ lies within ±δ)."""
        if not math.isfinite(self.delta) or self.delta <= 0 or self.kind == "proportion":
            return math.nan
        return max(self._p_against(-self.delta, "greater"), self._p_against(self.delta, "less"))

    def _p_against(self, theta: float, alternative: str) -> float:
        if not math.isfinite(self.value):
            return math.nan
        if self.kind in ("proportions", "proportion"):
            return _inverted_p(self.interval, theta, alternative)
        a, b = _finite(self.first), _finite(self.second)
        if len(a) < 2 or (self._two_arms and len(b) < 2):
            return math.nan
        if self.kind == "welch":
            if np.ptp(a) == 0 and np.ptp(b) == 0:
                return math.nan
            return float(stats.ttest_ind(a - theta, b, equal_var=False, alternative=alternative).pvalue)
        if self.kind == "t":
            if np.ptp(a) == 0:
                return math.nan
            return float(stats.ttest_1samp(a - theta, 0.0, alternative=alternative).pvalue)
        if self._two_arms:
            return float(stats.permutation_test((a - theta, b), _difference, permutation_type="independent",
                                                alternative=alternative, n_resamples=RESAMPLES, vectorized=True,
                                                rng=_rng()).pvalue)
        return float(stats.permutation_test((a - theta,), np.mean, permutation_type="samples",
                                            alternative=alternative, n_resamples=RESAMPLES, rng=_rng()).pvalue)

    # --- planning ----------------------------------------------------------------------------------------

    def seeds_for(self, effect: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
        """Seeds per arm for a two-sided test at ``alpha`` to detect ``effect`` with ``power``: Student's t
        (non-central) with this test's per-seed standard deviation, or Cohen's arcsine h for proportions. None
        where nothing measured says how much a seed varies; :data:`MAX_PLANNED` + 1 for "more than"."""
        effect = abs(effect)
        if not math.isfinite(effect) or effect == 0:
            return None
        if self.kind in ("proportions", "proportion"):
            return _proportion_seeds(self, effect, alpha, power)
        sd = self.sd
        if not math.isfinite(sd) or sd == 0:
            return None
        arms = 2 if self._two_arms else 1

        def enough(n: int) -> bool:
            df = arms * (n - 1)
            shift = effect / (sd * math.sqrt(arms / n))
            critical = stats.t.ppf(1 - alpha / 2, df)
            achieved = stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift)
            if not math.isfinite(achieved):  # scipy's nct fails at large shifts: the normal limit
                z = stats.norm.ppf(1 - alpha / 2)
                achieved = stats.norm.sf(z - shift) + stats.norm.cdf(-z - shift)
            return achieved >= power

        if not enough(MAX_PLANNED):
            return MAX_PLANNED + 1
        low, high = 1, MAX_PLANNED  # power grows with n: the smallest n that is enough lies in (low, high]
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if enough(middle) else (middle, high)
        return max(high, 2)


def _newcombe(k1: float, n1: float, k2: float, n2: float, level: float) -> tuple[float, float]:
    """k1/n1 − k2/n2 with Newcombe's hybrid score interval from each share's Wilson interval."""
    if not n1 or not n2:
        return math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = stats.binomtest(int(k1), int(n1)).proportion_ci(level, method="wilson")
    l2, u2 = stats.binomtest(int(k2), int(n2)).proportion_ci(level, method="wilson")
    value = p1 - p2
    return value - math.hypot(p1 - l1, u2 - p2), value + math.hypot(u1 - p1, p2 - l2)


def _inverted_p(interval, theta: float, alternative: str) -> float:
    """The p-value an interval family implies for θ = ``theta``: two-sided, the smallest α whose (1 − α) interval
    excludes θ; one-sided ("greater": θ_true > theta), the smallest α whose (1 − 2α) interval lies beyond it
    (bisection on α)."""
    def excluded(alpha: float) -> bool:
        level = 1 - alpha if alternative == "two-sided" else 1 - 2 * alpha
        if level <= 0:
            return True
        low, high = interval(level)
        if alternative == "greater":
            return low > theta
        if alternative == "less":
            return high < theta
        return low > theta or high < theta

    if not excluded(1.0 if alternative == "two-sided" else 0.5):
        return 1.0
    lo, hi = 0.0, 1.0 if alternative == "two-sided" else 0.5
    for _ in range(40):
        middle = (lo + hi) / 2
        lo, hi = (lo, middle) if excluded(middle) else (middle, hi)
    return hi


def _proportion_seeds(test: Test, effect: float, alpha: float, power: float) -> int:
    """Seeds per arm for a difference of shares (or one share against its null) by Cohen's h."""
    if test.kind == "proportions":
        (k1, n1), (k2, n2) = test.first, test.second
        centre = (k1 + k2) / (n1 + n2)
        arms = 2
    else:
        centre, arms = test.null, 1
    high = min(centre + effect / 2, 1.0)
    low = max(high - effect, 0.0)
    h = abs(2 * math.asin(math.sqrt(high)) - 2 * math.asin(math.sqrt(low)))
    if h == 0:
        return MAX_PLANNED + 1
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return min(max(2, math.ceil(arms * (z / h) ** 2)), MAX_PLANNED + 1)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values of a family (Holm 1979): sorted ascending, the k-th (from 0) is
    multiplied by m − k, capped at 1 and made non-decreasing. NaN entries are not in the family and stay NaN."""
    tested = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    order = sorted(tested, key=lambda i: pvalues[i])
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def holm_levels(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """The confidence level of each test's interval at its step of Holm's procedure, 1 − α/(m − k) for the k-th
    smallest p-value (NaN outside the family): an interval that excludes 0 there is what a rejection needs."""
    tested = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    order = sorted(tested, key=lambda i: pvalues[i])
    levels = [math.nan] * len(pvalues)
    for rank, index in enumerate(order):
        levels[index] = 1 - alpha / (len(order) - rank)
    return levels
