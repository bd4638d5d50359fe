"""1×1 convolutions as a matrix product, for plain networks and APS layers alike: with torch 2.13's CPU build,
oneDNN's 1×1 weight-gradient kernel was seen to corrupt the heap with one thread and to hang with two (DESIGN §3);
the einsum is also faster at these sizes."""

from __future__ import annotations

import torch
from torch import nn


def pointwise(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """1×1 convolution as an einsum over channels: weight (c_out, c_in[, 1, 1]), x (N, c_in, H, W)."""
    if stride != 1:
        x = x[:, :, ::stride, ::stride]
    return torch.einsum("bchw,oc->bohw", x, weight.reshape(weight.shape[0], weight.shape[1]))


class PointwiseConv2d(nn.Conv2d):
    """A bias-free 1×1 ``nn.Conv2d`` whose forward is :func:`pointwise`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise(x, self.weight, self.stride[0])
