"""Plain networks from a layout and one width per decision: what an exported architecture is retrained as.

Standard modules throughout (``nn.Conv2d``, ``nn.BatchNorm2d`` with affine parameters, ``nn.Linear``) and the
standard shortcuts of :mod:`sharing_lab.space.layout` (identity where widths agree at stride 1, 1×1 conv + BN
otherwise). 1×1 convolutions run as a matrix product (:class:`sharing_lab.compute.pointwise.PointwiseConv2d`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..compute.pointwise import PointwiseConv2d
from .layout import Block, ConvSpec, Layout


def activation(name: str) -> nn.Module:
    return nn.ReLU6(inplace=True) if name == "relu6" else nn.ReLU(inplace=True)


def conv_module(conv: ConvSpec, c_in: int, c_out: int) -> nn.Module:
    """The plain conv layer of ``conv`` (no BN)."""
    if conv.kernel == 1 and not conv.depthwise:
        return PointwiseConv2d(c_in, c_out, conv.stride)
    groups = c_out if conv.depthwise else 1
    return nn.Conv2d(c_in, c_out, conv.kernel, conv.stride, conv.kernel // 2, groups=groups, bias=False)


class ConvBN(nn.Sequential):
    def __init__(self, conv: ConvSpec, widths: Sequence[int], act: str) -> None:
        c_in, c_out = conv.inputs.width(widths), conv.outputs.width(widths)
        layers = [conv_module(conv, c_in, c_out), nn.BatchNorm2d(c_out)]
        if conv.act:
            layers.append(activation(act))
        super().__init__(*layers)


class PlainBlock(nn.Module):
    def __init__(self, block: Block, widths: Sequence[int], act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(*(ConvBN(conv, widths, act) for conv in block.convs))
        self.has_shortcut = block.has_shortcut
        self.shortcut: nn.Module | None = None
        if block.projection_needed(widths):
            c_in, c_out = block.inputs.width(widths), block.outputs.width(widths)
            self.shortcut = nn.Sequential(PointwiseConv2d(c_in, c_out, block.stride), nn.BatchNorm2d(c_out))
        self.post_act = activation(act) if block.post_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.has_shortcut:
            out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return self.post_act(out) if self.post_act is not None else out


class PlainNet(nn.Module):
    """The standard network of ``layout`` at ``widths`` (one per decision)."""

    def __init__(self, layout: Layout, widths: Sequence[int]) -> None:
        super().__init__()
        layout.check_widths(widths)
        self.widths = tuple(int(w) for w in widths)
        act = layout.activation
        stem = [ConvBN(layout.stem, widths, act)]
        if layout.stem_pool:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*(PlainBlock(block, widths, act) for block in layout.blocks))
        self.head = ConvBN(layout.head, widths, act) if layout.head is not None else nn.Identity()
        self.classifier = nn.Linear(layout.classifier_in.width(widths), layout.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.blocks(self.stem(x)))
        return self.classifier(features.mean(dim=(2, 3)))


def build_plain(layout: Layout, widths: Sequence[int]) -> PlainNet:
    """A plain ``nn.Module`` for ``layout`` with one width per decision (for retraining and export)."""
    return PlainNet(layout, widths)
