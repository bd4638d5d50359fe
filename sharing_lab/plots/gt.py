"""How close each search came to the ground truth, along the search: the supernet's ranking of the whole space
against the ground truth (``gt_kendall``, Kendall τ-b) and the controller's probability of the best ground-truth
architecture under the FLOPs target (``gt_top1_prob``), for O, I and T (:func:`~.runs.scheme_arms`: T at its
constant τ, and the Φ-scheduled T beside it when there are such runs; mean and 95% t-interval over seeds)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..truth.scoring import rescore, shipped_truth
from .common import draw_band, mean_interval, scalars, seeds_note, warmup_epochs, with_epoch_axis
from .runs import MissingRuns, RunSet, scheme_arms
from .style import mark_warmup, new_figure, ordered, scheme_color, scheme_label, with_theme

PANELS = (("gt_kendall", "Kendall τ-b, supernet vs ground truth", "ranking of the whole space"),
          ("gt_top1_prob", "p(best architecture), controller", "probability of the oracle"))


def rescored_scalars(search: RunSet, names: list[str]):
    """The ``gt_*`` scalars of every run, recomputed from its ``space`` table against the shipped ground truth
    (:func:`sharing_lab.truth.scoring.rescore`) where it has both, so that runs scored live against a smaller table
    are drawn against the same one; as recorded otherwise."""
    recorded = scalars(search, names)
    frames, replaced = [], set()
    for run, meta in zip(search.runs, search.meta.to_dict("records")):
        truth, space = shipped_truth(run.config), run.table("space")
        if truth is None or space.empty or not space["widths"].isin(truth.table["widths"]).all():
            continue
        long = rescore(space, truth).melt(id_vars=["step", "epoch"], value_vars=names, var_name="name")
        frames.append(long.assign(**meta))
        replaced.add(run.id)
    if not frames:
        return recorded
    fresh = with_epoch_axis(pd.concat(frames, ignore_index=True), search)
    return pd.concat([recorded[~recorded["id"].isin(replaced)], fresh], ignore_index=True)


@with_theme
def figure(runset: RunSet) -> Figure:
    search = runset.select(kind="search")
    rows = rescored_scalars(search, [name for name, _, _ in PANELS])
    families = scheme_arms(search, "gt")
    present = {family for family in families if not rows[rows["id"].isin(families[family].meta["id"])].empty}
    if not present:
        raise MissingRuns("gt needs searches on a space with a ground truth (gt_* scalars) for ordinal, "
                          f"independent or transitionary; found: {search.describe()}")
    fig, axes = new_figure(len(PANELS), ncols=2)
    for ax, (name, ylabel, title) in zip(axes, PANELS):
        for family in ordered(present):
            runs = families[family]
            part = rows[(rows["name"] == name) & rows["id"].isin(runs.meta["id"])]
            label = f"{scheme_label(family).split(' ')[0]} ({seeds_note(runs)})"
            draw_band(ax, mean_interval(part, "x"), "x", scheme_color(family), label,
                      clip=(-1.0, 1.0) if name == "gt_kendall" else (0.0, 1.0), marker="o", markersize=3)
        mark_warmup(ax, warmup_epochs(search))
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.legend(loc="best")
    axes[0].axhline(0.0, color="0.6", linewidth=0.8)
    axes[1].set_ylim(bottom=0)
    fig.suptitle("Searches scored against the ground truth of their space", fontsize=9)
    return fig
