"""Numerical checks of Definition 3.1 and Theorem 3.1 (paper Section 3.2).

(a) With 𝒲 ~ N(0, 1), the cross-covariance of W^{i,o} = P^{oᵀ}𝒲Q^i and W^{ĩ,õ} has entries
    Cov[(a,b),(c,d)] = (P^{oᵀ}P^{õ})_{ac} (Q^{iᵀ}Q^{ĩ})_{bd}, hence squared Frobenius norm
    ‖Q^{iᵀ}Q^{ĩ}‖²_F ‖P^{oᵀ}P^{õ}‖²_F. Checked against a Monte-Carlo estimate (split-half, so unbiased).
(b) Among semi-orthogonal transforms, ordinal (nested ranges) attains the maximum of Φ and independent
    (orthogonal ranges) the minimum; the overlap family lies monotonically in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from .schemes import get_scheme
from .sharing import phi, random_semi_orthogonal


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    values: dict = field(default_factory=dict)


def _transform_family(kind: str, widths: Sequence[int], meta: int, generator: torch.Generator) -> list[torch.Tensor]:
    if kind == "random":
        return [random_semi_orthogonal(meta, w, generator) for w in widths]
    return [m.double() for m in get_scheme(kind).make(widths, meta).matrices]


def covariance_checks(
    samples: int = 200_000, seed: int = 0, widths: Sequence[int] = (2, 3, 5), tolerance: float = 0.05
) -> list[Check]:
    """Part (a): Monte-Carlo cross-covariance against the closed form, for several candidate pairs."""
    generator = torch.Generator().manual_seed(seed)
    meta = sum(widths)
    checks = []
    cases = [
        ("ordinal", (0, 1), (2, 2)),
        ("ordinal", (1, 2), (0, 2)),
        ("overlap:0.5", (1, 1), (2, 2)),
        ("random", (0, 1), (2, 1)),
        ("random", (2, 2), (1, 0)),
        ("independent", (0, 0), (1, 2)),
    ]
    for kind, (i, o), (i2, o2) in cases:
        P = _transform_family(kind, widths, meta, generator)
        Q = _transform_family(kind, widths, meta, generator)
        A, B = P[o].T @ P[o2], Q[i].T @ Q[i2]
        closed = torch.einsum("ac,bd->abcd", A, B)
        closed_norm = float(A.square().sum() * B.square().sum())
        halves = []
        for _ in range(2):
            acc = torch.zeros_like(closed)
            remaining = samples // 2
            while remaining > 0:
                n = min(remaining, 50_000)
                W = torch.randn(n, meta, meta, generator=generator, dtype=torch.float64)
                X = torch.einsum("ma,nmk,kb->nab", P[o], W, Q[i])
                Y = torch.einsum("mc,nmk,kd->ncd", P[o2], W, Q[i2])
                acc += torch.einsum("nab,ncd->abcd", X, Y)
                remaining -= n
            halves.append(acc / (samples // 2))
        estimate = 0.5 * (halves[0] + halves[1])
        norm_estimate = float((halves[0] * halves[1]).sum())  # E⟨Ĉ₁, Ĉ₂⟩ = ‖C‖²: unbiased
        noise = float(closed.numel()) ** 0.5 / samples**0.5
        if closed_norm > 1e-9:
            rel = abs(norm_estimate - closed_norm) / closed_norm
            entry_rel = float((estimate - closed).norm() / closed.norm())
            passed = rel <= tolerance
            detail = f"‖Cov‖²: Monte-Carlo {norm_estimate:.4f} vs closed form {closed_norm:.4f} (rel. err {rel:.2%})"
        else:
            rel, entry_rel = None, None
            passed = abs(norm_estimate) <= 10 * noise**2 and float(estimate.norm()) <= 5 * noise
            detail = f"‖Cov‖²: Monte-Carlo {norm_estimate:.2e} vs closed form 0 (noise level {noise**2:.1e})"
        checks.append(
            Check(
                f"covariance {kind} (i,o)=({i},{o}) vs ({i2},{o2})",
                passed,
                detail,
                {"closed_form": closed_norm, "monte_carlo": norm_estimate, "relative_error": rel,
                 "entrywise_relative_error": entry_rel, "samples": samples},
            )
        )
    return checks


def extreme_checks(
    widths: Sequence[int] = (2, 4, 6, 8), draws: int = 500, seed: int = 0
) -> list[Check]:
    """Part (b): Φ of ordinal ≥ Φ of any random semi-orthogonal transforms ≥ Φ of independent, and the
    overlap family is monotone in α between them."""
    generator = torch.Generator().manual_seed(seed)
    meta = sum(widths)
    ordinal = float(phi(*(2 * [_transform_family("ordinal", widths, meta, generator)])))
    independent = float(phi(*(2 * [_transform_family("independent", widths, meta, generator)])))
    side_max = sum(min(a, b) for k, a in enumerate(widths) for b in widths[k:])
    side_min = sum(widths)
    randoms = torch.tensor(
        [
            float(phi(_transform_family("random", widths, meta, generator),
                      _transform_family("random", widths, meta, generator)))
            for _ in range(draws)
        ]
    )
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    overlap = [float(phi(*(2 * [_transform_family(f"overlap:{a}", widths, meta, generator)]))) for a in alphas]
    tol = 1e-9 * ordinal
    return [
        Check(
            "ordinal attains the maximum",
            ordinal >= float(randoms.max()) - tol and abs(ordinal - side_max**2) <= tol,
            f"Φ ordinal {ordinal:.1f} (bound {side_max**2}) ≥ max of {draws} random {float(randoms.max()):.1f}",
            {"phi_ordinal": ordinal, "phi_random_max": float(randoms.max()), "bound": side_max**2},
        ),
        Check(
            "independent attains the minimum",
            independent <= float(randoms.min()) + tol and abs(independent - side_min**2) <= tol,
            f"Φ independent {independent:.1f} (bound {side_min**2}) ≤ min of {draws} random "
            f"{float(randoms.min()):.1f}",
            {"phi_independent": independent, "phi_random_min": float(randoms.min()), "bound": side_min**2},
        ),
        Check(
            "overlap family monotone in alpha",
            all(b >= a - tol for a, b in zip(overlap, overlap[1:]))
            and abs(overlap[0] - independent) <= tol
            and abs(overlap[-1] - ordinal) <= tol,
            "Φ(α) for α=" + ", ".join(f"{a:g}: {v:.0f}" for a, v in zip(alphas, overlap)),
            {"alphas": alphas, "phi": overlap},
        ),
    ]


def run_checks(samples: int = 200_000, seed: int = 0) -> dict:
    """All Theorem 3.1 checks as a JSON-ready dict with ``passed`` and ``checks`` (DESIGN §4)."""
    checks = covariance_checks(samples=samples, seed=seed) + extreme_checks(seed=seed)
    errors = [c.values["relative_error"] for c in checks if c.values.get("relative_error") is not None]
    return {
        "passed": all(c.passed for c in checks),
        "worst_relative_error": max(errors) if errors else None,
        "checks": [asdict(c) for c in checks],
    }
