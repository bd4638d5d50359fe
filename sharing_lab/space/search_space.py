"""The search space: a model layout under a sharing scheme (paper Section 2.1).

An architecture is one candidate index per decision, a = [a_1, …, a_L]. :class:`SearchSpace` is the one place
that knows what an architecture uses: its widths and MACs, the cheapest completion of a prefix (the
controller's FLOPs input), uniform sampling, the (input, output) candidates of every APS layer that the
supernet's forward, its BatchNorm list and the probes all walk (:meth:`SearchSpace.layer_uses`), and the
enumeration of every architecture (for spaces small enough to score whole). :func:`build_space` makes the space
of a configuration.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import torch

from ..aps.schemes.base import SharingScheme, get_scheme
from ..aps.transition import check_transition
from ..config import Config, ModelConfig
from ..errors import InputError
from .flops import count, count_macs, macs_range
from .layout import Channels, Layout, build_layout

Arch = tuple[int, ...]
LayerUse = tuple[int, int] | None  # (input candidate, output candidate) of one APS layer; None: not used


class SearchSpace:
    """``layout`` under ``scheme``: the architectures, their costs and what each one uses."""

    def __init__(self, layout: Layout, scheme: SharingScheme) -> None:
        self.layout, self.scheme = layout, scheme
        self.num_candidates: tuple[int, ...] = tuple(len(d.candidates) for d in layout.decisions)
        self._completion: dict[Arch, int] = {}

    @property
    def decisions(self):
        return self.layout.decisions

    @property
    def num_decisions(self) -> int:
        return self.layout.num_decisions

    @property
    def size(self) -> int:
        """Number of architectures: Π_l |C_l|."""
        return math.prod(self.num_candidates)

    def widths_of(self, arch: Sequence[int]) -> tuple[int, ...]:
        return self.layout.widths_of(arch)

    def arch_of(self, widths: Sequence[int]) -> Arch:
        """Candidate indices of a width configuration; a width that is not a candidate is bad input."""
        if len(widths) != self.num_decisions:
            raise InputError(f"{self.layout.model} has {self.num_decisions} decisions, got {len(widths)} widths")
        for decision, width in zip(self.decisions, widths):
            if width not in decision.candidates:
                raise InputError(f"width {width} is not a candidate of {decision.name} "
                                 f"({', '.join(map(str, decision.candidates))})")
        return self.layout.arch_of(widths)

    def check_arch(self, arch: Sequence[int]) -> None:
        if len(arch) != self.num_decisions:
            raise InputError(f"architecture needs {self.num_decisions} decisions, got {len(arch)}")
        for index, (choice, count_) in enumerate(zip(arch, self.num_candidates)):
            if not 0 <= choice < count_:
                raise InputError(f"decision {index}: candidate index {choice} outside 0..{count_ - 1}")

    # --- costs ------------------------------------------------------------------------------------------
    def macs(self, arch: Sequence[int]) -> int:
        return count_macs(self.layout, self.widths_of(arch))

    def cost(self, arch: Sequence[int]):
        """MACs and parameters (:class:`sharing_lab.space.flops.Cost`) of ``arch``'s plain network."""
        return count(self.layout, self.widths_of(arch))

    def macs_range(self) -> tuple[int, int]:
        return macs_range(self.layout)

    def min_completion_macs(self, prefix: Sequence[int]) -> int:
        """MACs of the cheapest architecture that starts with ``prefix`` (the rest at the narrowest candidate)."""
        key = tuple(prefix)
        if key not in self._completion:
            if len(self._completion) > 65536:  # bounded: a big space's prefixes do not all fit
                self._completion.clear()
            self._completion[key] = self.macs(key + (0,) * (self.num_decisions - len(key)))
        return self._completion[key]

    def flops_left(self, prefix: Sequence[int], target: float | None) -> float:
        """Controller input: (F_target − F_min(prefix)) / F_target, 0 without a target."""
        if target is None:
            return 0.0
        return (target - self.min_completion_macs(prefix)) / target

    # --- architectures ----------------------------------------------------------------------------------
    def sample_uniform(self, generator: torch.Generator | None = None) -> Arch:
        """An architecture drawn uniformly (warm-up sampling): one draw per decision, in order."""
        return tuple(int(torch.randint(count_, (1,), generator=generator)) for count_ in self.num_candidates)

    def smallest(self) -> Arch:
        return tuple(0 for _ in self.num_candidates)

    def largest(self) -> Arch:
        return tuple(count_ - 1 for count_ in self.num_candidates)

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture, in lexicographic order of candidate indices."""
        return itertools.product(*(range(count_) for count_ in self.num_candidates))

    def layer_uses(self, arch: Sequence[int]) -> list[LayerUse]:
        """(input candidate, output candidate) of every APS layer under ``arch``, in the supernet's layer order
        (stem; per block its convs, then its projection shortcut if it has one; head; classifier), None for a
        projection that ``arch`` does not need. A fixed side (image channels, classes) is candidate 0."""
        layout = self.layout
        widths = layout.widths_of(arch)

        def index(channels: Channels) -> int:
            return arch[channels.decision] if channels.decision is not None else 0

        uses: list[LayerUse] = [(index(layout.stem.inputs), index(layout.stem.outputs))]
        for block in layout.blocks:
            uses.extend((index(conv.inputs), index(conv.outputs)) for conv in block.convs)
            if block.projection_possible():
                needed = block.projection_needed(widths)
                uses.append((index(block.inputs), index(block.outputs)) if needed else None)
        if layout.head is not None:
            uses.append((index(layout.head.inputs), index(layout.head.outputs)))
        uses.append((index(layout.classifier_in), 0))
        return uses


def layout_of(model: ModelConfig, num_classes: int | None = None, in_channels: int = 3,
              image_size: int | None = None) -> Layout:
    """The layout of ``model`` for data of this shape (None: the model's defaults)."""
    meta = int(model.meta) if isinstance(model.meta, int) or model.meta.isdigit() else model.meta
    return build_layout(model.name, model.granularity, model.widths if model.multipliers is None else None,
                        model.multipliers, meta, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size)


def build_space(config: Config, num_classes: int, in_channels: int, image_size: int) -> SearchSpace:
    """The search space of ``config`` for data of this shape; refuses a meta width or FLOPs target that cannot
    work, and transition settings the scheme cannot follow (:func:`sharing_lab.aps.transition.check_transition`)."""
    space = SearchSpace(layout_of(config.model, num_classes, in_channels, image_size),
                        get_scheme(config.sharing.scheme))
    check_transition(config.sharing, space.scheme)
    for decision in space.decisions:
        needed = space.scheme.required_meta_width(decision.candidates)
        if decision.meta_width < needed:
            raise InputError(f"scheme {space.scheme.name} needs meta width >= {needed} for {decision.name} "
                             f"(candidates {list(decision.candidates)}), got {decision.meta_width}")
    target = config.search.flops_target
    if target is not None:
        smallest, _ = space.macs_range()
        if target < smallest:
            raise InputError(f"FLOPs target {target:.4g} MACs is below the smallest architecture "
                             f"({smallest:,} MACs)")
    return space
