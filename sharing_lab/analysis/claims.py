"""The paper's claims as statistics over seeds, decided together (DESIGN §8; ``sharing-lab claims RUNS…``).

Each claim below is one sentence of the paper (its function's docstring quotes it) turned into a signed statistic
over seeds whose positive sign is what the paper says, with a practical margin δ in the statistic's own units
(:mod:`sharing_lab.analysis.statistics` computes the tests, :mod:`sharing_lab.analysis.verdicts` the
Holm-adjusted verdicts: holds, fails, no effect, inconclusive). Arms are chosen as :class:`~.arms.Arms` says and
must be comparable (:func:`~.arms.check_comparable`): runs that differ in anything but scheme, transition, FLOPs
target and seed are refused, or split (``split_by``).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from ..plots.runs import Run, RunSet
from .arms import Arms, check_comparable, per_seed, sharing_levels, split_runs
from .measures import (
    accuracy_lost,
    closest_to_target_truth,
    decision_margin,
    exported_within_target,
    final,
    search_trend,
    top_n_advantage_trend,
    top_n_curve,
    top_n_truth,
    transition_drop,
    warmup_mean,
    wrong_argmax,
)
from .statistics import Test
from .verdicts import MIN_SEEDS, Claim, Question, decide

SEEDS = f"≥ {MIN_SEEDS} seeds each"
MIN_LEVELS = 3  # distinct sharing levels per seed for a rank correlation across them


def quote_of(function: Callable) -> str:
    """The paper's sentence a claim function tests: the text between the first “ and the last ” of its
    docstring (empty for claims beyond the paper)."""
    found = re.search(r"“(.*)”", " ".join((inspect.getdoc(function) or "").split()))
    return found.group(1) if found else ""


class Context:
    """What the claim functions read: the arms without a FLOPs target (``free``), with the most common one
    (``targeted``), and each arm's label."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.free, self.targeted = Arms(runs), Arms(runs, targeted=True)
        self.O, self.I, self.T = (self.free.scheme(f) for f in ("ordinal", "independent", "transitionary"))
        self.t = self.free.label("transitionary")

    def difference(self, function: Callable, id: str, statement: str, statistic: str, first: tuple[str, list[Run]],
                   second: tuple[str, list[Run]], measure: Callable[[Run], float], kind: str, delta: float,
                   needs: str, expects: str = "effect") -> Question:
        """A claim that mean(measure | first) − mean(measure | second) is positive (or, ``expects`` "no
        effect", within ±δ), one value per seed and arm."""
        a, b = per_seed(first[1], measure), per_seed(second[1], measure)
        test = Test(kind, tuple(a), tuple(b), delta) if a and b else None
        return Question(id, statement, quote_of(function), statistic, test, arms_of(first, second), needs, expects)


def arms_of(*arms: tuple[str, list[Run]]) -> dict[str, list[str]]:
    return {label: sorted(run.path.name for run in runs) for label, runs in arms}


OIT = f"runs of O, I and T without a FLOPs target, {SEEDS}"
TRUTH = f"runs of O, I and T without a FLOPs target on a space with a ground truth, {SEEDS}"
TARGETED = f"runs of O, I and T under one FLOPs target on a space with a ground truth, {SEEDS}"


def warmup_speed(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 4: “It can be found that the accuracy of both ASP-O and ASP-T raises much faster than
    ASP-I.” Statistic: the mean training accuracy over the warm-up (the area under its curve), δ = 0.5 points."""
    measure = lambda r: 100 * warmup_mean(r, "train_acc")  # noqa: E731
    return [c.difference(warmup_speed, id, f"{name} rises faster than I during warm-up (Sec. 5.2, Fig. 4)",
                         f"mean training accuracy over the warm-up, {label} − I (points)", (label, arm), ("I", c.I),
                         measure, "welch", 0.5, OIT)
            for id, name, label, arm in (("1a", "O", "O", c.O), ("1b", "T", c.t, c.T))]


def late_overlap(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 4: “Nevertheless, it does not affect the accuracy much in late stages when APS-O, APS-I,
    and APS-T are mostly overlapped.” Statistic: the final mean validation accuracy of the evaluated
    architectures; a claim of no effect, δ = 1 point."""
    measure = lambda r: 100 * final(r, "val_acc_mean")  # noqa: E731
    return [c.difference(late_overlap, id, f"T and {name} end at the same validation accuracy (Sec. 5.2, Fig. 4)",
                         f"final mean validation accuracy, {c.t} − {name} (points)", (c.t, c.T), (name, arm),
                         measure, "welch", 1.0, OIT, expects="no effect")
            for id, name, arm in (("1c", "O", c.O), ("1d", "I", c.I))]


def _across_levels(c: Context, function: Callable, id: str, statement: str, label: str, measure: Callable,
                   exclude_independent: bool) -> Question:
    """Per seed, Spearman ρ between the warm-up Φ and ``measure`` across the seed's distinct sharing levels (O, I,
    T, overlap; Φ equal within a relative 1e-3 is one level), for seeds with at least :data:`MIN_LEVELS`; mean
    over seeds, δ = 0.2."""
    runs = [r for r in c.free.runs if r.family in ("ordinal", "independent", "overlap")] + list(c.T)
    if exclude_independent:
        runs = [r for r in runs if r.family != "independent"]
    levels = sharing_levels(runs, lambda r: warmup_mean(r, "phi"), measure)
    rhos = [float(stats.spearmanr(*zip(*points)).statistic) for points in levels.values()
            if len(points) >= MIN_LEVELS and np.ptp([v for _, v in points]) > 0]
    test = Test("bounded-mean", tuple(rhos), delta=0.2) if rhos else None
    above = " above I's" if exclude_independent else ""
    needs = (f"runs of at least {MIN_LEVELS} distinct sharing levels{above} per seed (O, I, overlap α strictly "
             f"between), {SEEDS}")
    used = [r for r in runs if int(r.config.seed) in levels and len(levels[int(r.config.seed)]) >= MIN_LEVELS]
    return Question(id, statement, quote_of(function), f"Spearman ρ of warm-up Φ and {label} across the distinct "
                    f"sharing levels{above} of a seed, mean over seeds", test, arms_of(("levels", used)), needs,
                    detail={"levels_per_seed": {str(s): len(p) for s, p in levels.items()}})


def alignment(c: Context) -> list[Question]:
    """Sec. 3.3, Fig. 3(a): “It can be observed that a larger Φ gives more alignment of gradients.” Statistics:
    O − I in warm-up alignment (δ = 0.05 in cosine), and the rank correlation across distinct sharing levels."""
    measure = lambda r: warmup_mean(r, "cos_align")  # noqa: E731
    return [
        c.difference(alignment, "2a", "O's gradients align more than I's during warm-up (Sec. 3.3, Fig. 3)",
                     "mean gradient alignment over the warm-up, O − I (cosine)", ("O", c.O), ("I", c.I), measure,
                     "welch", 0.05, OIT),
        _across_levels(c, alignment, "2b", "gradient alignment grows with the sharing level Φ (Sec. 3.3, Fig. 3)",
                       "alignment", measure, exclude_independent=False),
    ]


def coupling(c: Context) -> list[Question]:
    """Sec. 3.3, Fig. 3(b): “A larger Φ gives rise to more coupling among candidates, which could make the
    controller less discriminative to distinguish different architectures.” Statistic: the rank correlation
    across distinct sharing levels above I's (I's coupled gradient is zero by construction: no candidates share
    a weight, so including it would rank a structural zero)."""
    return [_across_levels(c, coupling, "3", "the coupled-gradient norm grows with Φ (Sec. 3.3, Fig. 3)",
                           "coupled-gradient norm", lambda r: warmup_mean(r, "coupled_norm"),
                           exclude_independent=True)]


def _trend(c: Context, function: Callable, id: str, name: str, label: str, figures: str) -> Question:
    return c.difference(function, id, f"along T's search, {label} falls with Φ (Sec. 5.2, {figures})",
                        f"Spearman ρ of {label} against time over the search phase, {c.t} − O (O's Φ never moves: "
                        "its trend is the drift the epochs alone cause)", (c.t, c.T), ("O", c.O),
                        lambda r: search_trend(r, name), "bounded-difference", 0.2, OIT)


def alignment_trend(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 4: “From the rightmost figure, the alignment of gradients decreases with the annealed
    sharing level Φ when APS-T is applied.” Statistic: T's fall in alignment over the search phase minus O's
    over the same epochs, δ = 0.2 in ρ."""
    return [_trend(c, alignment_trend, "4a", "cos_align", "alignment", "Fig. 4")]


def coupling_trend(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 5: “The transitionary strategy successfully decreases the norm of coupled gradients that
    facilitates better architecture discrimination.” Statistic: T's fall in the coupled-gradient norm over the
    search phase minus O's, δ = 0.2 in ρ."""
    return [_trend(c, coupling_trend, "4b", "coupled_norm", "the coupled-gradient norm", "Fig. 5")]


def t_separates(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 5: “Finally, our APS-T confidently separates each candidate, and the optimal solution of
    maximum channel capacity can be stably attained across different runs.” Statistic: the controller's final
    probability of the ground truth's best architecture, T − O, δ = 0.05."""
    return [c.difference(t_separates, "5a", "T puts more probability on the ground-truth best architecture than O "
                         "(Sec. 5.2, Fig. 5)", f"final controller probability of the best architecture, {c.t} − O",
                         (c.t, c.T), ("O", c.O), lambda r: final(r, "gt_top1_prob"), "bounded-difference", 0.05,
                         TRUTH)]


def o_undecided(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 5: “From Figure 5, APS-O cannot effectively distinguish the best choice (96) and the
    second best choice (64) throughout all layers.” Statistic: the controller's final entropy, O − T, δ = 0.1
    nats."""
    return [c.difference(o_undecided, "5b", "T's decisions end with lower entropy than O's (Sec. 5.2, Fig. 5)",
                         f"final controller entropy, O − {c.t} (nats)", ("O", c.O), (c.t, c.T),
                         lambda r: final(r, "entropy"), "welch", 0.1, OIT)]


def i_margin_but_stuck(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 5: “APS-I separates different candidates by a large margin especially in deep layers but
    is sometimes stuck in incorrect local optima.” Statistics: the final margin between each decision's two most
    likely candidates, I − O (δ = 0.05 in probability); the share of seeds exporting a wrong argmax (regret above
    the ground truth's resolution), I − T (δ = 0.2)."""
    wrong = [per_seed(arm, wrong_argmax) for arm in (c.I, c.T)]
    test = Test("proportions", *((sum(w > 0.5 for w in arm), len(arm)) for arm in wrong), delta=0.2) \
        if all(wrong) else None
    return [
        c.difference(i_margin_but_stuck, "5c", "I separates the candidates by a larger margin than O (Sec. 5.2, "
                     "Fig. 5)", "final probability margin of each decision's top two candidates, I − O", ("I", c.I),
                     ("O", c.O), decision_margin, "bounded-difference", 0.05, OIT),
        Question("6", "I ends on a wrong argmax in more seeds than T (Sec. 5.2, Fig. 5)",
                 quote_of(i_margin_but_stuck), f"share of seeds exporting an architecture whose regret exceeds the "
                 f"ground truth's resolution, I − {c.t}", test, arms_of(("I", c.I), (c.t, c.T)), TRUTH),
    ]


def _taus(c: Context) -> tuple[float, float, float] | None:
    taus = sorted(c.free.by_tau)
    return (taus[0], taus[len(taus) // 2], taus[-1]) if len(taus) >= 3 else None


TAUS = f"transitionary runs at three or more τ without a FLOPs target, {SEEDS} per τ"


def _tau_claim(c: Context, function: Callable, id: str, statement: str, statistic: str, pick: int,
               measure: Callable[[Run], float], delta: float) -> Question:
    taus = _taus(c)
    if taus is None:
        return Question(id, statement, quote_of(function), statistic, None, {}, TAUS)
    chosen, middle = taus[pick], taus[1]
    return c.difference(function, id, statement, f"{statistic}, τ = {chosen:g} − τ = {middle:g}",
                        (f"τ = {chosen:g}", c.free.by_tau[chosen]), (f"τ = {middle:g}", c.free.by_tau[middle]),
                        measure, "welch", delta, TAUS)


def large_tau_drop(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 6: “It can be found that with a large τ (e.g. 1e-1) makes the transition non-smooth,
    which leads to a sudden drop of accuracy.” Statistic: the validation accuracy lost at the transition, largest
    τ − middle τ, δ = 1 point."""
    return [_tau_claim(c, large_tau_drop, "7a", "a too large τ drops accuracy at the transition (Sec. 5.2, Fig. 6)",
                       "accuracy drop at the transition (points)", 2, transition_drop, 1.0)]


def tau_separation(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 7: “We see that either large or small τ cannot separate different architectures with
    insufficiently optimized Φ, while only a proper learning rate (e.g. 1e-3) produces more discriminative
    candidates with lower Φ.” Statistic: the controller's final entropy, smallest (7b) and largest (7c) τ −
    middle τ, δ = 0.1 nats."""
    entropy = lambda r: final(r, "entropy")  # noqa: E731
    return [_tau_claim(c, tau_separation, id, f"a too {size} τ does not separate the candidates (Sec. 5.2, Fig. 7)",
                       "final controller entropy (nats)", pick, entropy, 0.1)
            for id, size, pick in (("7b", "small", 0), ("7c", "large", 2))]


def _per_n(t: list[Run], other: list[Run], within_target: bool) -> dict[str, float]:
    """T − other in mean top-N ground-truth accuracy (points) at each N both arms reach (descriptive)."""
    curves = {id(run): top_n_curve(run, within_target) for run in (*t, *other)}
    gaps = {}
    for n in range(1, max((len(c) for c in curves.values()), default=0) + 1):
        a, b = (per_seed(arm, lambda r, n=n: curves[id(r)][n - 1] if len(curves[id(r)]) >= n else math.nan)
                for arm in (t, other))
        if not a or not b:
            break
        gaps[str(n)] = float(np.mean(a) - np.mean(b))
    return gaps


def _against(c: Context, function: Callable, ids: str, statement: str, statistic: str, arms: Arms,
             measure: Callable[[Run], float], needs: str, within_target: bool) -> list[Question]:
    t_arm = (arms.label("transitionary"), arms.scheme("transitionary"))
    questions = []
    for id, name, family in zip(ids, "OI", ("ordinal", "independent")):
        question = c.difference(function, f"8{id}", statement.format(name), statistic.format(t_arm[0], name), t_arm,
                                (name, arms.scheme(family)), measure, "welch", 0.5, needs)
        question.detail["gap_per_n"] = _per_n(t_arm[1], arms.scheme(family), within_target)
        questions.append(question)
    return questions


def top_n_free(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 8: “It can be found that given no FLOPs constraint, APS-T clearly outperforms APS-O and
    APS-I, as the top-N models of APS-T distribute around the optimal solution.” Statistic: the ground-truth test
    accuracy of the beam's most likely architecture, δ = 0.5 points (the gap at every N in ``detail``)."""
    return _against(c, top_n_free, "ab", "T's top-1 architecture is better than {}'s without a FLOPs target "
                    "(Sec. 5.2, Fig. 8)", "ground-truth accuracy of the beam's top-1, {} − {} (points)", c.free,
                    lambda r: top_n_truth(r, 1), TRUTH, False)


def top_n_shrinks(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 8: “The improvement decreases as N increases, indicating that with APS-T, better
    architectures can be picked with higher probabilities.” Statistic: the gap at N = 1 minus the gap over the
    whole beam, i.e. T's (top-1 − beam mean) minus the other's, without a target, δ = 0.5 points."""
    return _against(c, top_n_shrinks, "cd", "T's advantage over {} shrinks as N grows (Sec. 5.2, Fig. 8)",
                    "(top-1 − beam mean) in ground-truth accuracy, {} − {} (points)", c.free,
                    top_n_advantage_trend, TRUTH, False)


def top_n_targeted(c: Context) -> list[Question]:
    """Sec. 5.2, Fig. 8: “Under FLOPs constraint, APS-T still outperforms the other two.” Statistic: the
    ground-truth accuracy of the most likely beam architecture within the target, δ = 0.5 points."""
    return _against(c, top_n_targeted, "ef", "under a FLOPs target, T's top-1 within it is better than {}'s "
                    "(Sec. 5.2, Fig. 8)", "ground-truth accuracy of the top-1 within the target, {} − {} (points)",
                    c.targeted, lambda r: top_n_truth(r, 1, within_target=True), TARGETED, True)


def closest_to_target(c: Context) -> list[Question]:
    """Sec. 5.3: “We choose the architecture closest to the target FLOPs from the top-N candidates, and train it
    from scratch to obtain the final performance.” Statistic: the ground-truth accuracy of that choice, T − O
    and T − I under the target, δ = 0.5 points; and the share of searches under a target whose exported
    architecture lies within it, against one half."""
    questions = _against(c, closest_to_target, "gh", "under a FLOPs target, T's Sec. 5.3 choice is better than "
                         "{}'s", "ground-truth accuracy of the beam architecture closest to the target, {} − {} "
                         "(points)", c.targeted, closest_to_target_truth, TARGETED, True)
    runs = [r for r in c.targeted.runs if r.family in ("ordinal", "independent", "transitionary")]
    within = [exported_within_target(r) for r in runs]
    within = [w for w in within if math.isfinite(w)]
    test = Test("proportion", (sum(within), len(within)), null=0.5) if within else None
    questions.append(Question("8i", "most searches under a FLOPs target export an architecture within it (Sec. 5.3)",
                              quote_of(closest_to_target), "share of searches under the target whose exported "
                              "architecture is within it, − 1/2", test, arms_of(("targeted", runs)),
                              f"searches under a FLOPs target, {SEEDS}"))
    return questions


def ranking(c: Context) -> list[Question]:
    """Beyond the paper, a test of its explanation of I's failures (Sec. 5.2): “This is possibly due to the
    incorrect reward from the insufficiently trained meta weights to the controller, such that the controller
    cannot explore better solution space.” Statistic: the final Kendall τ-b between the supernet's and the
    ground truth's accuracies of every architecture, T − O and T − I, δ = 0.05."""
    return [c.difference(ranking, id, f"T's supernet ranks the space better than {name}'s (beyond the paper)",
                         f"final Kendall τ-b of supernet and ground-truth accuracy, {c.t} − {name}", (c.t, c.T),
                         (name, arm), lambda r: final(r, "gt_kendall"), "bounded-difference", 0.05, TRUTH)
            for id, name, arm in (("9a", "O", c.O), ("9b", "I", c.I))]


def schedule(c: Context) -> list[Question]:
    """Beyond the paper: the Φ schedule (Φ set by the epoch, not learnt) against T at its constant τ. Statistics:
    the validation accuracy lost from the search phase's best to its end (δ = 0.5 points) and the final Kendall
    τ-b against the ground truth (δ = 0.05)."""
    needs = f"transitionary runs under the Φ schedule and at a constant τ, {SEEDS}"
    scheduled = ("scheduled", c.free.scheduled)
    return [
        c.difference(schedule, "10a", f"the Φ schedule loses less validation accuracy by the end of the search than "
                     f"{c.t} (beyond the paper)", f"accuracy lost from the search phase's best to its end, {c.t} − "
                     "scheduled (points)", (c.t, c.T), scheduled, accuracy_lost, "welch", 0.5, needs),
        c.difference(schedule, "10b", f"the Φ schedule's supernet ranks the space better than {c.t}'s (beyond the "
                     "paper)", f"final Kendall τ-b of supernet and ground-truth accuracy, scheduled − {c.t}",
                     scheduled, (c.t, c.T), lambda r: final(r, "gt_kendall"), "bounded-difference", 0.05, needs),
    ]


CLAIMS = (warmup_speed, late_overlap, alignment, coupling, alignment_trend, coupling_trend, t_separates,
          o_undecided, i_margin_but_stuck, large_tau_drop, tau_separation, top_n_free, top_n_shrinks,
          top_n_targeted, closest_to_target, ranking, schedule)


def questions(runs: Sequence[Run]) -> list[Question]:
    """Every claim's question on ``runs`` (search runs; no comparability check), in the paper's order."""
    context = Context([run for run in runs if run.kind == "search"])
    found = [question for function in CLAIMS for question in function(context)]
    return sorted(found, key=lambda q: (int(re.match(r"\d+", q.id).group()), q.id))


def evaluate(runs: Sequence[Run]) -> list[Claim]:
    """Every claim's verdict on ``runs``, which must be comparable (:func:`~.arms.check_comparable`)."""
    searches = [run for run in runs if run.kind == "search"]
    check_comparable(searches)
    return decide(questions(searches))


def claims_of(paths: Sequence[str | Path], split_by: str | None = None) -> dict[str, list[Claim]]:
    """The claims on the runs at or under ``paths``: {"": claims}, or with ``split_by`` one family of claims per
    value of that configuration key (each decided and Holm-adjusted on its own)."""
    runs = [run for run in RunSet.from_paths(paths) if run.kind == "search"]
    if split_by is None:
        return {"": evaluate(runs)}
    groups = split_runs(runs, split_by)
    for group in groups.values():
        check_comparable(group)
    return {f"{split_by}={value}": decide(questions(group)) for value, group in groups.items()}
