"""One page per run (``RUN/summary.png``, drawn at the end of ``run-search``): accuracy along the search, Φ
(with the Φ schedule's target when there is one), the controller's final decision probabilities, and the
ground-truth scores (``gt_kendall``, ``gt_top1_prob``, ``gt_top5_prob``) when the space has a ground truth.
A newcomer sees what the run did without another command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .runs import Run
from .style import METRIC_COLORS, PHI_LABEL, empty_panel, mark_warmup, new_figure, save, sequence_colors, with_theme

NAME = "summary"
DPI = 90  # a page per run, committed beside the records: small
ACCURACY = (("train_acc", "training (sampled)"), ("val_acc_mean", "validation, mean of sampled"),
            ("val_acc_max", "validation, best sampled"))
TRUTH = (("gt_kendall", "Kendall τ-b vs ground truth"), ("gt_top1_prob", "p(best architecture)"),
         ("gt_top5_prob", "p(5 best architectures)"))


def _series(run: Run, name: str):
    rows = run.table("scalars")
    if rows.empty:
        return np.array([]), np.array([])
    rows = rows[(rows["name"] == name) & np.isfinite(rows["value"].astype(float))].sort_values("step")
    return rows["step"].to_numpy(dtype=float) / run.steps_per_epoch(), rows["value"].to_numpy(dtype=float)


def _title(run: Run) -> str:
    cfg = run.config
    parts = [run.path.name, cfg.sharing.scheme, f"seed {cfg.seed}"]
    if run.transition is not None:
        parts.append(run.transition.describe())
    if cfg.search.flops_target is not None:
        parts.append(f"target {cfg.search.flops_target:.3g} MACs")
    summary = run.payload_summary()
    exported = summary.get("exported", {})
    line = " · ".join(parts)
    if exported:
        line += f"\nexported {exported.get('widths')} (validation {100 * exported.get('acc', float('nan')):.1f}%)"
        truth = summary.get("groundtruth")
        if truth:
            line += (f", ground-truth rank {truth['rank']} of {truth['architectures']}, regret "
                     f"{truth['regret_points']:.2f} points")
    return line


@with_theme
def figure(run: Run) -> Figure:
    """The one-page summary of ``run`` (a search run directory)."""
    fig, axes = new_figure(4, ncols=2)
    warmup = [run.config.search.warmup_epochs]
    ax = axes[0]
    for name, label in ACCURACY:
        x, y = _series(run, name)
        if len(x):
            ax.plot(x, 100 * y, color=METRIC_COLORS[name], label=label, marker="o" if name != "train_acc" else None,
                    markersize=3)
    mark_warmup(ax, warmup)
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend(loc="lower right")
    ax = axes[1]
    x, y = _series(run, "phi")
    ax.plot(x, y, color="0.2", label="Φ (Eq. 4)")
    x, y = _series(run, "phi_target")
    if len(x):
        ax.plot(x, y, color=METRIC_COLORS["val_acc_max"], linestyle=":", label="Φ schedule's target")
    mark_warmup(ax, warmup)
    ax.set(xlabel="epoch", ylabel=PHI_LABEL, title="sharing level")
    ax.legend(loc="best")
    ax = axes[2]
    probs = run.table("probs")
    if probs.empty:
        empty_panel(ax, "no decision probabilities recorded")
    else:
        last = probs[probs["step"] == probs["step"].max()]
        choices = sorted(last["choice"].unique())
        colors = sequence_colors(len(choices), "crest")
        width = 0.8 / max(len(choices), 1)
        for index, choice in enumerate(choices):
            part = last[last["choice"] == choice].sort_values("layer")
            ax.bar(part["layer"] + (index - (len(choices) - 1) / 2) * width, part["prob"], width,
                   color=colors[index], label=f"width {part['width'].iloc[0]:g}" if part["width"].nunique() == 1
                   else f"candidate {choice + 1}")
        ax.axhline(1 / len(choices), color="0.5", linewidth=0.8, linestyle="--", label="uniform")
        ax.set(xlabel="decision", ylabel="probability", title="final decision probabilities")
        ax.set_xticks(sorted(last["layer"].unique()))
        ax.legend(loc="best", ncols=2)
    ax = axes[3]
    drawn = False
    for (name, label), color in zip(TRUTH, sequence_colors(len(TRUTH), "flare")):
        x, y = _series(run, name)
        if len(x):
            ax.plot(x, y, color=color, marker="o", markersize=3, label=label)
            drawn = True
    if drawn:
        mark_warmup(ax, warmup)
        ax.set(xlabel="epoch", ylim=(min(0.0, ax.get_ylim()[0]), 1.0), title="against the ground truth")
        ax.legend(loc="best")
    else:
        empty_panel(ax, "this space has no ground-truth table\n(sharing-lab groundtruth build SPACE)")
        ax.set(title="against the ground truth")
    fig.suptitle(_title(run), fontsize=8)
    return fig


def write(run_dir: str | Path) -> list[Path]:
    """Draw ``run_dir``'s summary and save it beside its records (``summary.png``)."""
    return save(figure(Run(run_dir)), run_dir, NAME, formats=("png",), dpi=DPI)


def write_or_log(run_dir: Path, log: Callable[[str], None] = print) -> Path | None:
    """:func:`write` for a run that just finished: a figure that cannot be drawn is reported in one line and leaves
    the finished search as it is; returns the PNG's path, or None."""
    try:
        return write(run_dir)[0]
    except Exception as error:  # noqa: BLE001 - the search is done; a plotting failure must not undo it
        log(f"the summary figure could not be drawn: {error}")
        return None
