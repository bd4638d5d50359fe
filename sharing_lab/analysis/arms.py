"""The arms the claims compare (:mod:`sharing_lab.analysis.claims`), and the rule that makes pooling and comparing
runs sound: runs may differ only in what a claim is about.

An arm is the search runs of one scheme family (the transitionary one at one constant τ, or under the Φ schedule),
with or without a FLOPs target; its value is one number per seed (a seed's runs averaged: the seed is the unit).
Every run that enters the claims must agree with every other on each configuration key except :data:`FREE_KEYS`
(the scheme and how its transforms move, the FLOPs target, the seed) and the sections that do not change a
search (:data:`FREE_SECTIONS`): otherwise the claims refuse in one line naming the key, or split the runs by it
(``--split-by KEY``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..config import flat
from ..errors import InputError
from ..plots.runs import Run

FREE_KEYS = ("seed", "sharing.scheme", "sharing.transition", "sharing.transition_every", "sharing.phi_fraction",
             "sharing.phi_at", "search.flops_target")
# Sections and keys that say where and how fast a run computes, or what follows the search, not what it searches.
FREE_SECTIONS = ("runtime", "logging", "retrain")
FREE_PLACES = ("device", "data.dir", "data.workers")


class NotComparable(InputError):
    """Runs that differ in a key the claims do not compare over."""


def _fixed(key: str) -> bool:
    return key not in FREE_KEYS and key not in FREE_PLACES and key.partition(".")[0] not in FREE_SECTIONS


def _shown(value) -> str:
    return "null" if value is None else str(value)


def check_comparable(runs: Sequence[Run], split_by: str | None = None) -> None:
    """Refuse (:class:`NotComparable`) runs that differ in a fixed key (not :data:`FREE_KEYS`, not a free
    section), naming the key, two of its values and a run of each; ``split_by`` is exempt."""
    first: dict[str, tuple] = {}
    for run in runs:
        for key, value in flat(run.config).items():
            if not _fixed(key) or key == split_by:
                continue
            if key not in first:
                first[key] = (value, run)
                continue
            seen, other = first[key]
            if value != seen and not (isinstance(value, float) and isinstance(seen, float)
                                      and math.isnan(value) and math.isnan(seen)):
                raise NotComparable(
                    f"runs differ in {key}: {_shown(seen)} in {other.name} ({other.path}), {_shown(value)} in "
                    f"{run.name} ({run.path}); the claims pool and compare runs that differ only in scheme, "
                    f"transition, FLOPs target and seed: remove one, or report per value with --split-by {key}")


def split_runs(runs: Sequence[Run], key: str) -> dict[str, list[Run]]:
    """The runs grouped by the value of configuration key ``key`` (as text, in order of first appearance)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        values = flat(run.config)
        if key not in values:
            raise InputError(f"--split-by {key}: no such configuration key (e.g. search.epochs, model.widths)")
        groups.setdefault(_shown(values[key]), []).append(run)
    return groups


def per_seed(runs: Iterable[Run], measure: Callable[[Run], float]) -> list[float]:
    """One value per seed: the measure of each run, averaged over the runs of a seed (in seed order)."""
    values: dict[int, list[float]] = {}
    for run in runs:
        value = measure(run)
        if math.isfinite(value):
            values.setdefault(int(run.config.seed), []).append(value)
    return [float(np.mean(v)) for _, v in sorted(values.items())]


class Arms:
    """The search runs the claims compare: by scheme family, without a FLOPs target (``targeted``: with the most
    common one), the transitionary arm at its most common constant τ (among equals the middle one: a τ sweep's
    ends are its too small and too large rates); transitionary runs by τ; and those under the Φ schedule."""

    def __init__(self, runs: Sequence[Run], targeted: bool = False) -> None:
        searches = [run for run in runs if run.kind == "search"]
        has_target = [run for run in searches if run.config.search.flops_target is not None]
        self.target: float | None = None
        if targeted:
            targets = pd.Series([run.config.search.flops_target for run in has_target])
            self.target = float(targets.mode().iloc[0]) if len(targets) else None
            searches = [run for run in has_target if run.config.search.flops_target == self.target]
        else:
            searches = [run for run in searches if run.config.search.flops_target is None]
        self.runs = searches
        self.by_tau: dict[float, list[Run]] = {}
        self.scheduled = [run for run in searches if run.family == "transitionary" and run.phi_schedule is not None]
        for run in searches:
            if run.family == "transitionary" and run.phi_schedule is None:
                self.by_tau.setdefault(run.tau, []).append(run)
        self.tau = self._main_tau()

    def _main_tau(self) -> float | None:
        if not self.by_tau:
            return None
        taus = sorted(self.by_tau)
        most = max(len(runs) for runs in self.by_tau.values())
        middle = (len(taus) - 1) / 2
        return min((tau for tau in taus if len(self.by_tau[tau]) == most),
                   key=lambda tau: abs(taus.index(tau) - middle))

    def scheme(self, family: str) -> list[Run]:
        """The arm of a scheme family (``transitionary``: at the main τ)."""
        if family == "transitionary":
            return self.by_tau.get(self.tau, [])
        return [run for run in self.runs if run.family == family]

    def label(self, family: str) -> str:
        return {"ordinal": "O", "independent": "I"}.get(family, f"T (τ = {self.tau:g})" if self.tau else "T")


def sharing_levels(runs: Iterable[Run], phi: Callable[[Run], float], measure: Callable[[Run], float],
                   tolerance: float = 1e-3) -> dict[int, list[tuple[float, float]]]:
    """Per seed, (Φ, measure) at each distinct sharing level of the seed's runs: levels whose Φ agree within
    ``tolerance`` (relative) are one level (a transitionary warm-up is ordinal up to its initial noise), their
    measure averaged."""
    by_seed: dict[int, list[tuple[float, float]]] = {}
    for run in runs:
        point = (phi(run), measure(run))
        if all(math.isfinite(v) for v in point):
            by_seed.setdefault(int(run.config.seed), []).append(point)
    levels: dict[int, list[tuple[float, float]]] = {}
    for seed, points in sorted(by_seed.items()):
        merged: list[list[float]] = []  # [Φ, sum of measures, count]
        for level, value in sorted(points):
            if merged and abs(level - merged[-1][0]) <= tolerance * max(abs(level), abs(merged[-1][0])):
                merged[-1][1] += value
                merged[-1][2] += 1
            else:
                merged.append([level, value, 1])
        levels[seed] = [(level, total / count) for level, total, count in merged]
    return levels
