"""Figure 6: accuracy curves of APS-T for several transition rates τ (one panel per τ, largest first)."""

from __future__ import annotations

from matplotlib.figure import Figure

from .common import final_value, share_y
from .fig4 import accuracy_panel
from .runs import RunSet, tau_runs
from .style import new_figure, with_theme


@with_theme
def figure(runset: RunSet) -> Figure:
    groups = tau_runs(runset, "fig6")
    fig, axes = new_figure(len(groups), ncols=4)
    for index, (ax, (tau, runs)) in enumerate(zip(axes, groups.items())):
        accuracy_panel(ax, runs, tau_title(tau, runs), legend=index == 0)
    share_y(axes)
    return fig


def tau_title(tau: float, runs: RunSet) -> str:
    phi = final_value(runs, "phi")
    return f"APS-T τ={tau:g}" + (f" (final Φ={phi:.3g})" if phi == phi else "")
