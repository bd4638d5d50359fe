"""CIFAR ResNet-20 and ResNet-56 (He et al. 2016, Section 4.2): 3 stages of 16/32/64 channels, 3×3 stem."""

from __future__ import annotations

from ...registry import register_model
from ..layout import Layout, ModelSpec, Request
from .resnet import resnet_layout

CIFAR_WIDTHS = (16, 32, 64, 96)  # the paper's CIFAR candidates


def _cifar_resnet(name: str, per_stage: int) -> ModelSpec:
    def build(request: Request) -> Layout:
        return resnet_layout(name, request, (16, 32, 64), per_stage, stem_kernel=3, stem_stride=1, stem_pool=False)

    return ModelSpec(name, build, granularity="conv", image_size=32, num_classes=10, widths=CIFAR_WIDTHS)


@register_model("resnet20")
def resnet20() -> ModelSpec:
    """CIFAR ResNet-20: 3 blocks per stage, 19 convs (one decision each by default)."""
    return _cifar_resnet("resnet20", 3)


@register_model("resnet56")
def resnet56() -> ModelSpec:
    """CIFAR ResNet-56: 9 blocks per stage, 55 convs (one decision each by default)."""
    return _cifar_resnet("resnet56", 9)
