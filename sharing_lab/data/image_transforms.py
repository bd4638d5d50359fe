"""ImageNet image transforms in torch ops, without torchvision (Pillow only decodes files).

Each function follows the definition of its torchvision namesake (``torchvision.transforms``, v0.15+ tensor
path): ``RandomResizedCrop`` samples its box with the same algorithm (ten area / log-ratio draws, then the central
crop), ``Resize(int)`` maps the shorter side to ``size`` with the long side truncated, ``CenterCrop`` rounds its
offsets the same way and zero-pads an image smaller than the crop, resizing is bilinear with antialiasing
(``F.interpolate(mode="bilinear", antialias=True, align_corners=False)``, what torchvision does for tensors and
what PIL's bilinear filter does for PIL images). Images are ``(C, H, W)`` tensors, or ``(N, C, H, W)`` where
noted; uint8 holds 0..255, float holds 0..1 before :func:`normalize`.

A uint8 image on the CPU is resized by torch's uint8 kernel (fixed-point, like PIL's: it matches PIL's bilinear
resize to within one level on a few pixels in a thousand, and is about 4x faster than resizing in float); other
images are resized in float (uint8 elsewhere is rounded back). :func:`train_transform` and
:func:`eval_transform` therefore compute what torchvision's PIL pipeline computes: resize in 0..255, then
``ToTensor`` and ``Normalize``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode(path: str | PathLike) -> torch.Tensor:
    """The RGB pixels of the image file ``path`` as a uint8 ``(3, H, W)`` tensor (Pillow decodes; grey, palette
    and CMYK images are converted to RGB). A file that is not a readable image raises :class:`InputError`."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except Exception as e:  # missing, truncated, not an image, decompression bomb: all one kind of bad input
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise InputError(f"{path}: not a readable image ({reason})") from None
    if not pixels.flags.writeable:  # Pillow hands out a read-only buffer; torch wants to own writable memory
        pixels = pixels.copy()
    return torch.from_numpy(pixels).permute(2, 0, 1)


def random_resized_crop_params(height: int, width: int, generator: torch.Generator | None,
                               scale: tuple[float, float] = (0.08, 1.0),
                               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """The box ``(top, left, h, w)`` of ``RandomResizedCrop`` in a ``height`` x ``width`` image.

    Up to ten times: draw an area fraction uniformly in ``scale`` and an aspect ratio (w/h) log-uniformly in
    ``ratio``; the first box of that area and ratio that fits is placed uniformly at random. If none fits, the
    central crop of the whole image clamped to the ratio range. All draws come from ``generator`` (CPU).
    """
    if height < 1 or width < 1:
        raise ValueError(f"random_resized_crop_params needs a non-empty image, got {height}x{width}")
    if scale[0] > scale[1] or ratio[0] > ratio[1]:
        raise ValueError(f"scale and ratio must be (min, max) ranges, got scale {scale} and ratio {ratio}")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(log_lo, log_hi, generator=generator).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _interpolate(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of ``img`` (C, H, W) or (N, C, H, W) to ``size`` = (h, w), dtype kept: uint8
    on the CPU by torch's uint8 kernel, anything else in float (an integer image rounded back)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    batched = img.dim() == 4
    x = img if batched else img.unsqueeze(0)
    if x.dtype == torch.uint8 and x.device.type == "cpu":
        out = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    else:
        out = F.interpolate(x if x.is_floating_point() else x.float(), size=size, mode="bilinear",
                            antialias=True, align_corners=False)
        if not img.is_floating_point():
            out = out.round_().clamp_(0, 255).to(img.dtype)
    return out if batched else out.squeeze(0)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The (h, w) of ``Resize(size)`` on a ``height`` x ``width`` image: the shorter side becomes ``size``, the
    longer ``int(size * long / short)`` (truncated, like torchvision)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """``Resize(size)``: the shorter side of ``img`` (C, H, W) or (N, C, H, W) scaled to ``size`` with the aspect
    kept (:func:`resized_shape`), bilinear with antialiasing; uint8 stays uint8, float stays float."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"resize needs a positive integer size, got {size!r}")
    return _interpolate(img, resized_shape(int(img.shape[-2]), int(img.shape[-1]), size))


def center_crop(img: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``CenterCrop(size)``: the central ``size`` x ``size`` (or (h, w)) window of ``img``, offsets
    ``round((H - h) / 2)`` and ``round((W - w) / 2)``; an image smaller than the window is zero-padded first."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = int(img.shape[-2]), int(img.shape[-1])
    if th > h or tw > w:
        pad = ((tw - w) // 2 if tw > w else 0, (tw - w + 1) // 2 if tw > w else 0,
               (th - h) // 2 if th > h else 0, (th - h + 1) // 2 if th > h else 0)
        img = F.pad(img, pad, value=0)
        h, w = int(img.shape[-2]), int(img.shape[-1])
        if (h, w) == (th, tw):
            return img
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return img[..., top:top + th, left:left + tw]


def hflip(img: torch.Tensor) -> torch.Tensor:
    """``img`` mirrored left to right (its last dimension reversed)."""
    return img.flip(-1)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 → float32 0..1 (``x / 255``); a floating image is returned as float32 unchanged in value."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"to_float expects a uint8 or floating image, got {x.dtype}")
    return x.to(torch.float32)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean[c]) / std[c]`` per channel ``c`` (dimension -3) of the float image(s) ``x``; a new tensor."""
    if not x.is_floating_point():
        raise TypeError(f"normalize expects a floating image (see to_float), got {x.dtype}")
    if len(mean) != x.shape[-3] or len(std) != x.shape[-3]:
        raise ValueError(f"normalize: {x.shape[-3]} channels but {len(mean)} means and {len(std)} stds")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


def _check_uint8_image(img: torch.Tensor, name: str) -> None:
    if img.dtype != torch.uint8 or img.dim() != 3:
        raise TypeError(f"{name} expects a uint8 (C, H, W) image, got {img.dtype} {tuple(img.shape)}")


def train_transform(img_uint8: torch.Tensor, size: int, generator: torch.Generator | None,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``RandomResizedCrop(size)`` + ``RandomHorizontalFlip(0.5)`` + ``ToTensor`` + ``Normalize(mean, std)`` of a
    uint8 (3, H, W) image: float32 (3, size, size). The box, then the flip, are drawn from ``generator``."""
    _check_uint8_image(img_uint8, "train_transform")
    top, left, h, w = random_resized_crop_params(int(img_uint8.shape[1]), int(img_uint8.shape[2]), generator)
    x = _interpolate(img_uint8[:, top:top + h, left:left + w], (size, size))
    if torch.rand(1, generator=generator).item() < 0.5:
        x = hflip(x)
    return normalize(to_float(x), mean, std).contiguous()


def eval_transform(img_uint8: torch.Tensor, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``Resize(size * 256 // 224)`` + ``CenterCrop(size)`` + ``ToTensor`` + ``Normalize(mean, std)`` of a uint8
    (3, H, W) image: float32 (3, size, size), deterministic."""
    _check_uint8_image(img_uint8, "eval_transform")
    x = center_crop(resize(img_uint8, size * 256 // 224), size)
    return normalize(to_float(x), mean, std).contiguous()
