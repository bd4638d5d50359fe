"""ImageNet from class folders, streamed from disk and decoded with Pillow; transforms in torch (no torchvision).

Layout: ``<dir>/train/<class>/*.jpg`` and ``<dir>/val/<class>/*.jpg``. Classes are the sorted folder names of
``train/``; per class the first half of its sorted files is the search's ``train`` split (meta-weights), the
second half its held-out ``val`` split (rewards, selection); ``<dir>/val`` (the official validation set) is the
``test`` split, which only reports. Train batches are ``RandomResizedCrop`` + flip
(:func:`sharing_lab.data.image_transforms.train_transform`), everything else ``Resize`` + ``CenterCrop``
(:func:`~sharing_lab.data.image_transforms.eval_transform`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .bundle import check_batch_size, check_shard, check_split, count_batches, shard_slice
from .image_transforms import IMAGENET_MEAN, IMAGENET_STD, decode, eval_transform, train_transform
from .protocol import SPLITS

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
DEFAULT_IMAGE_SIZE = 224


@dataclass
class FileSplit:
    """A split kept on disk: image paths and their labels (int64)."""

    paths: list[str]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.paths)


def scan_image_folder(root: Path) -> tuple[list[str], FileSplit, FileSplit, FileSplit]:
    """``(classes, train, val, test)`` of the class-folder tree ``root``: classes from ``root/train``; per class
    the first half of its sorted image files trains, the second half is val; ``root/val`` is the test split."""
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise InputError(f"{root}: an ImageNet directory needs train/<class>/ and val/<class>/ ({sub}/ missing)")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"{root / 'train'}: no class folders")

    def files(folder: Path) -> list[str]:
        if not folder.is_dir():
            return []
        with os.scandir(folder) as entries:  # the directory listing's types: no extra stat per image
            found = [entry for entry in entries if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES]
        odd = [entry.path for entry in found if not entry.is_file()]  # a FIFO or device would block the loader
        if odd:
            raise InputError(f"{odd[0]}: not a regular file ({len(odd)} such entries in {folder}); an image must be "
                             "a file")
        return sorted(entry.path for entry in found)

    tr: tuple[list[str], list[int]] = ([], [])
    va: tuple[list[str], list[int]] = ([], [])
    te: tuple[list[str], list[int]] = ([], [])
    for k, c in enumerate(classes):
        fs = files(root / "train" / c)
        if len(fs) < 2:
            raise InputError(f"{root / 'train' / c}: needs at least 2 images to split into train and val")
        half = len(fs) // 2
        for (paths, labels), chunk in ((tr, fs[:half]), (va, fs[half:]), (te, files(root / "val" / c))):
            paths.extend(chunk)
            labels.extend([k] * len(chunk))
    extra = sorted({p.name for p in (root / "val").iterdir() if p.is_dir()} - set(classes))
    if extra:
        raise InputError(f"{root / 'val'}: class folders not in train/: {', '.join(extra[:5])}")
    return classes, *(FileSplit(p, torch.tensor(lab, dtype=torch.int64)) for p, lab in (tr, va, te))


def batch_indices(order: list[int], batch_size: int, drop_last: bool,
                   shard: tuple[int, int]) -> list[list[int]]:
    """The indices of every batch of one pass over ``order``: this rank's slice of each global batch."""
    end = len(order) // batch_size * batch_size if drop_last else len(order)
    return [order[shard_slice(start, min(start + batch_size, end), *shard)] for start in range(0, end, batch_size)]


@contextmanager
def _one_intraop_thread() -> Iterator[None]:
    """torch ops of this thread on one intra-op thread meanwhile, as in a DataLoader worker: one image's ops are
    too small to split (splitting them cost 5-40x on a 2-core machine); the previous setting is restored."""
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Samples(torch.utils.data.Dataset):
    """Sample ``i`` of a split: its decoded, transformed image and label. Augmented samples draw from a generator
    seeded ``base_seed + i``, so an image's crop and flip do not depend on the order, the batch or the worker.

    Paths and labels are numpy arrays, not lists of Python objects: forked workers reading them touch no reference
    counts, so they keep sharing the parent's pages instead of copying them (DataLoader's copy-on-read problem).
    """

    def __init__(self, paths: np.ndarray, labels: np.ndarray, image_size: int, augment: bool,
                 base_seed: int) -> None:
        self.paths, self.labels = paths, labels
        self.image_size, self.augment, self.base_seed = image_size, augment, base_seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | str:
        try:
            img = decode(os.fsdecode(self.paths[i]))
        except InputError as error:  # handed to the main process as text: one line there, whatever the worker
            return str(error)
        label = int(self.labels[i])
        if self.augment:
            generator = torch.Generator().manual_seed(self.base_seed + i)
            return train_transform(img, self.image_size, generator), label
        return eval_transform(img, self.image_size), label


def _decode_chunk(samples: _Samples, items: list[int]) -> list:
    """``samples[i]`` for each of ``items``, on one intra-op thread (the calling thread's setting, restored)."""
    with _one_intraop_thread():
        return [samples[i] for i in items]


class _Collate:
    """Stacks samples into ``(x float32 (B, 3, S, S), y int64 (B,))``; a sample that failed to decode makes the
    batch that sample's error text (raised in the main process); an empty batch is an empty pair."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, samples: list) -> tuple[torch.Tensor, torch.Tensor] | str:
        for sample in samples:
            if isinstance(sample, str):
                return sample
        if not samples:
            return torch.empty(0, 3, self.image_size, self.image_size), torch.empty(0, dtype=torch.int64)
        return torch.stack([x for x, _ in samples]), torch.tensor([y for _, y in samples], dtype=torch.int64)


def _to_device(batch: tuple[torch.Tensor, torch.Tensor] | str, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, str):
        raise InputError(batch)
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


class ImageFolderBundle:
    """ImageNet-style class folders streamed from disk: the :class:`~sharing_lab.data.protocol.Dataset`
    protocol, with ``train``/``val``/``test`` as :class:`FileSplit` (paths and labels).

    ``workers`` decoding processes feed :meth:`batches` (a ``DataLoader``; 0 decodes in this process) and as many
    threads decode the images of :meth:`batch`. Images are ``image_size`` square (default 224), normalised with
    the ImageNet mean and std.
    """

    name = "imagenet"
    in_channels = 3
    augment = True

    def __init__(self, directory: str | Path, image_size: int | None = None, workers: int = 4) -> None:
        if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool)
                                       or image_size < 1):
            raise InputError(f"image_size must be a positive integer or None, got {image_size!r}")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise InputError(f"data.workers must be a non-negative integer, got {workers!r}")
        root = Path(directory)
        if not root.is_dir():
            raise InputError(f"{root}: ImageNet directory does not exist or is not a directory")
        self.root = root
        self.classes, self.train, self.val, self.test = scan_image_folder(root)
        self.num_classes = len(self.classes)
        self.image_size = image_size or DEFAULT_IMAGE_SIZE
        self.workers = workers
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self._threads: ThreadPoolExecutor | None = None
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __repr__(self) -> str:
        sizes = "/".join(str(self.split_size(s)) for s in SPLITS)
        return (f"ImageFolderBundle({str(self.root)!r}, {self.num_classes} classes, 3x{self.image_size}x"
                f"{self.image_size}, train/val/test {sizes}, workers={self.workers})")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_threads"] = None  # a thread pool does not travel to another process
        return state

    def _split(self, split: str) -> FileSplit:
        check_split(split)
        return getattr(self, split)

    def split_size(self, split: str) -> int:
        """Number of images in ``split``."""
        return len(self._split(split))

    def num_batches(self, split: str, batch_size: int, drop_last: bool = True) -> int:
        """Batches of one pass over ``split``: ``n // batch_size``, or its ceiling without ``drop_last``."""
        return count_batches(self.split_size(split), batch_size, drop_last)

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                drop_last: bool = True, device: str | torch.device = "cpu", augment: bool | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over ``split`` as ``(x float32 (B, 3, S, S) normalised, y int64)`` on ``device``.

        Drawn from ``generator`` when this is called (not lazily): the permutation (if ``shuffle``), then one base
        seed; image ``i``'s crop and flip come from a generator seeded ``base seed + i``, so a pass depends on the
        generator's state only, not on ``workers``. ``augment`` defaults to ``split == "train"``.
        ``shard=(rank, world_size)`` yields that rank's contiguous slice of each global batch (same slices as the
        in-memory datasets); every rank draws the same order and seed from identically seeded generators.
        """
        s = self._split(split)
        check_batch_size(batch_size)
        check_shard(shard)
        augment = (self.augment and split == "train") if augment is None else augment
        gen_device = generator.device if generator is not None else torch.device("cpu")
        n = len(s)
        order = torch.randperm(n, generator=generator, device=gen_device).tolist() if shuffle else list(range(n))
        base_seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device).item())
        dev = torch.device(device)
        samples = _Samples(*self._packed(split), self.image_size, augment, base_seed)
        loader = torch.utils.data.DataLoader(
            samples, batch_sampler=batch_indices(order, batch_size, drop_last, shard), num_workers=self.workers,
            collate_fn=_Collate(self.image_size), pin_memory=dev.type == "cuda", persistent_workers=False,
            generator=torch.Generator().manual_seed(base_seed))
        return self._iterate(loader, dev)

    @staticmethod
    def _iterate(loader: torch.utils.data.DataLoader, device: torch.device
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(loader)
        try:
            while True:
                if loader.num_workers == 0:  # decoded here, between the caller's steps
                    with _one_intraop_thread():
                        batch = next(batches, None)
                else:
                    batch = next(batches, None)
                if batch is None:
                    return
                yield _to_device(batch, device)
        finally:  # stop the workers now (an error or an early stop), not when a traceback lets the iterator go
            del batches

    def batch(self, split: str, indices: torch.Tensor, device: str | torch.device = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The eval-transformed (unaugmented, normalised) images ``indices`` of ``split`` stacked as
        ``(x float32 (len, 3, S, S), y int64 (len,))`` on ``device`` (rewards and probes)."""
        s = self._split(split)
        idx = torch.as_tensor(indices).reshape(-1).to("cpu", torch.int64)
        if len(idx) and (int(idx.min()) < -len(s) or int(idx.max()) >= len(s)):
            raise IndexError(f"batch indices out of range for the {len(s)} images of split {split!r}")
        items = idx.remainder(len(s)).tolist() if len(s) else []
        samples = _Samples(*self._packed(split), self.image_size, False, 0)
        if self.workers > 0 and len(items) > 1:  # Pillow and torch release the GIL: decode in parallel
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="imagenet-batch")
            chunks = [items[k::self.workers] for k in range(self.workers)]
            done = list(self._threads.map(_decode_chunk, [samples] * self.workers, chunks))
            results = [None] * len(items)
            for k, chunk in enumerate(done):
                results[k::self.workers] = chunk
        else:
            results = _decode_chunk(samples, items)
        with _one_intraop_thread():
            batch = _Collate(self.image_size)(results)
        dev = torch.device(device)
        if dev.type == "cuda" and not isinstance(batch, str):  # pinned: the copy does not block the host
            batch = (batch[0].pin_memory(), batch[1].pin_memory())
        return _to_device(batch, dev)

    def _packed(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``split``'s paths (file-system bytes) and labels as numpy arrays, made once."""
        if split not in self._arrays:
            s = self._split(split)
            paths = np.array([os.fsencode(p) for p in s.paths], dtype=bytes) if len(s) else np.array([], "S1")
            self._arrays[split] = (paths, s.labels.numpy())
        return self._arrays[split]


from ..registry import register_dataset  # noqa: E402  (after the class: the registry holds factories)


@register_dataset("imagenet")
def imagenet(directory: str | None, seed: int, image_size: int | None, workers: int) -> ImageFolderBundle:
    """ImageNet from class folders (train/<class>/, val/<class>/), decoded with Pillow."""
    del seed  # the splits are fixed by the folder layout
    if directory is None:
        raise InputError("imagenet needs a data directory with train/<class>/ and val/<class>/ folders "
                         "(set data.dir)")
    return ImageFolderBundle(directory, image_size, workers)
