"""Φ along a search without the search, and a budget's ratios beside the paper's (DESIGN §8).

P/Q get no task gradient, so their trajectory under Eq. 5 (a constant τ) or under the Φ schedule
(:mod:`sharing_lab.aps.phi_schedule`) does not depend on the data: replaying the moves alone on a fresh supernet of
the same seed gives the search's Φ exactly, in a fraction of a second on the embedded space. That calibrates τ
before a search starts (:func:`calibrate_tau`) and states where a budget's Φ gets to (:func:`budget`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..aps.phi_schedule import layer_bounds, log_progress
from ..aps.transition import Mover, at_rate, phase_position, transition_of
from ..config import Config
from ..space.search_space import SearchSpace
from .lr_schedule import lr_factor
from .supernet import Supernet

# The paper's CIFAR-10 ResNet-20 search (Section 5.1 and the authors' code; ../shared/notes): 600 epochs, the
# first 200 warm-up, 98 weight steps of 256 images per epoch, each search step one controller update, 19
# decisions (one per convolution but the tied residual widths), weight lr 0.1 stepped ×0.1 at epochs 300 and
# 450; the authors' Φ gets near its independent minimum after about 80% of the search.
PAPER = {"warmup_share": 200 / 600, "controller_updates_per_decision": 400 * 98 / 19,
         "transition_at_peak_lr": 100 / 400, "transition_above_tenth_lr": 250 / 400, "phi_80_at": 0.8}


@dataclass(frozen=True)
class Trajectory:
    """Φ of the movable layers at every search-phase epoch's end (``rows``: epoch, phi, progress, tau) and the
    bounds: Σ_l of the ordinal starts and of the independent minima."""

    rows: pd.DataFrame
    start: float
    floor: float

    def progress_at(self, position: float) -> float:
        """Log-Φ progress (0 ordinal, 1 independent) at the epoch nearest ``position`` of the search phase."""
        if self.rows.empty:
            return math.nan
        index = min(max(round(position * len(self.rows)) - 1, 0), len(self.rows) - 1)
        return float(self.rows["progress"].iloc[index])

    def reaches(self, fraction: float) -> float | None:
        """The position in the search phase (epoch end) where the progress first reaches ``fraction``."""
        hit = self.rows.index[self.rows["progress"] >= fraction]
        return None if len(hit) == 0 else (int(hit[0]) + 1) / len(self.rows)


def replay(config: Config, space: SearchSpace, steps_per_epoch: int, epochs: int | None = None) -> Trajectory:
    """Φ of ``config``'s search replayed without data: a supernet of ``config.seed`` and the moves of its
    transition (:func:`sharing_lab.aps.transition.transition_of`) at every ``transition_every``-th search step.
    ``epochs`` stops early (search-phase epochs replayed; default all)."""
    search = config.search
    supernet = Supernet(space, config.seed, config.model.bn)
    transition = transition_of(config.sharing, space.scheme)
    mover = Mover(supernet, transition) if transition is not None else None
    starts, floors = layer_bounds(supernet)
    start, floor = float(starts.sum()), float(floors.sum())
    rows, step = [], search.warmup_epochs * steps_per_epoch
    for epoch in range(search.warmup_epochs, search.warmup_epochs + (epochs or search.epochs - search.warmup_epochs)):
        taus = []
        for _ in range(steps_per_epoch):
            if mover is not None and step % transition.every == 0:
                tau = mover.step(phase_position(step + 1, search.warmup_epochs, search.epochs, steps_per_epoch))
                if tau is not None:
                    taus.append(float(tau.median()))
            step += 1
        phi = supernet.movable_phi()
        rows.append({"epoch": epoch, "phi": phi, "progress": log_progress(phi, start, floor),
                     "tau": sum(taus) / len(taus) if taus else (transition.rate if transition else None)})
    return Trajectory(pd.DataFrame(rows), start, floor)


def calibrate_tau(config: Config, space: SearchSpace, steps_per_epoch: int, fraction: float = 0.8,
                  at: float = 0.6, iterations: int = 20) -> tuple[float, Trajectory]:
    """The constant τ whose replayed Φ is ``fraction`` of the way (in log Φ) from ordinal to independent at
    position ``at`` of the search phase, and its whole trajectory: bisection in log τ (Φ moves faster with a
    larger τ, until a τ so large that the steps overshoot and Φ diverges, which counts as too fast). τ is given
    to two significant digits, so the bisection stops as soon as both ends of its bracket round to the same two
    digits (rounding is monotone: a longer bisection would give the same τ)."""
    low, high = -10.0, 0.0
    epochs = max(1, round(at * (config.search.epochs - config.search.warmup_epochs)))
    for _ in range(iterations):
        if _two_digits(10 ** low) == _two_digits(10 ** high):
            break
        middle = 0.5 * (low + high)
        reached = replay(at_rate(config, 10 ** middle), space, steps_per_epoch, epochs).rows["progress"].iloc[-1]
        # too large a τ overshoots: Φ grows past its start (progress < 0) or overflows, a rate to go below
        if not math.isfinite(reached) or reached < 0 or reached >= fraction:
            high = middle
        else:
            low = middle
    tau = _two_digits(10 ** high)
    return tau, replay(at_rate(config, tau), space, steps_per_epoch)


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")


def lr_shares(config: Config, steps_per_epoch: int) -> tuple[float, float]:
    """Shares of the search phase's steps at the peak weight lr and at ≥ a tenth of it."""
    factor = lr_factor(config, steps_per_epoch)
    steps = range(config.search.warmup_epochs * steps_per_epoch, config.search.epochs * steps_per_epoch)
    values = [factor(step) for step in steps]
    if not values:
        return math.nan, math.nan
    return (sum(v >= 1 - 1e-9 for v in values) / len(values), sum(v >= 0.1 - 1e-9 for v in values) / len(values))


def budget(config: Config, space: SearchSpace, steps_per_epoch: int, trajectory: Trajectory | None) -> dict:
    """The ratios of ``config``'s search beside the paper's (:data:`PAPER`) and where its Φ gets to (from the
    replayed ``trajectory``; without one, the Φ schedule's own point, or None at a constant τ)."""
    search, sharing = config.search, config.sharing
    at_peak, above_tenth = lr_shares(config, steps_per_epoch)
    search_steps = (search.epochs - search.warmup_epochs) * steps_per_epoch
    transition = transition_of(sharing, space.scheme)
    if trajectory is not None:
        reach = trajectory.reaches(0.8)
    elif transition is not None and transition.schedule is not None and transition.fraction >= 0.8:
        reach = transition.at
    else:
        reach = None
    final = trajectory.rows.iloc[-1] if trajectory is not None and not trajectory.rows.empty else None
    return {
        "warmup_share": search.warmup_epochs / search.epochs,
        "controller_updates": search_steps,
        "controller_updates_per_decision": search_steps / space.num_decisions,
        "transition_at_peak_lr": at_peak,
        "transition_above_tenth_lr": above_tenth,
        "phi_80_at": reach,
        "lr_factor_at_phi_80": (None if reach is None else lr_factor(config, steps_per_epoch)(
            int((search.warmup_epochs + reach * (search.epochs - search.warmup_epochs)) * steps_per_epoch) - 1)),
        "phi_start": None if trajectory is None else trajectory.start,
        "phi_floor": None if trajectory is None else trajectory.floor,
        "phi_end": None if final is None else float(final["phi"]),
        "progress_end": None if final is None else float(final["progress"]),
        "paper": PAPER,
    }
