"""Figure 7: controller decision probabilities per layer for several transition rates τ (one panel per τ)."""

from __future__ import annotations

from matplotlib.figure import Figure

from .fig5 import probability_panel
from .fig6 import tau_title
from .runs import RunSet, tau_runs
from .style import new_figure, with_theme


@with_theme
def figure(runset: RunSet) -> Figure:
    groups = tau_runs(runset, "fig7")
    fig, axes = new_figure(len(groups), ncols=4)
    for ax, (tau, runs) in zip(axes, groups.items()):
        probability_panel(ax, runs, tau_title(tau, runs))
    top = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(0, min(1.0, top))
    return fig
