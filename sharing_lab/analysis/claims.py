"""The paper's claims as statistics over seeds, each with a 95% interval and a verdict, from records only
(DESIGN §8; ``sharing-lab claims RUNS…``).

Every claim of Section 5.2 (and 3.3) is turned into a signed statistic whose positive sign is what the paper
says: a difference between two arms (runs of two schemes or two τ, one value per seed; Welch's t-interval), a
mean over seeds of a per-run rank correlation (t-interval), or a difference of two proportions (Newcombe's
interval from Wilson's). The verdict is *holds* when the interval lies above 0, *fails* when it lies below,
and *inconclusive* when it straddles 0 or when an arm has fewer than :data:`MIN_SEEDS` seeds; a claim the runs
cannot test says which runs it needs. Runs with several seeds per arm are averaged per seed first (the seed is
the unit). Schemes are compared on runs without a FLOPs target unless a claim is about the target; the
transitionary arm is the τ with the most such runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..plots.runs import Run, RunSet
from .measures import (
    accuracy_lost,
    beam_truth,
    final,
    search_correlation,
    transition_drop,
    warmup_mean,
    warmup_ratio,
    wrong_argmax,
)

MIN_SEEDS = 5
LEVEL = 0.95
VERDICTS = ("holds", "fails", "inconclusive")


@dataclass(frozen=True)
class Claim:
    """One claim's test: ``value`` and its interval [``low``, ``high``] (None when untestable), ``n`` the seeds
    of the smallest arm, ``needs`` the runs that would test it when these cannot (or cannot decide)."""

    id: str
    statement: str
    statistic: str
    value: float | None
    low: float | None
    high: float | None
    n: int
    verdict: str
    needs: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# --- intervals --------------------------------------------------------------------------------------------

def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and two-sided t-interval (NaN bounds from a single value; a point for constant values)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    if np.ptp(x) == 0:
        return mean, mean, mean
    low, high = stats.ttest_1samp(x, 0.0).confidence_interval(LEVEL)
    return mean, float(low), float(high)


def difference_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """mean(a) − mean(b) with Welch's t-interval (unequal variances)."""
    x = np.asarray([v for v in a if math.isfinite(v)], dtype=float)
    y = np.asarray([v for v in b if math.isfinite(v)], dtype=float)
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan, math.nan
    value = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return value, math.nan, math.nan
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return value, value, value
    low, high = stats.ttest_ind(x, y, equal_var=False).confidence_interval(LEVEL)
    return value, float(low), float(high)


def proportion_difference(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """k1/n1 − k2/n2 with Newcombe's hybrid score interval (method 10), from each arm's Wilson interval."""
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = stats.binomtest(k1, n1).proportion_ci(LEVEL, method="wilson")
    l2, u2 = stats.binomtest(k2, n2).proportion_ci(LEVEL, method="wilson")
    value = p1 - p2
    return value, value - math.hypot(p1 - l1, u2 - p2), value + math.hypot(u1 - p1, p2 - l2)


def verdict(low: float, high: float, n: int) -> str:
    """holds (interval above 0), fails (below), inconclusive (straddles 0, undefined, or n < MIN_SEEDS)."""
    if n < MIN_SEEDS or not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"


# --- arms ------------------------------------------------------------------------------------------------

def per_seed(runs: Iterable[Run], measure: Callable[[Run], float]) -> list[float]:
    """One value per seed: the measure of each run, averaged over the runs of a seed."""
    values: dict[int, list[float]] = {}
    for run in runs:
        value = measure(run)
        if math.isfinite(value):
            values.setdefault(int(run.config.seed), []).append(value)
    return [float(np.mean(v)) for _, v in sorted(values.items())]


class Arms:
    """The runs a claim compares: search runs by scheme family, without a FLOPs target (``targeted``: with the
    most common one), the transitionary arm at its most common τ; and transitionary runs by τ."""

    def __init__(self, runset: RunSet, targeted: bool = False) -> None:
        searches = [run for run in runset if run.kind == "search"]
        has_target = [run for run in searches if run.config.search.flops_target is not None]
        if targeted:
            targets = pd.Series([run.config.search.flops_target for run in has_target])
            common = targets.mode().iloc[0] if len(targets) else None
            searches = [run for run in has_target if run.config.search.flops_target == common]
        else:
            searches = [run for run in searches if run.config.search.flops_target is None]
        self.runs = searches
        self.by_tau: dict[float, list[Run]] = {}
        self.scheduled = [run for run in searches if run.family == "transitionary" and run.phi_schedule is not None]
        for run in searches:
            if run.family == "transitionary" and run.phi_schedule is None:
                self.by_tau.setdefault(run.tau, []).append(run)
        self.tau = self._main_tau()

    def _main_tau(self) -> float | None:
        """The τ with the most runs; among equals (a τ sweep alone), the middle one."""
        if not self.by_tau:
            return None
        taus = sorted(self.by_tau)
        most = max(len(runs) for runs in self.by_tau.values())
        middle = (len(taus) - 1) / 2
        return min((tau for tau in taus if len(self.by_tau[tau]) == most),
                   key=lambda tau: abs(taus.index(tau) - middle))

    def scheme(self, family: str) -> list[Run]:
        if family == "transitionary":
            return self.by_tau.get(self.tau, [])
        return [run for run in self.runs if run.family == family]


def _claim(id: str, statement: str, statistic: str, result: tuple[float, float, float], n: int,
           needs: str) -> Claim:
    value, low, high = result
    if not math.isfinite(value):
        return Claim(id, statement, statistic, None, None, None, n, "inconclusive", needs)
    bounds = (low, high) if math.isfinite(low) and math.isfinite(high) else (None, None)
    decided = verdict(low, high, n)
    hint = needs if decided == "inconclusive" and n < MIN_SEEDS else None
    return Claim(id, statement, statistic, value, *bounds, n, decided, hint)


def compare(id: str, statement: str, statistic: str, first: list[Run], second: list[Run],
            measure: Callable[[Run], float], needs: str) -> Claim:
    """A claim that mean(measure | first) − mean(measure | second) > 0, one value per seed and arm."""
    a, b = per_seed(first, measure), per_seed(second, measure)
    return _claim(id, statement, statistic, difference_interval(a, b), min(len(a), len(b)), needs)


# --- the claims ------------------------------------------------------------------------------------------

SEEDS = f"≥ {MIN_SEEDS} seeds each"


def _across_schemes(arms: Arms, measure: Callable[[Run], float]) -> tuple[tuple[float, float, float], int]:
    """Per seed, Spearman ρ across that seed's schemes (overlap levels included) between warm-up Φ and
    ``measure``; mean over seeds with its interval."""
    by_seed: dict[int, list[tuple[float, float]]] = {}
    for run in arms.runs:
        if run.family == "transitionary" and (run.phi_schedule is not None or run.tau != arms.tau):
            continue
        point = (warmup_mean(run, "phi"), measure(run))
        if all(math.isfinite(v) for v in point):
            by_seed.setdefault(int(run.config.seed), []).append(point)
    rhos = []
    for points in by_seed.values():
        phis, values = zip(*points)
        if len(points) >= 2 and np.ptp(phis) > 0 and np.ptp(values) > 0:
            rhos.append(float(stats.spearmanr(phis, values).statistic))
    return mean_interval(rhos), len(rhos)


def _wrong_argmax(runs: list[Run]) -> tuple[int, int]:
    """(seeds whose exported architecture is a wrong argmax (:func:`wrong_argmax`), seeds)."""
    wrong = per_seed(runs, wrong_argmax)
    return sum(w > 0.5 for w in wrong), len(wrong)


def evaluate(runset: RunSet) -> list[Claim]:
    """Every claim's statistic, interval and verdict on ``runset`` (DESIGN §8)."""
    free, targeted = Arms(runset), Arms(runset, targeted=True)
    O, I, T = (free.scheme(f) for f in ("ordinal", "independent", "transitionary"))
    oit = f"runs of O, I and T without a FLOPs target, {SEEDS}"
    truth = f"runs of O, I and T on a space with a ground truth, {SEEDS}"
    t_label = f"T (τ = {free.tau:g})" if free.tau is not None else "T"
    claims = [
        compare("1a", "O rises faster than I during warm-up (Sec. 5.2, Fig. 4)",
                "mean training accuracy over the warm-up, O − I (points)", O, I,
                lambda r: 100 * warmup_mean(r, "train_acc"), oit),
        compare("1b", "T rises faster than I during warm-up (Sec. 5.2, Fig. 4)",
                f"mean training accuracy over the warm-up, {t_label} − I (points)", T, I,
                lambda r: 100 * warmup_mean(r, "train_acc"), oit),
    ]
    probes = f"runs of at least two sharing levels (O, I, overlap) with probes, {SEEDS}"
    for id, statement, measure, label in (
        ("2", "gradient alignment grows with the sharing level Φ (Sec. 3.3, Fig. 3)",
         lambda r: warmup_mean(r, "cos_align"), "alignment"),
        ("3a", "the coupled-gradient norm grows with Φ (Sec. 3.3, Fig. 3)",
         lambda r: warmup_mean(r, "coupled_norm"), "coupled-gradient norm"),
        ("3b", "the coupled-gradient norm grows with Φ relative to the gradient's norm (Sec. 3.3)",
         lambda r: warmup_ratio(r, "coupled_norm", "kernel_grad_norm"), "coupled norm / kernel-gradient norm"),
    ):
        result, n = _across_schemes(free, measure)
        claims.append(_claim(id, statement, f"Spearman ρ across schemes of warm-up Φ and {label}, mean over seeds",
                             result, n, probes))
    for id, name, label in (("4a", "cos_align", "alignment"), ("4b", "coupled_norm", "coupled-gradient norm")):
        rhos = per_seed(T, lambda r, name=name: search_correlation(r, "phi", name))
        claims.append(_claim(id, f"along T's search, {label} falls with Φ (Sec. 5.2, Figs. 4-5)",
                             f"Spearman ρ of Φ and {label} over {t_label}'s search phase, mean over seeds",
                             mean_interval(rhos), len(rhos), f"transitionary runs with probes, {SEEDS}"))
    claims += [
        compare("5a", "T puts more probability on the ground-truth best architecture than O (Sec. 5.2, Fig. 5)",
                f"final controller probability of the best architecture, {t_label} − O", T, O,
                lambda r: final(r, "gt_top1_prob"), truth),
        compare("5b", "T's decisions end with lower entropy than O's (Sec. 5.2, Fig. 5)",
                f"final controller entropy, O − {t_label} (nats)", O, T, lambda r: final(r, "entropy"), oit),
    ]
    (k_i, n_i), (k_t, n_t) = _wrong_argmax(I), _wrong_argmax(T)
    claims.append(_claim("6", "I ends on a wrong argmax in more seeds than T (Sec. 5.2, Fig. 5)",
                         f"share of seeds exporting an architecture whose regret exceeds the ground truth's "
                         f"resolution (its mean standard error), I − {t_label}",
                         proportion_difference(k_i, n_i, k_t, n_t), min(n_i, n_t), truth))
    claims += tau_claims(free)
    for ids, arms, what in (("ab", free, "without"), ("cd", targeted, "with")):
        o, i, t = (arms.scheme(f) for f in ("ordinal", "independent", "transitionary"))
        needs = f"runs of O, I and T {what} a FLOPs target on a space with a ground truth, {SEEDS}"
        for suffix, other, name in ((ids[0], o, "O"), (ids[1], i, "I")):
            claims.append(compare(f"8{suffix}", f"T's top-N architectures are better than {name}'s, {what} "
                                  "a FLOPs target (Sec. 5.2, Fig. 8)",
                                  f"mean ground-truth test accuracy of the beam's top-N, T − {name} (points)",
                                  t, other, beam_truth, needs))
    for suffix, other, name in (("a", O, "O"), ("b", I, "I")):
        claims.append(compare(f"9{suffix}", f"T's supernet ranks the space better than {name}'s (beyond the paper)",
                              f"final Kendall τ-b of supernet and ground-truth accuracy, {t_label} − {name}",
                              T, other, lambda r: final(r, "gt_kendall"), truth))
    scheduled = f"transitionary runs under the Φ schedule and at a constant τ, {SEEDS}"
    claims += [
        compare("10a", f"the Φ schedule loses less validation accuracy by the end of the search than {t_label} "
                "(beyond the paper)", f"accuracy lost from the search phase's best to its end, {t_label} − "
                "scheduled (points)", T, free.scheduled, accuracy_lost, scheduled),
        compare("10b", f"the Φ schedule's supernet ranks the space better than {t_label}'s (beyond the paper)",
                f"final Kendall τ-b of supernet and ground-truth accuracy, scheduled − {t_label}",
                free.scheduled, T, lambda r: final(r, "gt_kendall"), scheduled),
    ]
    return claims


def tau_claims(arms: Arms) -> list[Claim]:
    """Claim 7 (Sec. 5.2, Figs. 6-7): against the middle τ, the largest drops accuracy at the transition and the
    smallest does not separate the candidates (higher final entropy)."""
    taus = sorted(arms.by_tau)
    needs = f"transitionary runs at three or more τ without a FLOPs target, {SEEDS} per τ"
    statement_a = "a too large τ drops accuracy at the transition (Sec. 5.2, Fig. 6)"
    statement_b = "a too small τ does not separate the candidates (Sec. 5.2, Fig. 7)"
    if len(taus) < 3:
        return [Claim("7a", statement_a, "accuracy drop at the transition, largest τ − middle τ (points)", None,
                      None, None, 0, "inconclusive", needs),
                Claim("7b", statement_b, "final controller entropy, smallest τ − middle τ (nats)", None, None,
                      None, 0, "inconclusive", needs)]
    low, mid, high = taus[0], taus[len(taus) // 2], taus[-1]
    return [
        compare("7a", statement_a, f"accuracy drop at the transition, τ = {high:g} − τ = {mid:g} (points)",
                arms.by_tau[high], arms.by_tau[mid], transition_drop, needs),
        compare("7b", statement_b, f"final controller entropy, τ = {low:g} − τ = {mid:g} (nats)",
                arms.by_tau[low], arms.by_tau[mid], lambda r: final(r, "entropy"), needs),
    ]


def claims_of(paths: Sequence[str | Path]) -> list[Claim]:
    """The claims evaluated on the runs at or under ``paths``."""
    return evaluate(RunSet.from_paths(paths))
