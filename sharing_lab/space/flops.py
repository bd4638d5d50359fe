"""Closed-form MACs and parameter counts of any width configuration of a layout.

MACs count every convolution (3×3, depthwise, 1×1 projections) and the classifier; FLOPs = 2 × MACs.
Parameters count conv and linear weights, the classifier bias and BatchNorm's affine pair, i.e. exactly the
``numel`` of the plain network that :func:`sharing_lab.space.plain.build_plain` returns. Pure Python over a few dozen
layers, cheap enough to call for every architecture the controller samples (reward of Section 2.1, Eq. 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .layout import ConvSpec, Layout


@dataclass(frozen=True)
class Cost:
    """MACs and parameters of one network."""

    macs: int
    params: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _conv_cost(conv: ConvSpec, widths: Sequence[int]) -> tuple[int, int]:
    c_in, c_out = conv.inputs.width(widths), conv.outputs.width(widths)
    per_output = conv.kernel * conv.kernel * (1 if conv.depthwise else c_in)
    weights = per_output * c_out
    return weights * conv.out_size * conv.out_size, weights + 2 * c_out


def count(layout: Layout, widths: Sequence[int]) -> Cost:
    """MACs and parameters of ``layout`` with one width per decision."""
    macs, params = 0, 0
    for conv in layout.convs():
        conv_macs, conv_params = _conv_cost(conv, widths)
        macs, params = macs + conv_macs, params + conv_params
    for block in layout.blocks:
        if block.projection_needed(widths):
            c_in, c_out = block.inputs.width(widths), block.outputs.width(widths)
            out_size = (block.in_size - 1) // block.stride + 1
            macs += c_in * c_out * out_size * out_size
            params += c_in * c_out + 2 * c_out
    features = layout.classifier_in.width(widths)
    macs += features * layout.num_classes
    params += features * layout.num_classes + layout.num_classes
    return Cost(macs, params)


def count_macs(layout: Layout, widths: Sequence[int]) -> int:
    """MACs of ``layout`` with one width per decision."""
    return count(layout, widths).macs


def macs_range(layout: Layout) -> tuple[int, int]:
    """MACs of the narrowest and the widest architecture of the search space."""
    smallest = [min(d.candidates) for d in layout.decisions]
    largest = [max(d.candidates) for d in layout.decisions]
    return count_macs(layout, smallest), count_macs(layout, largest)
