"""Datasets held in memory (:class:`DataBundle`): splits, normalisation, shuffled and augmented batches.

Splits follow the paper's bi-level search (Section 2.1, DESIGN.md §3): ``train`` trains the meta-weights, ``val``
is the held-out split for the controller's reward and for selection, ``test`` only reports. The datasets
themselves (digits, synthetic, CIFAR-10, ImageNet) are registered one file each in :mod:`sharing_lab.data`.
Nothing is downloaded. Every bad input raises :class:`~sharing_lab.errors.InputError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .protocol import SPLITS


@dataclass
class Split:
    """One split held in memory: images (N, C, H, W), uint8 (cifar10) or float32 already normalised; labels int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.labels.dim() != 1 or len(self.images) != len(self.labels):
            raise InputError(f"Split needs images (N,C,H,W) and labels (N,), got {tuple(self.images.shape)} "
                             f"and {tuple(self.labels.shape)}")
        if self.labels.dtype != torch.int64:
            raise InputError(f"Split labels must be int64, got {self.labels.dtype}")

    def __len__(self) -> int:
        return len(self.labels)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect indices in [-(size-1), 2(size-1)] into [0, size-1], like ``F.pad(mode="reflect")``."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _crop_flip(images: torch.Tensor, padding: int, oy: torch.Tensor, ox: torch.Tensor,
               flip: torch.Tensor) -> torch.Tensor:
    """Crop at offsets (oy, ox) of the reflect-padded images, flipping where ``flip``: one gather, no padding copy."""
    n, c, h, w = images.shape
    dev = images.device
    rows = _reflect(oy.to(dev)[:, None] + torch.arange(h, device=dev) - padding, h)  # (N, H)
    j = torch.arange(w, device=dev)
    j = torch.where(flip.to(dev)[:, None], w - 1 - j, j)  # (N, W): flipped output column reads column w-1-j
    cols = _reflect(ox.to(dev)[:, None] + j - padding, w)
    n_idx = torch.arange(n, device=dev)[:, None, None, None]
    c_idx = torch.arange(c, device=dev)[None, :, None, None]
    return images[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


def _draw_crop_flip(n: int, padding: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    dev = generator.device if generator is not None else torch.device("cpu")
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    return oy, ox, flip


def random_crop_flip(images: torch.Tensor, padding: int = 4,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """CIFAR augmentation of a batch (notes, Schedules): reflect-pad ``padding``, random crop back, flip with p=0.5.

    Vectorised (one advanced-indexing gather), any dtype (uint8 kept) and device; the offsets and flips are drawn
    on the generator's device (CPU by default) and moved. Same shape and dtype out.
    """
    if images.dim() != 4:
        raise ValueError(f"random_crop_flip needs (N, C, H, W) images, got shape {tuple(images.shape)}")
    if not 0 <= padding < min(images.shape[2], images.shape[3]):
        raise ValueError(f"padding must be in [0, {min(images.shape[2:])}) for reflect padding, got {padding}")
    return _crop_flip(images, padding, *_draw_crop_flip(len(images), padding, generator))


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; a host-to-GPU copy goes through pinned memory without blocking, so the host
    does not wait for the GPU work already queued (a copy from pageable memory would)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def shard_slice(start: int, end: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous part of the global batch ``[start, end)`` (ceil-sized parts, the last shorter)."""
    local = -(-(end - start) // world_size)
    return slice(start + rank * local, min(start + (rank + 1) * local, end))


def check_shard(shard: tuple[int, int]) -> None:
    """Refuse a shard that is not (rank, world_size) with 0 <= rank < world_size."""
    rank, world_size = shard
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")


def check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size!r}")


def count_batches(n: int, batch_size: int, drop_last: bool) -> int:
    check_batch_size(batch_size)
    return n // batch_size if drop_last else math.ceil(n / batch_size)


class DataBundle:
    """A dataset held in memory with its three splits; ``batches`` serves shuffled, normalised batches.

    ``mean``/``std`` (per channel, on the 0..1 scale) normalise uint8 images as ``(x/255 - mean)/std``; float
    images are already normalised (digits, synthetic) and their ``mean``/``std`` are the identity (0 and 1).
    """

    def __init__(self, name: str, num_classes: int, train: Split, val: Split, test: Split, augment: bool = False,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> None:
        self.name, self.num_classes = name, num_classes
        self.train, self.val, self.test = train, val, test
        self.in_channels = int(train.images.shape[1])
        self.image_size = int(train.images.shape[2])
        self.augment = augment
        self.mean = tuple(mean) if mean is not None else (0.0,) * self.in_channels
        self.std = tuple(std) if std is not None else (1.0,) * self.in_channels
        self._cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._affine: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def with_train_subset(self, count: int) -> DataBundle:
        """The same bundle with a fixed stratified subset of ``count`` training images (random state 0, whatever
        the run's seed, so searches and their ground truth see the same images; normalisation unchanged)."""
        from sklearn.model_selection import train_test_split

        labels = self.train.labels.numpy()
        if count >= len(labels):
            if count > len(labels):
                raise InputError(f"data.train_images = {count:,}: the training split of {self.name} holds "
                                 f"{len(labels):,}")
            return self
        if count < self.num_classes:
            raise InputError(f"data.train_images = {count}: a stratified subset needs at least one image per class "
                             f"({self.num_classes})")
        keep, _ = train_test_split(np.arange(len(labels)), train_size=count, random_state=0, stratify=labels)
        index = torch.from_numpy(np.sort(keep))
        train = Split(self.train.images[index], self.train.labels[index])
        return DataBundle(self.name, self.num_classes, train, self.val, self.test, self.augment, self.mean, self.std)

    def __repr__(self) -> str:
        sizes = "/".join(str(len(getattr(self, s))) for s in SPLITS)
        return (f"DataBundle({self.name!r}, {self.num_classes} classes, {self.in_channels}x{self.image_size}x"
                f"{self.image_size}, train/val/test {sizes}, augment={self.augment})")

    def split_size(self, split: str) -> int:
        check_split(split)
        return len(getattr(self, split))

    def num_batches(self, split: str, batch_size: int, drop_last: bool = True) -> int:
        check_split(split)
        return count_batches(len(getattr(self, split)), batch_size, drop_last)

    def _on_device(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (split, str(device))
        if key not in self._cache:  # moved once and kept there (uint8 stays uint8: 4x less device memory)
            s = getattr(self, split)
            self._cache[key] = (s.images.to(device), s.labels.to(device))
        return self._cache[key]

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x.float()
        key = str(x.device)
        if key not in self._affine:  # (x/255 - mean)/std as one fused x*scale + shift, kept on the device
            scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(1, -1, 1, 1)
            shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(1, -1, 1, 1)
            self._affine[key] = (scale.to(x.device), shift.to(x.device))
        scale, shift = self._affine[key]
        return torch.addcmul(shift, x.float(), scale)

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                drop_last: bool = True, device: str | torch.device = "cpu", augment: bool | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x float32 normalised, y int64)`` on ``device`` for one pass over ``split``.

        All randomness (the permutation, then the crop offsets and flips of every image) is drawn from
        ``generator`` when this method is called, not lazily, so the generator's state after the call does not
        depend on how many batches are consumed: restoring a saved ``generator.get_state()`` reproduces the pass.
        ``augment`` defaults to ``self.augment and split == "train"``. ``shard=(rank, world_size)`` yields that
        rank's contiguous ``batch_size / world_size`` slice of each global batch
        (:mod:`sharing_lab.compute.distributed`).
        On CUDA the images stay there as uint8 and are cropped, flipped and normalised there, a batch at a time.
        """
        check_split(split)
        check_shard(shard)
        n_batches = self.num_batches(split, batch_size, drop_last)
        dev = torch.device(device)
        images, labels = self._on_device(split, dev)
        n = len(labels)
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=gen_dev) if shuffle else torch.arange(n)
        order = _to_device(order, dev)
        if augment is None:
            augment = self.augment and split == "train"
        params = tuple(_to_device(p, dev) for p in _draw_crop_flip(n, 4, generator)) if augment else None
        return self._iterate(images, labels, order, params, batch_size, n_batches, shard)

    def batch(self, split: str, indices: torch.Tensor, device: str | torch.device = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The unaugmented, normalised examples ``indices`` of ``split`` on ``device`` (rewards and probes)."""
        check_split(split)
        images, labels = self._on_device(split, torch.device(device))
        indices = _to_device(indices, images.device)
        return self._normalise(images[indices]), labels[indices]

    def _iterate(self, images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor,
                 params: tuple[torch.Tensor, ...] | None, batch_size: int, n_batches: int,
                 shard: tuple[int, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(n_batches):
            sel = shard_slice(b * batch_size, min((b + 1) * batch_size, len(order)), *shard)
            idx = order[sel]
            x = images[idx]
            if params is not None:
                x = _crop_flip(x, 4, *(p[sel] for p in params))
            yield self._normalise(x), labels[idx]
