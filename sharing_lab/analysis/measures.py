"""What the claims measure on one run, from its records (:mod:`sharing_lab.analysis.claims` turns the values of the runs
of an arm into a statistic over seeds): warm-up means, final values, correlations along the search, accuracy
drops, and the ground-truth measures, scored against the shipped table (:func:`truth_of`)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
from scipy import stats

from ..plots.runs import Run
from ..truth.scoring import rescore, shipped_truth


def _scalar(run: Run, name: str) -> pd.DataFrame:
    table = run.table("scalars")
    if table.empty:
        return table
    rows = table[table["name"] == name]
    return rows[np.isfinite(rows["value"].astype(float))].sort_values("step")


def _warmup(run: Run) -> int:
    return int(run.config.search.warmup_epochs)


def warmup_mean(run: Run, name: str) -> float:
    """Mean of a scalar over the warm-up epochs (an area under its curve)."""
    rows = _scalar(run, name)
    rows = rows[rows["epoch"] < _warmup(run)] if not rows.empty else rows
    return float(rows["value"].mean()) if len(rows) else math.nan


def truth_of(run: Run):
    """The shipped ground truth of ``run``'s space (:func:`sharing_lab.truth.scoring.shipped_truth`), or None."""
    return _truth(run.config)


@functools.lru_cache(maxsize=256)
def _truth(config):
    return shipped_truth(config)


RESCORED = ("gt_kendall", "gt_spearman", "gt_top1_prob", "gt_top5_prob")


def final(run: Run, name: str) -> float:
    """The scalar's value at its last record; a ``gt_*`` measure of the whole space recomputed from the run's
    last ``space`` evaluation against the shipped ground truth (:func:`truth_of`) where the run has one."""
    truth = truth_of(run) if name in RESCORED else None
    if truth is not None and not run.table("space").empty:
        return float(rescore(run.table("space"), truth)[name].iloc[-1])
    rows = _scalar(run, name)
    return float(rows["value"].iloc[-1]) if len(rows) else math.nan


def search_correlation(run: Run, x: str, y: str) -> float:
    """Spearman ρ between two scalars over the search phase's records at common steps (NaN under 3 points)."""
    left, right = _scalar(run, x), _scalar(run, y)
    if left.empty or right.empty:
        return math.nan
    both = left.merge(right, on="step", suffixes=("_x", "_y"))
    both = both[both["epoch_x"] >= _warmup(run)]
    if len(both) < 3 or np.ptp(both["value_x"]) == 0 or np.ptp(both["value_y"]) == 0:
        return math.nan
    return float(stats.spearmanr(both["value_x"], both["value_y"]).statistic)


def warmup_ratio(run: Run, numerator: str, denominator: str) -> float:
    """Warm-up mean of numerator / denominator at the steps where both were recorded."""
    top, bottom = _scalar(run, numerator), _scalar(run, denominator)
    if top.empty or bottom.empty:
        return math.nan
    both = top.merge(bottom, on="step", suffixes=("_n", "_d"))
    both = both[(both["epoch_n"] < _warmup(run)) & (both["value_d"] > 0)]
    return float((both["value_n"] / both["value_d"]).mean()) if len(both) else math.nan


def transition_drop(run: Run) -> float:
    """Validation accuracy lost at the transition, in points: the last warm-up evaluation's mean accuracy minus
    the lowest of the search phase's."""
    rows = _scalar(run, "val_acc_mean")
    before, after = rows[rows["epoch"] < _warmup(run)], rows[rows["epoch"] >= _warmup(run)]
    if before.empty or after.empty:
        return math.nan
    return 100 * float(before["value"].iloc[-1] - after["value"].min())


def accuracy_lost(run: Run, name: str = "val_acc_mean") -> float:
    """Validation accuracy the search phase lost by its end, in points: its best evaluation minus its last."""
    rows = _scalar(run, name)
    after = rows[rows["epoch"] >= _warmup(run)]
    if after.empty:
        return math.nan
    return 100 * float(after["value"].max() - after["value"].iloc[-1])


def search_trend(run: Run, name: str) -> float:
    """How steadily a scalar fell over the search phase: Spearman ρ of its records against the reversed step
    (+1: it fell at every record). On a transitionary run whose Φ falls monotonically this is ρ(Φ, scalar); on
    an ordinal run, whose Φ never moves, it is the same scalar's drift over the same epochs (the control)."""
    rows = _scalar(run, name)
    rows = rows[rows["epoch"] >= _warmup(run)] if not rows.empty else rows
    if len(rows) < 3 or np.ptp(rows["value"]) == 0:
        return math.nan
    return float(stats.spearmanr(-rows["step"].to_numpy(), rows["value"]).statistic)


def decision_margin(run: Run) -> float:
    """How far the controller separates the candidates at its last record: per decision, the probability of the
    most likely candidate minus the second's, averaged over decisions."""
    probs = run.table("probs")
    if probs.empty:
        return math.nan
    last = probs[probs["step"] == probs["step"].max()]
    margins = [float(np.diff(np.sort(group["prob"].to_numpy())[-2:])[0])
               for _, group in last.groupby("layer") if len(group) >= 2]
    return float(np.mean(margins)) if margins else math.nan


def beam(run: Run, within_target: bool = False) -> pd.DataFrame:
    """The beam's architectures in the controller's order (most likely first) with ``truth``, their ground-truth
    test accuracy in points (the shipped table, else as recorded in ``gt_acc``; NaN without either) and ``macs``;
    ``within_target``: only those within the run's FLOPs target."""
    archs = run.table("archs")
    if archs.empty:
        return pd.DataFrame(columns=["widths", "macs", "truth"])
    rows = archs[archs["source"] == "beam"].sort_values("log_prob", ascending=False, kind="stable")
    truth = truth_of(run)
    if truth is not None and rows["widths"].isin(truth.table["widths"]).all():
        accuracy = rows["widths"].map(truth.accuracy).astype(float)
    elif "gt_acc" in rows:
        accuracy = pd.to_numeric(rows["gt_acc"], errors="coerce")
    else:
        accuracy = pd.Series(math.nan, index=rows.index)
    rows = rows.assign(truth=100 * accuracy)
    target = run.config.search.flops_target
    if within_target and target is not None:
        rows = rows[rows["macs"] <= target]
    return rows[["widths", "macs", "truth"]].reset_index(drop=True)


def top_n_truth(run: Run, n: int, within_target: bool = False) -> float:
    """Mean ground-truth test accuracy (points) of the beam's n most likely architectures (Figure 8's accumulated
    accuracy of the top-N), among those within the target when ``within_target``; NaN when there are fewer."""
    rows = beam(run, within_target)
    if len(rows) < n or rows["truth"].iloc[:n].isna().any():
        return math.nan
    return float(rows["truth"].iloc[:n].mean())


def top_n_curve(run: Run, within_target: bool = False) -> list[float]:
    """:func:`top_n_truth` at N = 1, 2, … up to the beam's size (Figure 8's curve), from one read of the beam."""
    truth = beam(run, within_target)["truth"]
    return [float(truth.iloc[:n].mean()) if not truth.iloc[:n].isna().any() else math.nan
            for n in range(1, len(truth) + 1)]


def beam_truth(run: Run) -> float:
    """Mean ground-truth test accuracy (points) of the whole beam (NaN without a ground truth)."""
    rows = beam(run)
    return float(rows["truth"].mean()) if len(rows) and rows["truth"].notna().all() else math.nan


def top_n_advantage_trend(run: Run, within_target: bool = False) -> float:
    """How much better the top-1 is than the whole beam, in points: the top-1's ground-truth accuracy minus the
    mean over the beam's N (Figure 8: an advantage that shrinks as N grows shows as a larger value here)."""
    curve = top_n_curve(run, within_target)
    return curve[0] - curve[-1] if curve else math.nan


def closest_to_target_truth(run: Run) -> float:
    """Ground-truth test accuracy (points) of Section 5.3's choice: the beam architecture closest to the FLOPs
    target (the more likely of equals); NaN without a target."""
    target = run.config.search.flops_target
    rows = beam(run)
    if target is None or rows.empty:
        return math.nan
    return float(rows.loc[(rows["macs"] - target).abs().idxmin(), "truth"])


def exported_within_target(run: Run) -> float:
    """1 when the exported architecture's MACs are within the run's FLOPs target, else 0 (NaN: no target or no
    export)."""
    target = run.config.search.flops_target
    macs = run.payload_summary().get("exported", {}).get("macs")
    if target is None or not isinstance(macs, int | float):
        return math.nan
    return float(macs <= target)


def wrong_argmax(run: Run) -> float:
    """1 when the run exported a wrong argmax: its regret (against the shipped ground truth, else as recorded)
    exceeds what the ground truth resolves (the mean standard error over its seeds; a regret of a few hundredths
    of a point is a tie, not a mistake), else 0; NaN without a ground truth."""
    truth = truth_of(run)
    if truth is None:
        return math.nan
    regret = final(run, "gt_regret")
    exported = run.payload_summary().get("exported", {}).get("widths")
    if exported is not None and exported in set(truth.table["widths"]):
        regret = truth.regret(exported)
    if not math.isfinite(regret):
        return math.nan
    return float(regret > 100 * truth.table["test_se"].mean())
