"""The interface every dataset follows (checked by the type checker and by a registry-wide test), and loading a
registered dataset by name.

Splits follow the paper's bi-level search (Section 2.1, DESIGN §3): ``train`` trains the meta-weights, ``val``
is the held-out split for the controller's reward and for selection, ``test`` only reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from ..errors import InputError
from ..registry import DATASETS

SPLITS = ("train", "val", "test")


@runtime_checkable
class Dataset(Protocol):
    """Three splits of labelled images; batches come out normalised float32 on the requested device."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    augment: bool

    def split_size(self, split: str) -> int:
        """Number of examples in ``split``."""

    def num_batches(self, split: str, batch_size: int, drop_last: bool = True) -> int:
        """Batches of one pass over ``split``."""

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                drop_last: bool = True, device: str | torch.device = "cpu", augment: bool | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over ``split`` as ``(x, y)``; all randomness drawn from ``generator`` when called;
        ``shard=(rank, world_size)`` yields that rank's contiguous slice of each global batch."""

    def batch(self, split: str, indices: torch.Tensor, device: str | torch.device = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The unaugmented, normalised examples ``indices`` of ``split`` (rewards and probes)."""


def dataset_names() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


def load_data(name: str, directory: str | None = None, seed: int = 0, image_size: int | None = None,
              workers: int = 0, train_images: int | None = None) -> Dataset:
    """Load the registered dataset ``name``; ``seed`` only affects datasets that are generated (synthetic),
    ``workers`` only those streamed from disk (ImageNet); ``train_images``: a fixed stratified subset of the
    training split (:meth:`~sharing_lab.data.bundle.DataBundle.with_train_subset`; in-memory datasets only)."""
    for key, value in (("image_size", image_size), ("train_images", train_images)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InputError(f"{key} must be a positive integer or None, got {value!r}")
    data = DATASETS.get(name)(directory=directory, seed=seed, image_size=image_size, workers=workers)
    if train_images is None:
        return data
    if not hasattr(data, "with_train_subset"):
        raise InputError(f"data.train_images: dataset {name!r} is not held in memory; it takes no subset")
    return data.with_train_subset(train_images)
