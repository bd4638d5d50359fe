"""What the claims measure on one run, from its records (:mod:`sharing_lab.analysis.claims` turns the values of the runs
of an arm into a statistic over seeds): warm-up means, final values, correlations along the search, accuracy
drops, and the ground-truth measures, scored against the shipped table (:func:`truth_of`)."""

from __future__ import annotations

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
    return shipped_truth(run.config)


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


def beam_truth(run: Run) -> float:
    """Mean ground-truth test accuracy (points) of the beam's top-N: from the shipped ground truth
    (:func:`truth_of`), else as recorded (``gt_acc``)."""
    archs = run.table("archs")
    if archs.empty:
        return math.nan
    beam, truth = archs[archs["source"] == "beam"], truth_of(run)
    if truth is not None and beam["widths"].isin(truth.table["widths"]).all():
        return 100 * float(beam["widths"].map(truth.accuracy).mean()) if len(beam) else math.nan
    if "gt_acc" not in archs:
        return math.nan
    beam = beam[np.isfinite(pd.to_numeric(beam["gt_acc"], errors="coerce"))]
    return 100 * float(pd.to_numeric(beam["gt_acc"]).mean()) if len(beam) else math.nan


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
