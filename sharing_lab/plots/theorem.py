"""Theorem 3.1, computed (not read from records).

Left: ‖Cov(W^{i,o}, W^{ĩ,õ})‖²_F by Monte-Carlo against the closed form ‖Q^{iᵀ}Q^{ĩ}‖²_F‖P^{oᵀ}P^{õ}‖²_F
(``sharing_lab.aps.theorem.run_checks``), with the line y = x. Right: Φ of random semi-orthogonal transforms
(histogram), with the ordinal maximum and the independent minimum marked and the overlap family as points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..aps.schemes.base import get_scheme
from ..aps.sharing import phi
from ..aps.theorem import run_checks
from .runs import RunSet
from .style import PHI_LABEL, new_figure, scheme_color, with_theme

WIDTHS = (2, 4, 6, 8)
CLOSED_FORM = r"closed form $\|Q^{i\top}Q^{\tilde{\imath}}\|_F^2\,\|P^{o\top}P^{\tilde{o}}\|_F^2$"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def random_transforms(widths: Sequence[int], draws: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One side's transforms for ``draws`` draws (tensors draws × M × c, M = Σ widths): the construction of
    :func:`sharing_lab.aps.sharing.random_semi_orthogonal` (QR of a Gaussian, signs fixed by diag R: Haar-distributed
    orthonormal columns), batched over draws (one QR per width instead of thousands of tiny ones)."""
    meta, out = sum(widths), []
    for width in widths:
        gaussian = torch.randn(draws, meta, width, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        out.append(q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2))
    return out


def random_phis(widths: Sequence[int] = WIDTHS, draws: int = 500, seed: int = 0) -> np.ndarray:
    """Φ (Eq. 4, :func:`sharing_lab.phi`) of ``draws`` random semi-orthogonal P and Q for candidates ``widths``."""
    generator = torch.Generator().manual_seed(seed)
    P, Q = random_transforms(widths, draws, generator), random_transforms(widths, draws, generator)
    return np.array([float(phi([p[k] for p in P], [q[k] for q in Q])) for k in range(draws)])


def scheme_phi(spec: str, widths: Sequence[int] = WIDTHS) -> float:
    matrices = [m.double() for m in get_scheme(spec).make(widths, sum(widths)).matrices]
    return float(phi(matrices, matrices))


@with_theme
def figure(runset: RunSet | None = None, samples: int = 20_000, draws: int = 500, seed: int = 0,
           report: dict | None = None) -> Figure:
    """The runs are not used: everything here is computed (``samples`` Monte-Carlo draws per covariance check,
    ``draws`` random transform pairs); ``report``: a result of ``run_checks`` to draw instead of computing one."""
    if report is None:
        report = run_checks(samples=samples, seed=seed)
    cases = [c for c in report["checks"] if c["name"].startswith("covariance")]
    fig, (left, right) = new_figure(2)
    kinds = {}
    for check in cases:
        kind = check["name"].split()[1]
        kinds.setdefault(kind, []).append(check)
    colors = {kind: _kind_color(kind) for kind in kinds}
    for kind, checks in kinds.items():
        closed = [c["values"]["closed_form"] for c in checks]
        estimate = [c["values"]["monte_carlo"] for c in checks]
        left.scatter(closed, estimate, s=30, color=colors[kind], edgecolors="black", linewidths=0.4, zorder=3,
                     label=f"{kind} ({len(checks)})")
    values = [v for c in cases for v in (c["values"]["closed_form"], c["values"]["monte_carlo"])]
    top = max(values + [1.0]) * 1.08
    low = min(values + [0.0]) - 0.03 * top
    left.plot([low, top], [low, top], color="0.3", linestyle="--", linewidth=1, label="y = x", zorder=2)
    left.set(xlim=(low, top), ylim=(low, top), xlabel=CLOSED_FORM, ylabel=r"Monte-Carlo $\|\mathrm{Cov}\|_F^2$",
             title=f"Covariance: Monte-Carlo vs closed form\n"
             f"({samples:,} samples, worst rel. error {report['worst_relative_error']:.1%})")
    left.legend(loc="upper left", title="transforms (candidate pairs)", title_fontsize=7)

    randoms = random_phis(draws=draws, seed=seed)
    ordinal, independent = scheme_phi("ordinal"), scheme_phi("independent")
    bins = np.linspace(independent, ordinal, 61)
    right.hist(randoms, bins=bins, color="0.6", edgecolor="white", linewidth=0.3,
               label=f"random semi-orthogonal ({draws} draws)")
    right.axvline(ordinal, color=scheme_color("ordinal"), linewidth=2, label=f"ordinal = max ({ordinal:.0f})")
    right.axvline(independent, color=scheme_color("independent"), linewidth=2,
                  label=f"independent = min ({independent:.0f})")
    height = right.get_ylim()[1]
    overlap = [scheme_phi(f"overlap:{a:g}") for a in ALPHAS]
    ladder = [height * (0.12 + 0.14 * k) for k in range(len(ALPHAS))]  # staggered so labels never collide
    right.scatter(overlap, ladder, marker="D", s=28, zorder=3, color=[scheme_color(f"overlap:{a:g}") for a in ALPHAS],
                  edgecolors="black", linewidths=0.4, label="overlap family (α)")
    for a, value, y in zip(ALPHAS, overlap, ladder):
        last = a == ALPHAS[-1]
        right.annotate(f"α={a:g}", (value, y), xytext=(-6 if last else 6, 0), textcoords="offset points",
                       ha="right" if last else "left", va="center", fontsize=7,
                       bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    right.set(xlabel=PHI_LABEL, ylabel="count of random draws", ylim=(0, height * 1.75),
              title=f"Φ of random transforms vs the bounds\n(widths {', '.join(map(str, WIDTHS))}; M = {sum(WIDTHS)})")
    span = ordinal - independent
    right.set_xlim(independent - 0.06 * span, ordinal + 0.06 * span)
    right.legend(loc="upper center")
    status = "hold" if report["passed"] else "FAIL"
    fig.suptitle(f"Theorem 3.1 checks {status}", fontsize=9)
    return fig


def _kind_color(kind: str):
    return scheme_color(kind) if kind != "random" else (0.35, 0.35, 0.35)
