"""Figure 8: accuracy of the top-N likely architectures, for O, I, T.

On a space with a ground truth the measure is the ground-truth test accuracy of the beam's top-N (the mean over
the shipped table's seeds of training each from scratch; ``gt_acc`` in ``archs`` where the table is absent);
elsewhere the architectures retrained from scratch (table ``retrain``). Either way they are ordered by their
beam rank (likeliest first) and for N = 1 … the figure shows the mean ± standard deviation (over the N models,
ddof 0, pooled over seeds) of the first N accuracies. Left: searches without a FLOPs target; right: with one.
Schemes in :func:`~.style.scheme_order`.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..truth.scoring import shipped_truth
from .common import accuracy_column, retrained, share_y
from .runs import O_I_T, SETTING, MissingRuns, RunSet, largest, most_common_tau
from .style import empty_panel, new_figure, ordered, scheme_color, scheme_label, with_theme


def top_n(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and std of the accuracies of the first N retrained architectures, N = 1 … (pooled over runs)."""
    out = []
    for n in range(1, int(rows["order"].max()) + 2 if not rows.empty else 1):
        values = rows.loc[rows["order"] < n, column].dropna().to_numpy(dtype=float)
        if values.size:
            out.append({"n": n, "mean": values.mean(), "std": values.std(), "count": values.size})
    return pd.DataFrame(out, columns=["n", "mean", "std", "count"])


def _panel(ax: Axes, rows: pd.DataFrame, column: str, ylabel: str, title: str) -> None:
    if rows.empty:
        empty_panel(ax, "no scored or retrained architectures\nfrom these searches")
    present = ordered(family for family in O_I_T if (rows["family"] == family).any())
    for index, family in enumerate(present):
        part = rows[rows["family"] == family]
        curve = top_n(part, column)
        runs = part["id"].nunique()
        label = scheme_label(family).split(" ")[0] + (f" ({runs} seeds)" if runs > 1 else "")
        dodge = 0.09 * (index - (len(present) - 1) / 2)  # side by side so that the bars stay readable
        n, mean, std = (curve[c].to_numpy(dtype=float) for c in ("n", "mean", "std"))
        ax.errorbar(n + dodge, mean * 100, yerr=std * 100, color=scheme_color(family),
                    marker="o", markersize=3.5, capsize=2.5, linewidth=1.3, elinewidth=1, label=label)
    ax.set(xlabel="N (top-N likeliest architectures)", ylabel=f"{ylabel}, mean ± std", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def _select(rows: pd.DataFrame, runset: RunSet) -> pd.DataFrame:
    """One setting (the one with the most retrained rows); per panel one FLOPs target (the most common) and one
    τ for the transitionary runs (the most common), so that pooled seeds share a configuration."""
    if rows.empty:
        return rows
    setting = rows.groupby(list(SETTING)).size().idxmax()
    rows = rows[(rows[list(SETTING)] == list(setting)).all(axis=1)]
    ids = set(rows["id"])
    pool = runset.select(predicate=lambda run: run.id in ids)
    free = pool.select(flops_target=None)
    constrained = pool.select(predicate=lambda run: run.config.search.flops_target is not None)
    keep: set[int] = set()
    for part in (free, largest(constrained.group_by("flops_target")) if constrained else constrained):
        for family in O_I_T:
            runs = part.select(family=family)
            if runs:
                keep |= set((most_common_tau(runs) if family == "transitionary" else runs).meta["id"])
    return rows[rows["id"].isin(keep)]


def ground_truth_rows(runset: RunSet) -> pd.DataFrame:
    """The beam's top-N of every search with a ground truth: ``gt_acc`` (as ``test_acc``) and ``order`` (the beam
    rank), with the runs' metadata; empty when no search has a ground truth."""
    archs = runset.table("archs")
    if archs.empty or "gt_acc" not in archs:
        return pd.DataFrame()
    rows = archs[(archs["source"] == "beam")].copy()
    rows["test_acc"] = pd.to_numeric(rows["gt_acc"], errors="coerce")
    for run in runset:  # against the shipped table, as the claims: runs scored live against a smaller one agree
        truth, mine = shipped_truth(run.config), rows["id"] == run.id
        if truth is not None and rows.loc[mine, "widths"].isin(truth.table["widths"]).all():
            rows.loc[mine, "test_acc"] = rows.loc[mine, "widths"].map(truth.accuracy).astype(float)
    rows = rows[rows["test_acc"].notna()].drop_duplicates(["id", "widths"], keep="last")
    rows["order"] = pd.to_numeric(rows["rank"], errors="coerce")
    return rows.sort_values(["id", "order"]).reset_index(drop=True)


@with_theme
def figure(runset: RunSet) -> Figure:
    search = runset.select(kind="search")
    truth = ground_truth_rows(search)
    rows = _select(truth if not truth.empty else retrained(search), search)
    rows = rows[rows["family"].isin(O_I_T)]
    free, constrained = rows[rows["flops_target"].isna()], rows[rows["flops_target"].notna()]
    complete = [set(part["family"]) >= set(O_I_T) for part in (free, constrained)]
    if not any(complete):
        found = "; ".join(f"{label}: {', '.join(sorted(set(part['family']))) or 'none'}"
                          for label, part in (("without FLOPs target", free), ("with FLOPs target", constrained)))
        raise MissingRuns("fig8 needs the beam's top-N scored against a ground truth, or retrained top-N "
                          "architectures (sharing-lab retrain RUN_DIR --top N), of search runs with schemes "
                          f"{', '.join(O_I_T)}, without or with a FLOPs target; found {found}")
    column, ylabel = ("test_acc", "ground-truth test accuracy (%)") if not truth.empty else accuracy_column(rows)
    fig, axes = new_figure(2)
    _panel(axes[0], free, column, ylabel, "Top-N models, no FLOPs target")
    targets = sorted(set(constrained["flops_target"]))
    label = ", ".join(f"{t / 1e6:.3g}M" for t in targets) + " MACs" if targets else "set"
    _panel(axes[1], constrained, column, ylabel, f"Top-N models, FLOPs target {label}")
    share_y([ax for ax in axes if ax.has_data()])
    return fig
