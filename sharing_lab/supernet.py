"""The APS supernet of a search space: every architecture over shared meta-weights (paper Section 2.1).

It runs an architecture with the candidate kernels of Eq. 2 and the shortcut rule of :mod:`sharing_lab.layout`,
so its forward computes the same function shape as :class:`sharing_lab.plain.PlainNet` at the same widths. What
each layer uses under an architecture comes from :meth:`sharing_lab.space.SearchSpace.layer_uses`, the one walk
that the forward, the BatchNorm list and the probes share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .aps import APSConv2d, APSLinear, TransformSet, transition_plan
from .layout import Block, Channels, ConvSpec
from .sharing import phi
from .space import LayerUse, SearchSpace


class _SideFactory:
    """Makes the transform set of a channel count, drawing init noise from one generator in layer order."""

    def __init__(self, space: SearchSpace, generator: torch.Generator) -> None:
        self.space, self.generator = space, generator

    def __call__(self, channels: Channels) -> TransformSet:
        if channels.decision is None:
            return TransformSet.fixed(channels.fixed)
        decision = self.space.decisions[channels.decision]
        transforms = self.space.scheme.make(decision.candidates, decision.meta_width, self.generator)
        return TransformSet(decision.candidates, transforms, self.space.scheme.transition)


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

    def forward(self, x: torch.Tensor, uses: Iterator[LayerUse], act) -> torch.Tensor:
        """The block under the next entries of ``uses`` (its convs', then its projection's)."""
        out = x
        for spec, conv in zip(self.block.convs, self.convs):
            out = conv(out, *next(uses))
            if spec.act:
                out = act(out)
        if self.block.has_shortcut:
            use = next(uses) if self.projection is not None else None
            out = out + (self.projection(x, *use) if use is not None else x)
        return act(out) if self.block.post_act else out


def _aps_conv(conv: ConvSpec, sides: _SideFactory, generator: torch.Generator, bn_mode: str) -> APSConv2d:
    in_side = None if conv.depthwise else sides(conv.inputs)
    return APSConv2d(sides(conv.outputs), in_side, conv.kernel, conv.stride, generator, bn_mode)


class Supernet(nn.Module):
    """APS supernet of ``space`` (a layout under a sharing scheme); ``seed`` fixes the meta-weights and P/Q noise."""

    def __init__(self, space: SearchSpace, seed: int = 0, bn_mode: str = "per_candidate"):
        super().__init__()
        self.space = space
        layout = space.layout
        generator = torch.Generator().manual_seed(seed)
        sides = _SideFactory(space, generator)
        self.stem = _aps_conv(layout.stem, sides, generator, bn_mode)
        self.blocks = nn.ModuleList(SuperBlock(block, sides, generator, bn_mode) for block in layout.blocks)
        self.head = _aps_conv(layout.head, sides, generator, bn_mode) if layout.head is not None else None
        self.classifier = APSLinear(sides(layout.classifier_in), layout.num_classes, generator)
        self._act = F.relu6 if layout.activation == "relu6" else F.relu
        self._layers = [module for _, module in self.aps_layers()]
        self._movable = [m for m in self._layers if m.out_side.movable or (m.in_side is not None and m.in_side.movable)]

    @property
    def layout(self):
        return self.space.layout

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        """Logits of architecture ``arch`` (one candidate index per decision)."""
        uses = iter(self.space.layer_uses(tuple(int(a) for a in arch)))
        out = self._act(self.stem(x, *next(uses)))
        if self.layout.stem_pool:
            out = F.max_pool2d(out, 3, 2, 1)
        for block in self.blocks:
            out = block(out, uses, self._act)
        if self.head is not None:
            out = self._act(self.head(out, *next(uses)))
        return self.classifier(out.mean(dim=(2, 3)), next(uses)[0])

    def aps_layers(self) -> Iterator[tuple[str, APSConv2d | APSLinear]]:
        """Every APS layer with its module name, in forward order (projections after their block's convs)."""
        for name, module in self.named_modules():
            if isinstance(module, APSConv2d | APSLinear):
                yield name, module

    @torch.no_grad()
    def phi_per_layer(self) -> list[float]:
        """Φ_l of Eq. 4 for every APS layer, in :meth:`aps_layers` order."""
        return [float(phi(*module.sides())) for module in self._layers]

    def transition(self, tau: float) -> torch.Tensor | None:
        """One step of the scheme's move (Eq. 5 for transitionary) on every layer with movable transforms;
        returns the Φ of those layers before the step (a 0-d tensor on the supernet's device) or None."""
        return self.space.scheme.move([transition_plan(module) for module in self._movable], tau)

    def batchnorms(self, arch: Sequence[int]) -> list[nn.BatchNorm2d]:
        """The BatchNorm modules that architecture ``arch`` uses."""
        uses = self.space.layer_uses(arch)
        return [module.bns[use[1]] for module, use in zip(self._layers, uses)
                if use is not None and isinstance(module, APSConv2d)]

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
