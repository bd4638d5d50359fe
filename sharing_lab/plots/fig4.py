"""Figure 4: accuracy curves of APS-O, APS-I and APS-T, and gradient alignment with Φ of APS-T.

Panels 1–3 (one per scheme, in :func:`~.style.scheme_order`: I, O, T): training accuracy per epoch, mean and
max validation accuracy of the architectures sampled at each evaluation; mean over seeds with a 95% t-interval
where several seeds exist; warm-up end marked. Panel 4: mean gradient alignment cos(g, g̃) of O, I, T along the
search, Φ of T on a twin log axis.
"""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .common import draw_band, mean_interval, scalars, seeds_note, share_y, trend_panel, warmup_epochs
from .runs import O_I_T, RunSet, comparison_runs
from .style import METRIC_COLORS, empty_panel, mark_warmup, new_figure, ordered, scheme_label, with_theme

CURVES = (("train_acc", "training", {"linewidth": 1.2}),
          ("val_acc_mean", "val mean (sampled)", {"marker": "o", "markersize": 3.5, "linestyle": "--"}),
          ("val_acc_max", "val max (sampled)", {"marker": "^", "markersize": 3.5, "linestyle": "-."}))


def accuracy_panel(ax: Axes, runs: RunSet, title: str, legend: bool = True) -> None:
    """Training and sampled-architecture validation accuracy (%) of ``runs`` (seeds of one configuration)."""
    rows = scalars(runs, [name for name, _, _ in CURVES])
    if rows.empty:
        empty_panel(ax, "no accuracy records")
        ax.set_xlim(0, max(runs.meta["epochs"], default=1))
    for name, label, line in CURVES:
        summary = mean_interval(rows[rows["name"] == name], "x")
        draw_band(ax, summary, "x", METRIC_COLORS[name], label, scale=100.0, clip=(0.0, 100.0), **line)
    mark_warmup(ax, warmup_epochs(runs))
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title}\n{seeds_note(runs)}")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left")


@with_theme
def figure(runset: RunSet) -> Figure:
    groups = comparison_runs(runset, "fig4", O_I_T)
    fig, axes = new_figure(4)
    for index, (ax, family) in enumerate(zip(axes, ordered(O_I_T))):
        accuracy_panel(ax, groups[family], _title(family, groups[family]), legend=index == 0)
    share_y(axes[:3])
    trend_panel(axes[3], groups, "cos_align", "mean gradient alignment cos(g, g̃)",
                "Gradient alignment and Φ")
    return fig


def _title(family: str, runs: RunSet) -> str:
    label = scheme_label(family).split(" ")[0]
    if family == "transitionary":
        taus = sorted(set(runs.meta["tau"]))
        label += " τ=" + "/".join(f"{t:g}" for t in taus)
    return label
