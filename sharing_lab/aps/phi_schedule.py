"""A Φ schedule (beyond the paper): Φ follows a target trajectory instead of a constant transition rate τ.

The paper's Eq. 5 takes steps of a constant τ on ∇Φ. Its gradient scales with Φ and with the candidate widths
(Eq. 4 is a product of two sides' levels), so a τ chosen for one space does not transfer to another, and the
stem and classifier (one fixed side of one candidate) barely move at the τ that moves the inner layers. Here
every movable layer l instead follows its own target in log Φ,

    log Φ_l(s) = log Φ_l^ord + f · g(min(s / s*, 1)) · (log Φ_l^ind − log Φ_l^ord),

where s ∈ [0, 1] is the position in the search phase, s* (``at``) where the trajectory reaches the fraction f
(``fraction``) of the way from the layer's ordinal start Φ_l^ord to its independent minimum Φ_l^ind (then it is
held), and g(u) = u (``linear``) or (1 − cos πu)/2 (``cosine``). Normalising per layer makes the stem and the
classifier transition at the same pace as the inner layers. Each step takes the per-layer step size that
brings Φ_l to its next target to first order (:meth:`sharing_lab.aps.sharing.FusedTransition.track`); the realised
τ is recorded. Since P/Q get no task gradient the trajectory is data-free (:mod:`sharing_lab.search.replay`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from .sharing import side_level

SHAPES = ("linear", "cosine")
# Largest column move of one tracking step (a unit column turns by about this many radians at most): a trust
# region for the first-order step size, which is unbounded where ∇Φ is nearly radial (an ordinal start).
MAX_MOVE = 0.05


def side_floor(widths: Sequence[int], meta: int) -> float:
    """The smallest Σ_{a≤b}‖T^{aᵀ}T^b‖²_F over unit-column transforms (one factor of Eq. 4): C = Σ c_a when the
    meta width holds every candidate side by side (orthogonal ranges, independent sharing); else the frame bound
    (‖G‖²_F ≥ C²/M for C unit vectors in M dimensions, and the same per block)."""
    total = sum(widths)
    return 0.5 * (max(total, total * total / meta) + sum(max(c, c * c / meta) for c in widths))


def layer_bounds(supernet) -> tuple[torch.Tensor, torch.Tensor]:
    """(Φ_l^ord, Φ_l^ind) of every movable layer of ``supernet``, in the order of its fused Eq. 5 (float64).

    The start is Φ_l of the scheme's own start without init noise; the floor multiplies the sides' minima
    (:func:`side_floor`); a fixed side (image channels, classes) keeps its level in both."""
    scheme = dataclasses.replace(supernet.space.scheme, sigma=0.0)
    starts, floors = [], []
    for module in supernet.movable_layers():
        start = floor = 1.0
        for side in (module.out_side, module.in_side):
            if side is None:  # a depthwise layer's input factor
                continue
            if side.movable:
                made = scheme.make(side.widths, side.meta_width)
                start *= float(side_level(made.matrices))
                floor *= side_floor(side.widths, side.meta_width)
            else:
                level = float(side_level([m.contiguous() for m in side.matrices]))
                start, floor = start * level, floor * level
        starts.append(start)
        floors.append(min(floor, start))
    return torch.tensor(starts, dtype=torch.float64), torch.tensor(floors, dtype=torch.float64)


def progress(shape: str, fraction: float, at: float, position: float) -> float:
    """f · g(min(s / s*, 1)): the target's share of the way from the ordinal start to the independent minimum
    (in log Φ) at position ``position`` of the search phase."""
    u = min(max(position, 0.0) / at, 1.0)
    return fraction * (u if shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * u)))


def log_progress(phi: float, start: float, floor: float) -> float:
    """How far ``phi`` is from ``start`` towards ``floor``, in log Φ (0 at the start, 1 at the floor)."""
    if not (phi > 0 and start > floor > 0):
        return math.nan
    return math.log(start / phi) / math.log(start / floor)


class PhiSchedule:
    """Per-layer targets of the Φ schedule for ``supernet`` (see the module docstring)."""

    def __init__(self, supernet, shape: str, fraction: float, at: float) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown Φ schedule {shape!r}; known: {', '.join(SHAPES)}")
        self.shape, self.fraction, self.at = shape, float(fraction), float(at)
        self.start, self.floor = layer_bounds(supernet)
        device = next(supernet.parameters()).device  # the targets are made there: no copy from the host per step
        self._log_start, self._log_floor = self.start.log().to(device), self.floor.log().to(device)

    def targets(self, position: float) -> torch.Tensor:
        """Target Φ_l of every movable layer at ``position`` ∈ [0, 1] of the search phase (float32, on the
        supernet's device)."""
        share = progress(self.shape, self.fraction, self.at, position)
        return (self._log_start + share * (self._log_floor - self._log_start)).exp().float()
