"""Ranking quality: does the supernet rank architectures as training them from scratch does?

On a space with a ground truth (runs with a ``space`` table): at each run's last whole-space evaluation, the
supernet's validation accuracy of *every* architecture against its ground-truth test accuracy (mean over the
table's seeds); per scheme the mean Kendall τ-b and Spearman ρ over the runs (seeds) with a 95% t-interval,
n = the architectures of the space. Otherwise: the architectures retrained from scratch (table ``retrain``)
whose supernet accuracy is known (the beam row of the same run), pooled per scheme, with 95%
percentile-bootstrap intervals (resampling architectures, seeded). One scatter panel per scheme, n stated.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from ..truth.scoring import shipped_truth
from .common import accuracy_column, retrained
from .runs import MissingRuns, RunSet, scheme_arms
from .style import new_figure, ordered, scheme_color, scheme_label, with_theme

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


def truth_pairs(runset: RunSet) -> pd.DataFrame:
    """Per search run of an arm (:func:`~.runs.scheme_arms`) on a space with a ground truth: its last whole-space
    evaluation, one row per architecture with the supernet's accuracy ``x`` and the ground truth's mean test
    accuracy ``y``."""
    frames = []
    try:
        arms = scheme_arms(runset, "rank")
    except MissingRuns:
        return pd.DataFrame(columns=["id", "scheme", "x", "y"])
    for label, run in ((label, run) for label, runs in arms.items() for run in runs):
        space = run.table("space")
        found = shipped_truth(run.config)  # read and summarised once per space, not once per run
        if space.empty or found is None:
            continue
        last = space[space["step"] == space["step"].max()]
        truth = found.table.set_index("widths")["test_acc"]
        frames.append(pd.DataFrame({"id": run.id, "scheme": label, "widths": last["widths"],
                                    "x": last["supernet_acc"].astype(float),
                                    "y": last["widths"].map(truth).astype(float)}).dropna())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "scheme", "x", "y"])


def _seed_interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


@with_theme
def truth_figure(data: pd.DataFrame) -> Figure:
    schemes = ordered(set(data["scheme"]))
    fig, axes = new_figure(len(schemes), ncols=4)
    for ax, scheme in zip(axes, schemes):
        part = data[data["scheme"] == scheme]
        per_run = part.groupby("id").apply(lambda g: pd.Series(
            {"kendall": stats.kendalltau(g["x"], g["y"]).statistic,
             "spearman": stats.spearmanr(g["x"], g["y"]).statistic}), include_groups=False)
        tau, rho = _seed_interval(per_run["kendall"].to_numpy()), _seed_interval(per_run["spearman"].to_numpy())
        ax.scatter(part["x"] * 100, part["y"] * 100, s=12, alpha=0.6, color=scheme_color(scheme),
                   edgecolors="white", linewidths=0.3)
        n_arch, n_runs = int(part.groupby("id").size().max()), len(per_run)
        text = (f"n = {n_arch} architectures x {n_runs} seed{'s' if n_runs > 1 else ''}\n"
                f"Kendall τ-b = {tau[0]:.2f} [{tau[1]:.2f}, {tau[2]:.2f}]\n"
                f"Spearman ρ = {rho[0]:.2f} [{rho[1]:.2f}, {rho[2]:.2f}]")
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", ha="left", fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"})
        ax.set(xlabel="supernet accuracy, end of search (%)", ylabel="ground-truth test accuracy (%)",
               title=scheme_label(scheme))
        _pad(ax)
    fig.suptitle("Ranking of the whole space against the ground truth (mean over seeds, 95% t-interval)",
                 fontsize=9)
    return fig


@with_theme
def figure(runset: RunSet) -> Figure:
    truth = truth_pairs(runset)
    if not truth.empty:
        return truth_figure(truth)
    data = pairs(runset)
    counts = data.groupby("scheme").size()
    schemes = ordered(s for s, n in counts.items() if n >= MIN_PAIRS)
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


def _pad(ax) -> None:
    """Room at the top for the statistics box."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.45 * (high - low))
