"""A sharing scheme: how a layer's transforms P/Q start and how they move after warm-up (Sections 3.1, 3.4).

A layer with candidate widths c_1 < … < c_A and meta width M keeps one transform T^a ∈ R^{M×c_a} per
candidate on each side. The built-in schemes place identity blocks at offsets (ordinal, independent, overlap)
and the transitionary one then anneals Φ by Eq. 5; a scheme of one's own subclasses :class:`SharingScheme`
(overriding :meth:`SharingScheme.make` and/or :meth:`SharingScheme.move`) in one file and registers a factory
with :func:`sharing_lab.register_scheme`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...errors import InputError
from ...registry import SCHEMES
from ..sharing import FusedTransition, normalize_columns, transition_layers


@dataclass(frozen=True)
class Transforms:
    """The transforms of one side of one layer.

    ``matrices[a]`` is T^a (M × c_a). ``offsets`` is set when every T^a is an exact identity slice
    (columns ``offsets[a] … offsets[a] + c_a`` of I_M): the candidate kernel is then a zero-copy slice of the
    meta-weight instead of an einsum (Eq. 2 with selection matrices).
    """

    matrices: tuple[torch.Tensor, ...]
    offsets: tuple[int, ...] | None


@dataclass(frozen=True)
class SharingScheme:
    """A named way to initialise P/Q (:meth:`make`) and to move them after warm-up (:meth:`move`).

    ``overlap`` places candidate a's identity block at row offset Σ_{j<a} floor((1−overlap)·c_j)
    (1 = ordinal, 0 = independent). ``sigma`` > 0 adds N(0, σ²) noise before unit-normalising columns; it is
    what lets the transition move away from an exact ordinal start (notes: at an exact start the Φ-gradient of
    an overlapping column is parallel to it and the projection cancels it). ``transition``: the transforms
    move after warm-up (by default by Eq. 5, :meth:`move`).
    """

    name: str
    overlap: float
    sigma: float = 0.0
    transition: bool = False

    def offsets(self, widths: Sequence[int]) -> tuple[int, ...]:
        """Row offsets of each candidate's identity block."""
        offsets, position = [], 0
        for width in widths:
            offsets.append(position)
            position += math.floor((1.0 - self.overlap) * width + 1e-9)
        return tuple(offsets)

    def required_meta_width(self, widths: Sequence[int]) -> int:
        """Smallest meta width that holds every candidate's block."""
        return max(off + w for off, w in zip(self.offsets(widths), widths))

    def make(self, widths: Sequence[int], meta_width: int, generator: torch.Generator | None = None) -> Transforms:
        """Build the starting transforms for candidates ``widths`` in a meta width ``meta_width``."""
        needed = self.required_meta_width(widths)
        if meta_width < needed:
            raise InputError(
                f"scheme {self.name!r} needs meta width >= {needed} for candidates {list(widths)}, got {meta_width}"
            )
        offsets = self.offsets(widths)
        matrices = []
        for off, width in zip(offsets, widths):
            matrix = torch.zeros(meta_width, width)
            matrix[off : off + width] = torch.eye(width)
            if self.sigma > 0:
                matrix += self.sigma * torch.randn(meta_width, width, generator=generator)
                matrix = normalize_columns(matrix)
            matrices.append(matrix)
        return Transforms(tuple(matrices), None if self.sigma > 0 else offsets)

    def move(self, layers: Sequence[tuple[list[torch.Tensor], list[torch.Tensor], bool, bool]], tau: float,
             fused: FusedTransition | None = None) -> torch.Tensor | None:
        """One step of the transforms after warm-up at the constant rate ``tau``, in place; ``layers`` are (P, Q,
        update_P, update_Q) of every layer with a movable side, and ``fused`` (what a supernet passes) the same
        Eq. 5 over the side banks those matrices are views of. The default is Eq. 5 when ``transition`` is set
        (:func:`sharing_lab.aps.sharing.transition_layers`, or ``fused`` in a few ops per bank); returns Φ before
        the step (a 0-d tensor) or None when nothing moves."""
        if not self.transition or not layers:
            return None
        return fused(tau) if fused is not None else transition_layers(layers, tau)


def no_argument(name: str, argument: str | None) -> None:
    """Refuse ``name:argument`` for a scheme that takes none."""
    if argument is not None:
        raise InputError(f"scheme {name!r} takes no argument (got {name}:{argument})")


def scheme_names() -> list[str]:
    """Names of the registered schemes (``overlap`` is spelt ``overlap:<alpha>``)."""
    return SCHEMES.names()


def get_scheme(spec: str) -> SharingScheme:
    """Parse ``name`` or ``name:argument`` (e.g. ``overlap:0.5``) into a registered scheme."""
    name, colon, argument = spec.partition(":")
    if name not in SCHEMES:
        raise InputError(f"unknown sharing scheme {spec!r}; known: {', '.join(scheme_names())}")
    return SCHEMES.get(name)(argument if colon else None)
