"""Figure 5: controller decision probabilities per layer over the last epochs, and coupled-gradient norm.

Panels 1–3 (one per scheme, in :func:`~.style.scheme_order`: I, O, T): for each decision (layer) and candidate
width, the probability the controller gives it, averaged over the records of the last quarter of the epochs
(after warm-up) and over seeds, with a 95% t-interval (lines join the layers, as in the paper). Panel 4: the
coupled-gradient norm of O, I, T along the search, Φ of T on a twin log axis.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .common import draw_band, mean_interval, seeds_note, trend_panel
from .runs import O_I_T, RunSet, comparison_runs
from .style import empty_panel, new_figure, ordered, scheme_label, sequence_colors, with_theme

LAST_FRACTION = 0.25


def last_epochs(runs: RunSet) -> pd.DataFrame:
    """Rows of ``probs`` from the last quarter of each run's epochs, after warm-up (the last recorded quarter of
    the search phase for a run that has not finished; the warm-up records only if there is no search phase)."""
    probs = runs.table("probs")
    if probs.empty:
        return probs
    frames = []
    for run_id, rows in probs.groupby("id"):
        meta = runs.meta.set_index("id").loc[run_id]
        search = rows[rows["epoch"] >= meta["warmup_epochs"]]
        pool = search if not search.empty else rows
        last = int(pool["epoch"].max())
        start = max(int(pool["epoch"].min()), last + 1 - math.ceil(LAST_FRACTION * int(meta["epochs"])))
        frames.append(pool[pool["epoch"] >= start])
    return pd.concat(frames, ignore_index=True)


def probability_panel(ax: Axes, runs: RunSet, title: str) -> None:
    """Mean decision probability (95% interval) per layer, one line per candidate width."""
    rows = last_epochs(runs)
    if rows.empty:
        empty_panel(ax, "no probability records")
        ax.set(title=title, xlabel="layer (decision index)", ylabel="decision probability")
        return
    summary = mean_interval(rows, ["choice", "layer"], value="prob")
    widths = rows.groupby("choice")["width"].agg(lambda w: sorted(set(w)))
    colors = sequence_colors(len(widths), "viridis")
    for color, (choice, part) in zip(colors, summary.groupby("choice")):
        values = widths[choice]
        label = f"width {values[0]}" if len(values) == 1 else f"candidate {choice + 1}"
        draw_band(ax, part, "layer", color, label, marker="o", markersize=3.5, clip=(0.0, 1.0))
    epochs = f"epochs {int(rows['epoch'].min()) + 1}–{int(rows['epoch'].max()) + 1}"
    ax.set(xlabel="layer (decision index)", ylabel="decision probability",
           title=f"{title}\n{epochs}, {seeds_note(runs)}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", ncols=2 if len(widths) > 4 else 1)


@with_theme
def figure(runset: RunSet) -> Figure:
    groups = comparison_runs(runset, "fig5", O_I_T)
    fig, axes = new_figure(4)
    for ax, family in zip(axes, ordered(O_I_T)):
        label = scheme_label(family).split(" ")[0]
        if family == "transitionary":
            label += " τ=" + "/".join(f"{t:g}" for t in sorted(set(groups[family].meta["tau"])))
        probability_panel(ax, groups[family], label)
    top = max(ax.get_ylim()[1] for ax in axes[:3])
    for ax in axes[:3]:
        ax.set_ylim(0, min(1.0, top))
    trend_panel(axes[3], groups, "coupled_norm", r"coupled-gradient norm $\|\cdot\|_F$", "Coupled gradient and Φ")
    return fig
