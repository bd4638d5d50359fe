"""A small generated 10-class problem for tests: smooth class patterns plus noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..registry import register_dataset
from .bundle import DataBundle, Split


def synthetic_bundle(seed: int = 0, image_size: int | None = None, size: int = 256) -> DataBundle:
    """A small learnable 10-class problem: smooth class patterns (4x4 upsampled) plus Gaussian noise, from ``seed``."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InputError(f"synthetic size must be a positive integer, got {size!r}")
    g = torch.Generator().manual_seed(seed)
    s = image_size or 8
    patterns = F.interpolate(torch.randn(10, 3, 4, 4, generator=g), size=(s, s), mode="bilinear",
                             align_corners=False)

    def split(n: int) -> Split:
        labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
        return Split(patterns[labels] + 0.8 * torch.randn(n, 3, s, s, generator=g), labels)

    half = max(1, size // 2)
    return DataBundle("synthetic", 10, split(size), split(half), split(half))



@register_dataset("synthetic")
def synthetic(directory: str | None, seed: int, image_size: int | None, workers: int) -> DataBundle:
    """Generated 10-class patterns plus noise, 3×8×8 by default, 256/128/128 images (tests)."""
    return synthetic_bundle(seed, image_size)
