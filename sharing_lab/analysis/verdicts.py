"""From tests to verdicts (DESIGN §8): a family of claims, each a :class:`Question` (a statistic over seeds, the
sign the paper predicts, a practical margin δ), decided together with Holm's step-down adjustment.

Two families are adjusted, each over every claim that can be tested (at least :data:`MIN_SEEDS` seeds in every
arm, no arm of constant values): the two-sided p-values of no effect, and the TOST p-values of an effect within
±δ. A claim that predicts an effect **holds** when its adjusted p-value is below α and the effect has the
predicted sign, **fails** when it has the other sign, and gets **no effect** when the TOST is significant (the
effect lies within ±δ; a significant effect smaller than δ is "no effect" too: it is too small to matter). A
claim that predicts no effect (the schemes' late overlap) holds on the TOST and fails on a significant
difference that is not within ±δ. Everything else is **inconclusive**: the runs cannot tell, and the claim says
how many seeds per arm would (:meth:`Test.seeds_for`, at α/m, the first step of Holm's procedure).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .statistics import ALPHA, Test, holm, holm_levels

MIN_SEEDS = 5
VERDICTS = ("holds", "fails", "no effect", "inconclusive")
METHODS = {
    "welch": "Welch's t",
    "t": "Student's t",
    "bounded-difference": "seed bootstrap (percentile) and permutation test",
    "bounded-mean": "seed bootstrap (percentile) and sign-flip test",
    "proportions": "Newcombe's hybrid score interval",
    "proportion": "Wilson's score interval",
}


@dataclass(frozen=True)
class Question:
    """A claim before its verdict: ``test`` (None when the runs cannot give one) is signed so that a positive
    value is what the paper says; ``expects`` is "effect" or "no effect"; ``arms`` maps each arm's label to its
    runs; ``needs`` says which runs would test it; ``detail`` holds descriptive numbers (JSON only)."""

    id: str
    statement: str
    quote: str
    statistic: str
    test: Test | None
    arms: dict[str, list[str]]
    needs: str
    expects: str = "effect"
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A claim's verdict: ``value`` with its raw 95% interval [``low``, ``high``] and its interval at Holm's level
    [``adjusted_low``, ``adjusted_high``]; raw and adjusted p-values of no effect (``p``) and of equivalence
    within ±``delta`` (``p_equivalent``); ``n`` the seeds of the smallest arm; ``reason`` why the verdict. Seeds
    per arm for 80% power at α/m (None: the spread is unknown): ``seeds_at_effect`` to show the observed effect,
    ``seeds_at_delta`` one of size δ (about what equivalence needs when the true effect is 0), and
    ``seeds_to_equivalence`` equivalence within ±δ at the observed effect (None when it is beyond δ)."""

    id: str
    statement: str
    quote: str
    statistic: str
    expects: str
    method: str
    delta: float | None
    value: float | None
    low: float | None
    high: float | None
    adjusted_low: float | None
    adjusted_high: float | None
    level: float | None
    p: float | None
    p_adjusted: float | None
    p_equivalent: float | None
    p_equivalent_adjusted: float | None
    n: int
    verdict: str
    reason: str
    needs: str | None
    seeds_at_effect: int | None
    seeds_at_delta: int | None
    seeds_to_equivalence: int | None
    arms: dict[str, list[str]]
    detail: dict

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def decided(self) -> bool:
        return self.verdict != "inconclusive"


def _number(value: float) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _constant_arm(test: Test) -> bool:
    if test.kind in ("proportions", "proportion"):
        return False
    arms = [test.first] + ([test.second] if test.kind in ("welch", "bounded-difference") else [])
    return any(np.ptp(np.asarray(arm, dtype=float)[np.isfinite(arm)]) == 0 for arm in arms if len(arm))


def untestable(question: Question) -> str | None:
    """Why ``question`` cannot be decided whatever its p-value (None: it can)."""
    test = question.test
    if test is None or not math.isfinite(test.value):
        return "not testable on these runs"
    if test.n < MIN_SEEDS:
        return f"{test.n} seeds in the smallest arm; a verdict needs {MIN_SEEDS}"
    if _constant_arm(test):
        return "an arm's values are all equal: its spread, and so any interval, is unknown"
    return None


def _seeds(test: Test, effect: float, alpha: float) -> int | None:
    """Seeds per arm for 80% power (:meth:`Test.seeds_for`), and at least what a permutation test needs to reach
    ``alpha`` at all (:func:`_smallest_p`)."""
    if not math.isfinite(effect) or effect <= 0:
        return None
    seeds = test.seeds_for(effect, alpha)
    if seeds is None or test.kind not in ("bounded-mean", "bounded-difference"):
        return seeds
    while _smallest_p(test.kind, seeds, seeds) >= alpha:
        seeds += 1
    return seeds


def _smallest_p(kind: str, first: int, second: int) -> float:
    """The smallest two-sided p-value a permutation test can give: 2 / 2^n for sign flips of one arm,
    2 / C(n1 + n2, n1) for relabelling two."""
    return 2 / 2 ** first if kind == "bounded-mean" else 2 / math.comb(first + second, first)


def decide(questions: list[Question], alpha: float = ALPHA) -> list[Claim]:
    """Each question's verdict, Holm-adjusted over the family of ``questions`` (module docstring)."""
    with warnings.catch_warnings():  # scipy's "precision loss" on nearly equal values: the verdict checks spread
        warnings.simplefilter("ignore", RuntimeWarning)
        blocked = [untestable(q) for q in questions]
        p = [q.test.p() if why is None else math.nan for q, why in zip(questions, blocked)]
        p_eq = [q.test.p_equivalent() if why is None else math.nan for q, why in zip(questions, blocked)]
        p_adj, p_eq_adj, levels = holm(p), holm(p_eq), holm_levels(p, alpha)
        m = max(1, sum(math.isfinite(x) for x in p))
        return [_claim(q, why, *row, alpha=alpha, m=m)
                for q, why, *row in zip(questions, blocked, p, p_adj, p_eq, p_eq_adj, levels)]


def _claim(q: Question, why: str | None, p: float, p_adj: float, p_eq: float, p_eq_adj: float, level: float,
           alpha: float, m: int) -> Claim:
    first_step = alpha / m
    test = q.test
    value = _number(test.value) if test is not None else None
    delta = _number(test.delta) if test is not None else None
    low = high = adjusted_low = adjusted_high = None
    at_effect = at_delta = to_equivalence = None
    if test is not None and value is not None and test.n >= 2:
        low, high = (_number(x) for x in test.interval(1 - alpha))
        if math.isfinite(level):
            adjusted_low, adjusted_high = (_number(x) for x in test.interval(level))
        margin = delta if delta is not None else math.nan
        at_effect = _seeds(test, abs(value), first_step)
        at_delta = _seeds(test, margin, first_step)
        # the binding one of the TOST's two one-sided tests faces a shift of δ − |effect|
        to_equivalence = _seeds(test, margin - abs(value), first_step)
    verdict, reason = _verdict(q, why, value, delta, p_adj, p_eq_adj, alpha, m)
    return Claim(q.id, q.statement, q.quote, q.statistic, q.expects, METHODS[test.kind] if test else "", delta,
                 value, low, high, adjusted_low, adjusted_high, _number(level), _number(p), _number(p_adj),
                 _number(p_eq), _number(p_eq_adj), test.n if test is not None else 0, verdict, reason,
                 q.needs if verdict == "inconclusive" and (test is None or test.n < MIN_SEEDS) else None, at_effect,
                 at_delta, to_equivalence, q.arms, q.detail)


def _verdict(q: Question, why: str | None, value: float | None, delta: float | None, p_adj: float,
             p_eq_adj: float, alpha: float, m: int) -> tuple[str, str]:
    if why is not None:
        return "inconclusive", why
    different = math.isfinite(p_adj) and p_adj < alpha
    equivalent = math.isfinite(p_eq_adj) and p_eq_adj < alpha
    margin = f"±{delta:g}" if delta is not None else "the margin"
    if q.expects == "no effect":
        if equivalent:
            return "holds", f"within {margin} (TOST, Holm-adjusted p = {p_eq_adj:.2g})"
        if different:
            return "fails", f"a difference (Holm-adjusted p = {p_adj:.2g}), not shown to lie within {margin}"
        return "inconclusive", f"neither a difference (adjusted p = {p_adj:.2g}) nor equivalence within {margin} " \
                               f"(adjusted TOST p = {_shown(p_eq_adj)}){_floor(q.test, m, alpha)}"
    if equivalent:
        small = " (a significant effect, but smaller than the margin)" if different else ""
        return "no effect", f"within {margin}{small} (TOST, Holm-adjusted p = {p_eq_adj:.2g})"
    if different:
        return ("holds" if value > 0 else "fails"), f"Holm-adjusted p = {p_adj:.2g}"
    return "inconclusive", f"neither an effect (Holm-adjusted p = {p_adj:.2g}) nor one within {margin} " \
                           f"(adjusted TOST p = {_shown(p_eq_adj)}){_floor(q.test, m, alpha)}"


def _floor(test: Test, m: int, alpha: float) -> str:
    """A note when a permutation test on these seeds cannot reach Holm's first step α/m, however large the
    effect."""
    if test.kind not in ("bounded-mean", "bounded-difference"):
        return ""
    smallest = _smallest_p(test.kind, len(test.first), len(test.second))
    if smallest < alpha / m:
        return ""
    return f"; at {test.n} seeds a permutation test cannot go below p = {smallest:.2g}, above α/m = {alpha / m:.2g}"


def _shown(p: float) -> str:
    return f"{p:.2g}" if math.isfinite(p) else "none: no margin for this statistic"


def counts(claims: list[Claim]) -> dict[str, int]:
    """How many claims got each verdict (every verdict listed)."""
    return {verdict: sum(claim.verdict == verdict for claim in claims) for verdict in VERDICTS}

