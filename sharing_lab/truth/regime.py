"""Whether a ground truth lies in the paper's regime (issue 24; paper Section 4, Figure 5): close top candidates
that a table resolves. Figure 5's argument is that ordinal sharing cannot tell the best candidate of a layer from
the second best *because* their accuracies are close; a space whose candidates differ by whole points cannot
test it, and one whose top gaps lie below the table's seed noise cannot score it.

Measured on the table's rows (one per architecture and seed), with differences *paired* over seeds (the same
seed trains every architecture of a population on the same batches and is tested on the same images):

- the **resolution**: the standard error of the paired difference between the two best architectures;
- per decision, the **top-two gap**: the best architecture minus the best one that differs from it in that
  decision alone (the decision's second-best candidate, the others at their best), with its paired standard error;
- under a FLOPs target (default half of the widest architecture's MACs), the **within-target spread**: the best
  within the target minus the median within it, and whether the best is simply the one with the most MACs.

The requirements (issue 24): every top-two gap at most 2 points and at least 3× the resolution; the resolution at
most 0.25 points; the within-target spread at least 5× the resolution; the best within the target not the
largest.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MAX_GAP, MIN_GAP_RATIO, MAX_RESOLUTION, MIN_SPREAD_RATIO = 2.0, 3.0, 0.25, 5.0  # points and ratios


def _paired(by_seed: pd.DataFrame, a: str, b: str) -> tuple[float, float, int]:
    """Mean and standard error (points) of a − b over the seeds both have."""
    both = by_seed[[a, b]].dropna()
    diff = (both[a] - both[b]).to_numpy() * 100
    if len(diff) < 2:
        return float(diff.mean()) if len(diff) else math.nan, math.nan, len(diff)
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))), len(diff)


def regime(rows: pd.DataFrame, target: float | None = None) -> dict:
    """The figures above for a ground-truth table's ``rows`` (``widths``, ``seed``, ``macs``, ``test_acc``);
    ``target`` in MACs (default: half the widest architecture's). Accuracies and gaps in points."""
    by_seed = rows.pivot_table(index="seed", columns="widths", values="test_acc")
    means = by_seed.mean().sort_values(ascending=False)
    macs = rows.groupby("widths")["macs"].first()
    best, second = means.index[0], means.index[1]
    gap, resolution, seeds = _paired(by_seed, best, second)
    parts = [int(w) for w in best.split(",")]
    decisions = []
    for index in range(len(parts)):
        rivals = [w for w in means.index if _differs_only_at(w, parts, index)]
        if not rivals:
            continue
        rival = max(rivals, key=lambda w: means[w])
        mean, se, _ = _paired(by_seed, best, rival)
        decisions.append({"decision": index, "best_width": parts[index], "second_width": int(rival.split(",")[index]),
                          "second": rival, "gap": mean, "se": se,
                          "gap_ratio": mean / resolution if resolution > 0 else math.inf})
    widest = int(macs.max())
    target = widest / 2 if target is None else target
    within = means[[w for w in means.index if macs[w] <= target]]
    largest = macs[within.index].idxmax() if len(within) else None
    spread = float((within.iloc[0] - within.median()) * 100) if len(within) else math.nan
    figures = {"architectures": len(means), "seeds": seeds, "best": best, "best_acc": float(means.iloc[0] * 100),
               "second": second, "best_minus_second": gap, "resolution": resolution, "decisions": decisions,
               "target": target, "within_target": len(within),
               "within_best": within.index[0] if len(within) else None, "within_largest": largest,
               "within_spread": spread,
               "spread_ratio": spread / resolution if resolution > 0 else math.inf}
    figures["requirements"] = requirements(figures)
    return figures


def _differs_only_at(widths: str, parts: list[int], index: int) -> bool:
    other = [int(w) for w in widths.split(",")]
    return other[index] != parts[index] and all(a == b for i, (a, b) in enumerate(zip(other, parts)) if i != index)


def requirements(figures: dict) -> dict[str, bool]:
    """Issue 24's requirements, each True when met."""
    gaps = [d["gap"] for d in figures["decisions"]]
    ratios = [d["gap_ratio"] for d in figures["decisions"]]
    return {"top gaps <= 2 points": bool(gaps) and max(gaps) <= MAX_GAP,
            "top gaps >= 3x resolution": bool(ratios) and min(ratios) >= MIN_GAP_RATIO,
            "resolution <= 0.25 points": figures["resolution"] <= MAX_RESOLUTION,
            "within-target spread >= 5x resolution": figures["spread_ratio"] >= MIN_SPREAD_RATIO,
            "best within target is not the largest": figures["within_best"] != figures["within_largest"]}
