"""The APS supernet of a layout: every architecture of the search space over shared meta-weights.

An architecture is one candidate index per decision (paper Section 2.1, a = [a_1, …, a_L]). The supernet runs
it with the candidate kernels of Eq. 2 and the shortcut rule of :mod:`sharing_lab.layout`, so its forward
computes the same function shape as :class:`sharing_lab.plain.PlainNet` at the same widths.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .aps import APSConv2d, APSLinear, TransformSet, transition_plan
from .layout import Block, Channels, ConvSpec, Layout
from .sharing import SharingScheme, phi, transition_layers


class _SideFactory:
    """Makes the transform set of a channel count, drawing init noise from one generator in layer order."""

    def __init__(self, layout: Layout, scheme: SharingScheme, generator: torch.Generator) -> None:
        self.layout, self.scheme, self.generator = layout, scheme, generator

    def __call__(self, channels: Channels) -> TransformSet:
        if channels.decision is None:
            return TransformSet.fixed(channels.fixed)
        decision = self.layout.decisions[channels.decision]
        transforms = self.scheme.make(decision.candidates, decision.meta_width, self.generator)
        return TransformSet(decision.candidates, transforms, self.scheme.transition)


def _index(channels: Channels, arch: Sequence[int]) -> int:
    return arch[channels.decision] if channels.decision is not None else 0


class SuperBlock(nn.Module):
    def __init__(self, block: Block, sides: _SideFactory, generator: torch.Generator, bn_mode: str) -> None:
        super().__init__()
        self.block = block
        self.convs = nn.ModuleList(_aps_conv(conv, sides, generator, bn_mode) for conv in block.convs)
        self.projection = None
        if block.projection_possible():
            self.projection = APSConv2d(
                sides(block.outputs), sides(block.inputs), 1, block.stride, generator, bn_mode
            )

    def forward(self, x: torch.Tensor, arch: Sequence[int], widths: Sequence[int], act) -> torch.Tensor:
        out = x
        for spec, conv in zip(self.block.convs, self.convs):
            out = conv(out, _index(spec.inputs, arch), _index(spec.outputs, arch))
            if spec.act:
                out = act(out)
        if self.block.has_shortcut:
            if self.block.projection_needed(widths):
                out = out + self.projection(x, _index(self.block.inputs, arch), _index(self.block.outputs, arch))
            else:
                out = out + x
        return act(out) if self.block.post_act else out


def _aps_conv(conv: ConvSpec, sides: _SideFactory, generator: torch.Generator, bn_mode: str) -> APSConv2d:
    in_side = None if conv.depthwise else sides(conv.inputs)
    return APSConv2d(sides(conv.outputs), in_side, conv.kernel, conv.stride, generator, bn_mode)


class Supernet(nn.Module):
    """APS supernet of ``layout`` under sharing ``scheme``; ``seed`` fixes the meta-weights and P/Q noise."""

    def __init__(self, layout: Layout, scheme: SharingScheme, seed: int = 0, bn_mode: str = "per_candidate"):
        super().__init__()
        self.layout, self.scheme = layout, scheme
        generator = torch.Generator().manual_seed(seed)
        sides = _SideFactory(layout, scheme, generator)
        self.stem = _aps_conv(layout.stem, sides, generator, bn_mode)
        self.blocks = nn.ModuleList(SuperBlock(block, sides, generator, bn_mode) for block in layout.blocks)
        self.head = _aps_conv(layout.head, sides, generator, bn_mode) if layout.head is not None else None
        self.classifier = APSLinear(sides(layout.classifier_in), layout.num_classes, generator)
        self._act = F.relu6 if layout.activation == "relu6" else F.relu

    @property
    def num_decisions(self) -> int:
        return self.layout.num_decisions

    @property
    def num_candidates(self) -> tuple[int, ...]:
        return tuple(len(d.candidates) for d in self.layout.decisions)

    def check_arch(self, arch: Sequence[int]) -> None:
        if len(arch) != self.num_decisions:
            raise ValueError(f"architecture needs {self.num_decisions} decisions, got {len(arch)}")
        for index, (choice, count) in enumerate(zip(arch, self.num_candidates)):
            if not 0 <= choice < count:
                raise ValueError(f"decision {index}: candidate index {choice} outside 0..{count - 1}")

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        """Logits of architecture ``arch`` (one candidate index per decision)."""
        arch = tuple(int(a) for a in arch)
        widths = self.layout.widths_of(arch)
        spec = self.layout.stem
        out = self._act(self.stem(x, 0, _index(spec.outputs, arch)))
        if self.layout.stem_pool:
            out = F.max_pool2d(out, 3, 2, 1)
        for block in self.blocks:
            out = block(out, arch, widths, self._act)
        if self.head is not None:
            out = self._act(self.head(out, _index(self.layout.head.inputs, arch), 0))
        return self.classifier(out.mean(dim=(2, 3)), _index(self.layout.classifier_in, arch))

    def sample_uniform(self, generator: torch.Generator | None = None) -> tuple[int, ...]:
        """An architecture drawn uniformly from the search space (warm-up sampling)."""
        return tuple(int(torch.randint(count, (1,), generator=generator)) for count in self.num_candidates)

    def smallest(self) -> tuple[int, ...]:
        return tuple(0 for _ in self.num_candidates)

    def largest(self) -> tuple[int, ...]:
        return tuple(count - 1 for count in self.num_candidates)

    def aps_layers(self) -> Iterator[tuple[str, APSConv2d | APSLinear]]:
        """Every APS layer with its module name, in forward order (projections after their block)."""
        for name, module in self.named_modules():
            if isinstance(module, APSConv2d | APSLinear):
                yield name, module

    def meta_weights(self) -> list[nn.Parameter]:
        """The meta-weights 𝒲 of every APS layer (the parameters of Eq. 3's gradient)."""
        return [module.weight for _, module in self.aps_layers()]

    @torch.no_grad()
    def phi_per_layer(self) -> list[float]:
        """Φ_l of Eq. 4 for every APS layer, in :meth:`aps_layers` order."""
        return [float(phi(*module.sides())) for _, module in self.aps_layers()]

    def transition(self, tau: float) -> torch.Tensor:
        """One Eq. 5 step on every layer with movable transforms; returns the Φ of those layers before the step
        (a 0-d tensor on the supernet's device)."""
        if not hasattr(self, "_movable_layers"):
            self._movable_layers = [m for _, m in self.aps_layers()
                                    if m.out_side.movable or (m.in_side is not None and m.in_side.movable)]
        return transition_layers([transition_plan(module) for module in self._movable_layers], tau)

    def batchnorms(self, arch: Sequence[int]) -> list[nn.BatchNorm2d]:
        """The BatchNorm modules that architecture ``arch`` uses."""
        widths = self.layout.widths_of(arch)
        used = [(self.stem, self.layout.stem)]
        for module, block in zip(self.blocks, self.layout.blocks):
            used.extend(zip(module.convs, block.convs))
            if block.projection_needed(widths):
                used.append((module.projection, ConvSpec("projection", block.inputs, block.outputs, 1, 1, 1)))
        if self.head is not None:
            used.append((self.head, self.layout.head))
        return [module.bns[_index(spec.outputs, arch)] for module, spec in used]

    @torch.no_grad()
    def recalibrate_bn(self, arch: Sequence[int], batches: Iterable[torch.Tensor]) -> None:
        """Recompute the running statistics of ``arch``'s BatchNorms as exact averages over ``batches``.

        BN statistics in a supernet are shared by every architecture that uses a candidate, so running
        statistics are wrong for most of them (DESIGN §3); this makes eval-mode BN right for one architecture.
        """
        bns = self.batchnorms(arch)
        saved = [(bn.momentum, bn.training) for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        for batch in batches:
            self.forward(batch, arch)
        for bn, (momentum, training) in zip(bns, saved):
            bn.momentum = momentum
            bn.train(training)
