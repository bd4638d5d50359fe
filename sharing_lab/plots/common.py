"""Shared data shaping for the figures: epoch axes, per-seed aggregation with t-intervals, drawn bands."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from scipy import stats

from .runs import RunSet
from .style import PHI_LABEL, mark_warmup, merged_legend, ordered, scheme_color, scheme_label

LEVEL = 0.95
BOUNDS = {"cos_align": (-1.0, 1.0), "coupled_norm": (0.0, float("inf"))}


def with_epoch_axis(frame: pd.DataFrame, runset: RunSet) -> pd.DataFrame:
    """Add ``x``: epochs completed at the record's step (step / the run's recorded steps per epoch;
    :class:`~.runs.MissingRuns` for a run that did not record them)."""
    if frame.empty:
        return frame.assign(x=pd.Series(dtype=float))
    frame = frame.copy()
    frame["x"] = np.nan
    for run_id in frame["id"].unique():
        per_epoch = runset.run(int(run_id)).steps_per_epoch()
        mask = frame["id"] == run_id
        frame.loc[mask, "x"] = (frame.loc[mask, "step"].astype(float) / per_epoch).round(6)
    return frame


def scalars(runset: RunSet, names: Sequence[str]) -> pd.DataFrame:
    """Scalar rows with the given names (finite values only), with run metadata and the epoch axis ``x``."""
    table = runset.table("scalars")
    if table.empty:
        return with_epoch_axis(table, runset)
    rows = table[table["name"].isin(list(names))]
    rows = rows[np.isfinite(rows["value"].astype(float))]
    return with_epoch_axis(rows, runset)


def mean_interval(frame: pd.DataFrame, by: str | list[str], value: str = "value", level: float = LEVEL) -> pd.DataFrame:
    """Mean, sample count and two-sided t-interval of ``value`` per group (lo = hi = mean for one sample)."""
    keys = [by] if isinstance(by, str) else list(by)
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "mean", "n", "std", "lo", "hi"])
    grouped = frame.groupby(keys)[value]
    out = grouped.agg(mean="mean", n="count", std="std").reset_index()
    out["std"] = out["std"].fillna(0.0)
    half = np.zeros(len(out))
    several = out["n"] > 1
    if several.any():
        t = stats.t.ppf(0.5 + level / 2, out.loc[several, "n"] - 1)
        half[several.to_numpy()] = t * out.loc[several, "std"] / np.sqrt(out.loc[several, "n"])
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out


def draw_band(ax: Axes, summary: pd.DataFrame, x: str, color, label: str, scale: float = 1.0,
              clip: tuple[float, float] | None = None, **line) -> None:
    """Mean line, with the interval shaded where it rests on several samples (clipped to the range ``clip``
    a quantity can take: a t-interval over two seeds is wide)."""
    if summary.empty:
        return
    summary = summary.sort_values(x)
    ax.plot(summary[x], summary["mean"] * scale, color=color, label=label, **line)
    if (summary["n"] > 1).any():
        lo, hi = summary["lo"] * scale, summary["hi"] * scale
        if clip is not None:
            lo, hi = lo.clip(*clip), hi.clip(*clip)
        ax.fill_between(summary[x], lo, hi, color=color, alpha=0.2, linewidth=0)


def seeds_note(runs: RunSet) -> str:
    n = len(runs)
    return f"{n} seed" if n == 1 else f"{n} seeds, {int(LEVEL * 100)}% CI"


def warmup_epochs(runs: RunSet) -> list[float]:
    return sorted(set(runs.meta["warmup_epochs"].astype(float)))


def trend_panel(ax: Axes, groups: dict[str, RunSet], metric: str, ylabel: str, title: str) -> Axes:
    """``metric`` (a network-level probe scalar) per scheme (in :func:`~.style.scheme_order`) along the search,
    mean with interval over seeds, and Φ of the transitionary runs on a twin log axis; the warm-up end marked.
    Returns the twin axis."""
    for family in ordered(groups):
        rows = scalars(groups[family], [metric])
        summary = mean_interval(rows, "x")
        draw_band(ax, summary, "x", scheme_color(family), scheme_label(family).split(" ")[0], marker="o",
                  markersize=3, clip=BOUNDS.get(metric))
    all_runs = RunSet([run for runs in groups.values() for run in runs])
    mark_warmup(ax, warmup_epochs(all_runs))
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    twin = ax.twinx()
    twin.grid(False)
    transitionary = groups.get("transitionary")
    if transitionary:
        phi = mean_interval(scalars(transitionary, ["phi"]), "x")
        phi = phi[phi["mean"] > 0]
        draw_band(twin, phi, "x", "0.15", "Φ of APS-T (right)", linestyle=":", linewidth=1.5)
        if not phi.empty:
            twin.set_yscale("log")
    if twin.has_data():
        twin.set_ylabel(f"{PHI_LABEL} of APS-T")
    else:
        twin.set_yticks([])
        twin.set_ylabel("Φ of APS-T: no records", color="0.5")
    merged_legend(ax, twin, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3)
    return twin


def final_value(runs: RunSet, name: str) -> float:
    """Mean over runs of the last recorded scalar ``name`` (NaN if none)."""
    rows = scalars(runs, [name])
    if rows.empty:
        return math.nan
    return float(rows.sort_values("step").groupby("id")["value"].last().mean())


def share_y(axes: Sequence[Axes]) -> None:
    """One y range over panels that compare at a glance."""
    limits = [ax.get_ylim() for ax in axes if ax.has_data()]
    if limits:
        low, high = min(lo for lo, _ in limits), max(hi for _, hi in limits)
        for ax in axes:
            ax.set_ylim(low, high)


def retrained(runset: RunSet) -> pd.DataFrame:
    """Architectures retrained from scratch (table ``retrain``), one per run and widths (the latest), with the
    supernet's view of the same architecture from the run's beam rows in ``archs`` (``beam_acc``, ``beam_rank``)
    and ``order``: the beam rank (else the row's own rank), ties broken by log-likelihood (likeliest first)."""
    rows = runset.table("retrain")
    columns = [*rows.columns, "beam_acc", "beam_rank", "beam_log_prob", "order"]
    if rows.empty:
        return pd.DataFrame(columns=list(dict.fromkeys(columns)))
    rows = rows.drop_duplicates(["id", "widths"], keep="last")
    archs = runset.table("archs")
    beams = archs[archs["source"] == "beam"] if not archs.empty else archs
    if "rank" not in beams:
        beams = beams.assign(rank=np.nan)
    beams = beams.drop_duplicates(["id", "widths"], keep="last")[["id", "widths", "acc", "rank", "log_prob"]]
    beams = beams.rename(columns={"acc": "beam_acc", "rank": "beam_rank", "log_prob": "beam_log_prob"})
    beams = beams.astype({"id": rows["id"].dtype, "beam_acc": float, "beam_rank": float, "beam_log_prob": float})
    rows = rows.merge(beams, on=["id", "widths"], how="left")
    order_rank = pd.to_numeric(rows["beam_rank"], errors="coerce").fillna(pd.to_numeric(rows["rank"],
                                                                                         errors="coerce"))
    likelihood = pd.to_numeric(rows["log_prob"], errors="coerce").fillna(rows["beam_log_prob"])
    rows = rows.assign(order_rank=order_rank, order_likelihood=-likelihood.astype(float))
    rows = rows.sort_values(["id", "order_rank", "order_likelihood"], na_position="last")
    rows["order"] = rows.groupby("id").cumcount()
    return rows.drop(columns=["order_rank", "order_likelihood"]).reset_index(drop=True)


def accuracy_column(rows: pd.DataFrame) -> tuple[str, str]:
    """Test accuracy where every row has it, else validation accuracy: (column of the ``retrain`` table, axis
    label)."""
    if not rows.empty and rows["test_acc"].notna().all():
        return "test_acc", "test accuracy (%)"
    return "val_acc", "validation accuracy (%)"
