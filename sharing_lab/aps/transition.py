"""How a search moves its transforms after warm-up: the one place that says whether a run transitions and how.

A scheme whose ``transition`` flag is set moves its P/Q in the search phase (paper Section 3.4); the setting
``sharing.transition`` says how: a number is the paper's constant transition rate τ of Eq. 5 (APS-T), a shape
(``cosine``, ``linear``) is the Φ schedule (:mod:`sharing_lab.aps.phi_schedule`, beyond the paper), which steers
the built-in Eq. 5 with a step size per layer. A scheme of one's own that overrides
:meth:`~sharing_lab.aps.schemes.base.SharingScheme.move` moves at a constant rate. Everything that asks "does this
run transition, at what rate" (the loop, the replay, the records, the figures, ``budget``) asks
:func:`transition_of`; the position in the search phase comes from :func:`phase_position`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import Config, SharingConfig
from ..errors import InputError
from .phi_schedule import MAX_MOVE, PhiSchedule
from .schemes.base import SharingScheme


@dataclass(frozen=True)
class Transition:
    """The move of a search's transforms: at the constant ``rate`` τ (Eq. 5), or along the Φ schedule of shape
    ``schedule`` (``fraction`` of the way from ordinal to independent at ``at`` of the search phase); one move
    every ``every`` search steps."""

    rate: float | None
    schedule: str | None
    fraction: float
    at: float
    every: int

    def describe(self) -> str:
        """``τ = 0.00014`` or ``Φ schedule cosine (0.8 at 0.6)``."""
        if self.schedule is None:
            return f"τ = {self.rate:g}"
        return f"Φ schedule {self.schedule} ({self.fraction:g} at {self.at:g})"


def own_move(scheme: SharingScheme) -> bool:
    """Whether ``scheme`` moves its transforms its own way (it overrides ``move``) instead of by Eq. 5."""
    return type(scheme).move is not SharingScheme.move


def transition_of(sharing: SharingConfig, scheme: SharingScheme) -> Transition | None:
    """The transition of a search with these settings and scheme, or None when the scheme keeps its transforms
    fixed (ordinal, independent, overlap)."""
    if not scheme.transition:
        return None
    value = sharing.transition
    rate, schedule = (None, value) if isinstance(value, str) else (float(value), None)
    return Transition(rate, schedule, sharing.phi_fraction, sharing.phi_at, sharing.transition_every)


def check_transition(sharing: SharingConfig, scheme: SharingScheme) -> None:
    """Refuse a Φ schedule for a scheme that moves its transforms its own way (the schedule steers the built-in
    Eq. 5 only). The schedule's shape (``phi_fraction``, ``phi_at``) is read only under a schedule, and nothing
    of ``sharing.transition`` by a scheme that keeps its transforms fixed."""
    if scheme.transition and isinstance(sharing.transition, str) and own_move(scheme):
        raise InputError(f"scheme {scheme.name} moves its transforms its own way, which a Φ schedule cannot steer: "
                         "give it a constant rate, --set sharing.transition=τ")


def phase_position(step: int, warmup_epochs: int, epochs: int, steps_per_epoch: int) -> float:
    """The share of the search phase done after ``step`` weight steps (negative during warm-up, 1 at the end)."""
    return (step - warmup_epochs * steps_per_epoch) / max((epochs - warmup_epochs) * steps_per_epoch, 1)


class Mover:
    """A supernet's transforms in motion under a :class:`Transition`: :meth:`step` takes one move.

    At a constant rate it is the scheme's move (Eq. 5 unless the scheme has its own); under a Φ schedule it is
    the tracking step towards every layer's target (:meth:`sharing_lab.aps.sharing.FusedTransition.track`)."""

    def __init__(self, supernet, transition: Transition) -> None:
        self.supernet, self.transition = supernet, transition
        self.schedule = (PhiSchedule(supernet, transition.schedule, transition.fraction, transition.at)
                         if transition.schedule is not None else None)

    def step(self, position: float) -> torch.Tensor | None:
        """One move after which the search phase is at ``position``; returns the per-layer step sizes τ_l of a
        tracking step (on the device, not read back), or None at a constant rate."""
        if self.schedule is None:
            self.supernet.transition(self.transition.rate)
            return None
        _, tau = self.supernet.track_phi(self.schedule.targets(position), MAX_MOVE)
        return tau

    def target(self, position: float) -> float | None:
        """Σ_l of the Φ schedule's targets at ``position`` (None at a constant rate)."""
        return None if self.schedule is None else float(self.schedule.targets(position).sum())


def at_rate(config: Config, tau: float) -> Config:
    """``config`` with its transforms moving at the constant rate ``tau`` (what ``budget --calibrate`` tries)."""
    return dataclasses.replace(config, sharing=dataclasses.replace(config.sharing, transition=float(tau)))
