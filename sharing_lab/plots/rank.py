"""Ranking quality: does the supernet rank architectures as training them from scratch does?

For the architectures retrained from scratch (``archs`` source=retrain) whose supernet accuracy is known (the
beam row of the same run with the same widths), Kendall τ-b and Spearman ρ between the supernet's accuracy and
the retrained accuracy, per scheme (pooled over that scheme's runs), with 95% percentile-bootstrap intervals
(resampling architectures, seeded). One scatter panel per scheme, n stated.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from .common import accuracy_column, retrained
from .runs import MissingRuns, RunSet
from .style import new_figure, scheme_color, scheme_label, with_theme

MIN_PAIRS = 3
RESAMPLES = 1000


def correlations(x: np.ndarray, y: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, tuple]:
    """{"kendall": (τ-b, lo, hi), "spearman": (ρ, lo, hi)}: scipy's statistics with 95% percentile-bootstrap
    intervals (architectures resampled with replacement, seeded; resamples with a constant side dropped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input gives NaN
        point = {"kendall": float(stats.kendalltau(x, y).statistic),
                 "spearman": float(stats.spearmanr(x, y).statistic)}
    index = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    draws = {"kendall": [], "spearman": []}
    for chunk in np.array_split(index, max(1, resamples * len(x) ** 2 // 4_000_000)):
        draws["kendall"].append(kendall_b(x[chunk], y[chunk]))
        draws["spearman"].append(spearman(x[chunk], y[chunk]))
    out = {}
    for name, value in point.items():
        values = np.concatenate(draws[name])
        values = values[np.isfinite(values)]
        lo, hi = np.percentile(values, [2.5, 97.5]) if values.size else (np.nan, np.nan)
        out[name] = (value, float(lo), float(hi))
    return out


def kendall_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each row pair of ``x``, ``y`` (R × n), ties handled as scipy does."""
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum((1, 2)) / np.sqrt((sx * sx).sum((1, 2)) * (sy * sy).sum((1, 2)))


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair (Pearson correlation of average ranks)."""
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))


def pairs(runset: RunSet) -> pd.DataFrame:
    """Retrained architectures with a known supernet accuracy (``beam_acc``) and the retrained one (``y``)."""
    rows = retrained(runset.select(kind="search"))
    rows = rows[rows["beam_acc"].notna()]
    column, _ = accuracy_column(rows)
    return rows.assign(y=rows[column].astype(float), x=rows["beam_acc"].astype(float)).dropna(subset=["x", "y"])


@with_theme
def figure(runset: RunSet) -> Figure:
    data = pairs(runset)
    counts = data.groupby("scheme").size()
    schemes = sorted((s for s, n in counts.items() if n >= MIN_PAIRS), key=_order)
    if not schemes:
        found = ", ".join(f"{s}: {n}" for s, n in counts.items()) or "none"
        raise MissingRuns(f"rank needs search runs with at least {MIN_PAIRS} beam architectures retrained from "
                          f"scratch (sharing-lab retrain RUN_DIR --top N) for some scheme; found pairs: {found}")
    _, ylabel = accuracy_column(data)
    fig, axes = new_figure(len(schemes), ncols=3)
    for ax, scheme in zip(axes, schemes):
        part = data[data["scheme"] == scheme]
        x, y = part["x"].to_numpy(), part["y"].to_numpy()
        result = correlations(x, y)
        ax.scatter(x * 100, y * 100, s=22, color=scheme_color(scheme), edgecolors="white", linewidths=0.4,
                   label=f"retrained architectures (n={len(x)})")
        tau, rho = result["kendall"], result["spearman"]
        text = (f"n = {len(x)} ({part['id'].nunique()} run{'s' if part['id'].nunique() > 1 else ''})\n"
                f"Kendall τ-b = {tau[0]:.2f} [{tau[1]:.2f}, {tau[2]:.2f}]\n"
                f"Spearman ρ = {rho[0]:.2f} [{rho[1]:.2f}, {rho[2]:.2f}]")
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", ha="left", fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"})
        ax.set(xlabel="supernet accuracy (%)", ylabel=f"retrained {ylabel}", title=f"{scheme_label(scheme)}")
        ax.legend(loc="lower right")
        _pad(ax)
    fig.suptitle("Ranking quality: supernet vs stand-alone accuracy (95% bootstrap CI)", fontsize=9)
    return fig


def _order(scheme: str) -> tuple:
    family = scheme.partition(":")[0]
    return {"ordinal": 0, "independent": 1, "transitionary": 2}.get(family, 3), scheme


def _pad(ax) -> None:
    """Room at the top for the statistics box."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.45 * (high - low))
