"""Every search on a space with a ground truth is scored against it, live (DESIGN §8; paper Section 5.2).

At each whole-space evaluation the supernet's accuracy of *every* architecture (validation split, BN as for any
evaluated architecture) is ranked against the ground truth's mean test accuracy (Kendall τ-b and Spearman ρ from
``scipy.stats``), and the controller's exact probability of every architecture gives the mass on the 1 and 5 best
ground-truth architectures under the FLOPs target. At the end the exported and the beam's architectures get their
ground-truth rank, accuracy and regret (best ground-truth test accuracy within the target minus theirs, in
points).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import Config
from ..space.search_space import SearchSpace
from . import table as gt


@dataclass(frozen=True)
class Truth:
    """A ground truth summarised per architecture (mean over seeds), and its oracle under a FLOPs target."""

    space: gt.TruthSpace
    table: pd.DataFrame  # groundtruth.summarise(): widths, macs, test_acc, test_se, val_acc, rank, …
    target: float | None

    @classmethod
    def load(cls, space: gt.TruthSpace, target: float | None, data_dir: str | None = None) -> Truth:
        return cls(space, gt.summarise(gt.groundtruth(space, data_dir)), target)

    def feasible(self) -> pd.DataFrame:
        """The architectures within the FLOPs target, best first (all of them without a target)."""
        rows = self.table if self.target is None else self.table[self.table["macs"] <= self.target]
        return rows.sort_values(["test_acc", "widths"], ascending=[False, True])

    def best(self, n: int) -> list[str]:
        return list(self.feasible()["widths"].head(n))

    def accuracy(self, widths: str) -> float:
        return float(self.table.set_index("widths").loc[widths, "test_acc"])

    def rank(self, widths: str) -> int:
        """1 = the best architecture of the whole space by mean test accuracy."""
        return int(self.table.set_index("widths").loc[widths, "rank"])

    def regret(self, widths: str) -> float:
        """Best ground-truth test accuracy within the target minus that of ``widths``, in points."""
        return 100.0 * (float(self.feasible()["test_acc"].iloc[0]) - self.accuracy(widths))

    def covers(self, space: SearchSpace) -> bool:
        """Whether the table has every architecture of ``space``."""
        names = set(self.table["widths"])
        return all(",".join(map(str, space.widths_of(arch))) in names for arch in space.enumerate())


def load_truth(config: Config, space: SearchSpace) -> Truth | None:
    """The ground truth of a search's space, if the package has a table for it that covers the space (else
    None: the gt_* measures are then absent)."""
    truth_space = gt.space_for(config)
    if truth_space is None or not gt.table_present(truth_space, config.data.dir):
        return None
    truth = Truth.load(truth_space, config.search.flops_target, config.data.dir)
    return truth if truth.covers(space) else None


def rank_correlations(predicted: Sequence[float], truth: Sequence[float]) -> tuple[float, float]:
    """Kendall τ-b and Spearman ρ between two scorings of the same architectures (NaN if one is constant)."""
    from scipy import stats  # 0.5 s to import: paid by the searches that score a whole space, not by every start

    predicted, truth = np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float)
    if np.ptp(predicted) == 0 or np.ptp(truth) == 0:
        return math.nan, math.nan
    return float(stats.kendalltau(predicted, truth).statistic), float(stats.spearmanr(predicted, truth).statistic)


def scored_architectures(space: SearchSpace, truth: Truth, limit: int) -> list[tuple[int, ...]]:
    """The architectures a whole-space evaluation scores: every one, or in a space of more than ``limit`` a fixed
    sample: the ground truth's 5 best within the target (so the ``gt_top*_prob`` masses stay exact) and
    ``limit`` − 5 others drawn uniformly with a fixed seed, the same for every run of the space, so that runs are
    ranked on the same architectures."""
    if space.size <= limit:
        return list(space.enumerate())
    best = [space.arch_of([int(w) for w in widths.split(",")]) for widths in truth.best(5)]
    radices = space.num_candidates
    chosen = set(best)
    for index in np.random.default_rng(0).permutation(space.size):
        if len(chosen) >= limit:
            break
        arch, rest = [], int(index)
        for radix in reversed(radices):
            rest, digit = divmod(rest, radix)
            arch.append(digit)
        chosen.add(tuple(reversed(arch)))
    return sorted(chosen)


def score_space(space: SearchSpace, truth: Truth, log_probs: Mapping[tuple[int, ...], float],
                accuracy_of: Callable[[tuple[int, ...]], float],
                archs: Sequence[tuple[int, ...]] | None = None) -> tuple[list[dict], dict[str, float]]:
    """Rows of the ``space`` table (widths, supernet_acc, prob; one per scored architecture) and the ``gt_*``
    scalars of one whole-space evaluation; ``log_probs`` are the controller's exact log-probabilities of every
    architecture (:func:`sharing_lab.search.controller.exact_log_probs`), ``accuracy_of(arch)`` the supernet's
    validation accuracy, ``archs`` the architectures scored (default every one; :func:`scored_architectures`)."""
    rows, predicted, actual = [], [], []
    for arch in space.enumerate() if archs is None else archs:
        widths = ",".join(map(str, space.widths_of(arch)))
        acc = accuracy_of(arch)
        rows.append({"widths": widths, "supernet_acc": acc, "prob": math.exp(log_probs[arch])})
        predicted.append(acc)
        actual.append(truth.accuracy(widths))
    kendall, spearman = rank_correlations(predicted, actual)
    prob = {row["widths"]: row["prob"] for row in rows}
    top1, top5 = truth.best(1), truth.best(5)
    scalars = {"gt_kendall": kendall, "gt_spearman": spearman, "gt_top1_prob": sum(prob[w] for w in top1),
               "gt_top5_prob": sum(prob[w] for w in top5)}
    return rows, scalars


def rescore(space_rows: pd.DataFrame, truth: Truth) -> pd.DataFrame:
    """The ``gt_*`` scalars of every whole-space evaluation of a run's ``space`` table, recomputed against
    ``truth`` (the shipped table now, which may have more seeds than the one the run was scored with): one row
    per evaluation (``step``, ``epoch``, ``gt_kendall``, ``gt_spearman``, ``gt_top1_prob``, ``gt_top5_prob``)."""
    top1, top5 = set(truth.best(1)), set(truth.best(5))
    accuracy = truth.table.set_index("widths")["test_acc"]
    out = []
    for (step, epoch), rows in space_rows.groupby(["step", "epoch"]):
        kendall, spearman = rank_correlations(rows["supernet_acc"], rows["widths"].map(accuracy))
        out.append({"step": int(step), "epoch": int(epoch), "gt_kendall": kendall, "gt_spearman": spearman,
                    "gt_top1_prob": float(rows.loc[rows["widths"].isin(top1), "prob"].sum()),
                    "gt_top5_prob": float(rows.loc[rows["widths"].isin(top5), "prob"].sum())})
    return pd.DataFrame(out, columns=["step", "epoch", "gt_kendall", "gt_spearman", "gt_top1_prob", "gt_top5_prob"])


@functools.cache
def _shipped(space_name: str, target: float | None, data_dir: str | None) -> Truth:
    return Truth.load(gt.SPACES[space_name], target, data_dir)


def shipped_truth(config: Config) -> Truth | None:
    """The shipped ground truth of ``config``'s space under its FLOPs target, or None (cached). Claims and figures
    score finished runs against it, not against the table a run was scored with live, so runs scored before a
    table grew (more seeds) are compared on the same ground truth."""
    space = gt.space_for(config)
    if space is None or not gt.table_present(space, config.data.dir):
        return None
    return _shipped(space.name, config.search.flops_target, config.data.dir if space.source else None)
