"""Figure 3: Φ against gradient alignment (left) and against the coupled-gradient norm (right).

One point per run and probe step (network level: scalars ``cos_align`` and ``coupled_norm`` with Φ at the same
step), coloured by scheme: the overlap sweep gives fixed sharing levels, transitionary runs give snapshots
along their transition (shade: later snapshots darker).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .runs import MissingRuns, RunSet
from .style import PHI_LABEL, new_figure, ordered, scheme_color, scheme_label, with_theme

METRICS = (("cos_align", "mean gradient alignment cos(g, g̃)", "Φ vs gradient alignment"),
           ("coupled_norm", r"coupled-gradient norm $\|\cdot\|_F$", "Φ vs coupled gradient"))


def probe_points(runset: RunSet) -> pd.DataFrame:
    """One row per run and probe step: ``phi``, ``cos_align``, ``coupled_norm`` (NaN where not measured)."""
    table = runset.table("scalars")
    if table.empty:
        return pd.DataFrame(columns=["id", "scheme", "family", "model", "data", "step", "epoch", "phi", "cos_align",
                                     "coupled_norm"])
    wanted = table[table["name"].isin(["phi", "cos_align", "coupled_norm"])]
    wide = wanted.pivot_table(index=["id", "step"], columns="name", values="value", aggfunc="last").reset_index()
    for column in ("phi", "cos_align", "coupled_norm"):
        if column not in wide:
            wide[column] = np.nan
    layers = runset.table("layers")
    if not layers.empty:  # Φ at probe steps that have no per-epoch Φ scalar (probes every N steps)
        summed = layers.groupby(["id", "step"])["phi"].sum(min_count=1).rename("phi_layers").reset_index()
        wide = wide.merge(summed, on=["id", "step"], how="left")
        wide["phi"] = wide["phi"].fillna(wide["phi_layers"])
    wide = wide[wide[["cos_align", "coupled_norm"]].notna().any(axis=1) & (wide["phi"] > 0)]
    meta = runset.meta[["id", "scheme", "family", "epochs", "warmup_epochs", "model", "data"]]
    epochs = table.groupby(["id", "step"])["epoch"].max().reset_index()
    return wide.merge(meta, on="id").merge(epochs, on=["id", "step"], how="left")


@with_theme
def figure(runset: RunSet) -> Figure:
    points = probe_points(runset.select(kind="search"))
    if points.empty:
        raise MissingRuns("fig3 needs search runs with probe records (scalars cos_align / coupled_norm and Φ; "
                          f"probes.enabled = true); found: {runset.describe()}")
    if points[["model", "data"]].drop_duplicates().shape[0] > 1:  # Φ scales with the network: one at a time
        model, data = points.groupby(["model", "data"]).size().idxmax()
        points = points[(points["model"] == model) & (points["data"] == data)]
    fig, axes = new_figure(2)
    order = ordered(points["scheme"])
    for ax, (metric, ylabel, title) in zip(axes, METRICS):
        for scheme in order:
            rows = points[(points["scheme"] == scheme) & points[metric].notna()]
            if rows.empty:
                continue
            color = scheme_color(scheme)
            if scheme.startswith("transitionary"):  # snapshots: lighter early in a run, darker late
                shade = ((rows["epoch"] + 1) / rows["epochs"]).clip(0, 1).to_numpy(dtype=float)
                colors = [_blend(color, 0.35 + 0.65 * s) for s in shade]
            else:
                colors = [color] * len(rows)
            ax.scatter(rows["phi"], rows[metric], c=colors, s=16, alpha=0.85, edgecolors="white", linewidths=0.3,
                       label=scheme_label(scheme))
        ax.set_xscale("log")
        ax.set(xlabel=PHI_LABEL, ylabel=ylabel, title=title)
    entries: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = [scheme_label(s) for s in order if scheme_label(s) in entries]
    legend = fig.legend([entries[label] for label in labels], labels, loc="outside right center",
                        title="scheme\n(APS-T: lighter =\nearlier snapshot)", title_fontsize=7)
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        scheme = next((s for s in order if scheme_label(s) == text.get_text()), None)
        if scheme is not None:  # snapshot colours vary; the legend shows the scheme's own colour
            handle.set_facecolor(scheme_color(scheme))
    model, data = points["model"].iloc[0], points["data"].iloc[0]
    fig.suptitle(f"Sharing level against gradient coupling, {model} on {data} (one point per run and probe step)",
                 fontsize=9)
    return fig


def _blend(color, weight: float):
    """``color`` faded towards white (weight 1: the colour itself)."""
    return tuple(1.0 - weight * (1.0 - c) for c in color[:3])
