"""ImageNet ResNet-18 (He et al. 2016): 7×7/2 stem, max-pool, 4 stages of 64/128/256/512 channels."""

from __future__ import annotations

from ...registry import register_model
from ..layout import Layout, ModelSpec, Request
from .resnet import resnet_layout

IMAGENET_MULTIPLIERS = (0.5, 0.75, 1.0, 1.25)  # the paper's ImageNet candidates (× base width)


def _build(request: Request) -> Layout:
    return resnet_layout("resnet18", request, (64, 128, 256, 512), 2, stem_kernel=7, stem_stride=2, stem_pool=True)


@register_model("resnet18")
def resnet18() -> ModelSpec:
    """ImageNet ResNet-18: 2 blocks per stage; block outputs of a stage share a decision (13 decisions)."""
    return ModelSpec("resnet18", _build, granularity="residual", image_size=224, num_classes=1000,
                     multipliers=IMAGENET_MULTIPLIERS)
