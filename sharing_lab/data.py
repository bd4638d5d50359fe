"""Datasets for the search: digits (embedded default), synthetic (tests), CIFAR-10 and ImageNet from local files.

Splits follow the paper's bi-level search (Section 2.1, DESIGN.md §3): ``train`` trains the meta-weights, ``val``
is the held-out split for the controller's reward and for selection, ``test`` only reports. For CIFAR-10 this is
the authors' split (notes/official-implementation.md, Schedules): the 50k training images split unshuffled
25k/25k, reflect-pad 4 + random crop 32 + horizontal flip, mean/std normalisation; the 10k test set never selects.
Nothing is downloaded. Every bad input raises :class:`~sharing_lab.errors.InputError`.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

DATASETS = ("digits", "cifar10", "imagenet", "synthetic")
SPLITS = ("train", "val", "test")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass
class Split:
    """One split held in memory: images (N, C, H, W), uint8 (cifar10) or float32 already normalised; labels int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.labels.dim() != 1 or len(self.images) != len(self.labels):
            raise ValueError(f"Split needs images (N,C,H,W) and labels (N,), got {tuple(self.images.shape)} "
                             f"and {tuple(self.labels.shape)}")
        if self.labels.dtype != torch.int64:
            raise ValueError(f"Split labels must be int64, got {self.labels.dtype}")

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


def _shard_slice(start: int, end: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous part of the global batch ``[start, end)`` (ceil-sized parts, the last shorter)."""
    local = -(-(end - start) // world_size)
    return slice(start + rank * local, min(start + (rank + 1) * local, end))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size!r}")


def _count_batches(n: int, batch_size: int, drop_last: bool) -> int:
    _check_batch_size(batch_size)
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

    def __repr__(self) -> str:
        sizes = "/".join(str(len(getattr(self, s))) for s in SPLITS)
        return (f"DataBundle({self.name!r}, {self.num_classes} classes, {self.in_channels}x{self.image_size}x"
                f"{self.image_size}, train/val/test {sizes}, augment={self.augment})")

    def num_batches(self, split: str, batch_size: int, drop_last: bool = True) -> int:
        _check_split(split)
        return _count_batches(len(getattr(self, split)), batch_size, drop_last)

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
        rank's contiguous ``batch_size / world_size`` slice of each global batch (:mod:`sharing_lab.distributed`).
        On CUDA the images stay there as uint8 and are cropped, flipped and normalised there, a batch at a time.
        """
        _check_split(split)
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
        _check_split(split)
        images, labels = self._on_device(split, torch.device(device))
        indices = _to_device(indices, images.device)
        return self._normalise(images[indices]), labels[indices]

    def _iterate(self, images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor,
                 params: tuple[torch.Tensor, ...] | None, batch_size: int, n_batches: int,
                 shard: tuple[int, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(n_batches):
            sel = _shard_slice(b * batch_size, min((b + 1) * batch_size, len(order)), *shard)
            idx = order[sel]
            x = images[idx]
            if params is not None:
                x = _crop_flip(x, 4, *(p[sel] for p in params))
            yield self._normalise(x), labels[idx]


def _digits(image_size: int | None) -> DataBundle:
    """scikit-learn's digits, fixed stratified 1078/359/360 split (random_state 0), scalar train mean/std."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.images.astype(np.float64), d.target.astype(np.int64)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, random_state=0, stratify=y)
    x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    mean, std = float(x_tr.mean()), float(x_tr.std())

    def split(xs: np.ndarray, ys: np.ndarray) -> Split:
        t = torch.from_numpy((xs - mean) / std).float().unsqueeze(1)
        if image_size not in (None, 8):  # bilinear weights sum to 1, so normalising first is the same
            t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return Split(t.contiguous(), torch.from_numpy(ys))

    return DataBundle("digits", 10, split(x_tr, y_tr), split(x_va, y_va), split(x_te, y_te))


def _synthetic(seed: int, image_size: int | None, size: int) -> DataBundle:
    """A small learnable 10-class problem: smooth class patterns (4x4 upsampled) plus Gaussian noise, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    s = image_size or 8
    patterns = F.interpolate(torch.randn(10, 3, 4, 4, generator=g), size=(s, s), mode="bilinear",
                             align_corners=False)

    def split(n: int) -> Split:
        labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
        return Split(patterns[labels] + 0.8 * torch.randn(n, 3, s, s, generator=g), labels)

    half = max(1, size // 2)
    return DataBundle("synthetic", 10, split(size), split(half), split(half))


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds (dicts, lists, bytes, numpy arrays): a pickle runs no code here."""

    _ALLOWED = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # truncated, garbage, foreign objects: all one kind of bad input
        raise InputError(f"{path}: not a readable CIFAR-10 python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a pickled dict with b'data' and b'labels', got {type(d).__name__}")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise InputError(f"{path}: missing key b'data' or b'labels' (keys: {sorted(map(str, d))})")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise InputError(f"{path}: b'data' must be an N x 3072 uint8 array, got {data.shape} {data.dtype}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{path}: b'labels' must be a list of integers") from None
    if labels.shape != (len(data),):
        raise InputError(f"{path}: {len(data)} images but b'labels' has shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise InputError(f"{path}: labels must be in 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar10(directory: str | None, image_size: int | None) -> DataBundle:
    """CIFAR-10 python pickles; the paper's search split: first 25k train, last 25k val (unshuffled), test_batch."""
    if directory is None:
        raise InputError("cifar10 needs a data directory holding data_batch_1..5 and test_batch (python version)")
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{root}: CIFAR-10 directory does not exist or is not a directory")
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [f for f in _CIFAR_FILES if not (root / f).is_file()]
    if missing:
        raise InputError(f"{root}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
    if image_size not in (None, 32):
        raise InputError(f"cifar10 images are 32x32; image_size {image_size} is not supported")
    parts = [_read_cifar_batch(root / f) for f in _CIFAR_FILES]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts[:5]]))
    y = torch.from_numpy(np.concatenate([p[1] for p in parts[:5]]))
    half = len(y) // 2
    test = Split(torch.from_numpy(parts[5][0]), torch.from_numpy(parts[5][1]))
    return DataBundle("cifar10", 10, Split(x[:half], y[:half]), Split(x[half:], y[half:]), test, augment=True,
                      mean=CIFAR_MEAN, std=CIFAR_STD)


@dataclass
class FileSplit:
    """A split kept on disk: image paths and their labels (int64)."""

    paths: list[str]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.paths)


def _scan_image_folder(root: Path) -> tuple[list[str], FileSplit, FileSplit, FileSplit]:
    """Classes from ``root/train``; per class the first half of its sorted files trains, the second half is val;
    ``root/val`` (the official ImageNet validation set) is the test split."""
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise InputError(f"{root}: an ImageNet directory needs train/<class>/ and val/<class>/ ({sub}/ missing)")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"{root / 'train'}: no class folders")

    def files(folder: Path) -> list[str]:
        if not folder.is_dir():
            return []
        return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)

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


class ImageFolderBundle:
    """ImageNet from class folders, streamed from disk (it does not fit in memory); same interface as DataBundle.

    Needs the ``imagenet`` extra (torchvision, pillow), imported only here. Train transform: RandomResizedCrop +
    horizontal flip; eval: Resize(256/224 of the size) + CenterCrop. Batches come from a DataLoader with worker
    processes and pinned memory; ``generator`` draws the order and seeds the workers' augmentation.
    """

    def __init__(self, directory: str, image_size: int | None = None, num_workers: int | None = None) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise InputError(f"{root}: ImageNet directory does not exist or is not a directory")
        try:
            from torchvision import transforms as T
        except ImportError:
            raise InputError("imagenet needs the imagenet extra: pip install 'sharing-lab[imagenet]'") from None
        self.classes, self.train, self.val, self.test = _scan_image_folder(root)
        self.name, self.num_classes, self.in_channels = "imagenet", len(self.classes), 3
        self.image_size = image_size or 224
        self.augment = True
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        norm = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        self._train_tf = T.Compose([T.RandomResizedCrop(self.image_size), T.RandomHorizontalFlip(), *norm])
        self._eval_tf = T.Compose([T.Resize(self.image_size * 256 // 224), T.CenterCrop(self.image_size), *norm])

    def num_batches(self, split: str, batch_size: int, drop_last: bool = True) -> int:
        _check_split(split)
        return _count_batches(len(getattr(self, split)), batch_size, drop_last)

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                drop_last: bool = True, device: str | torch.device = "cpu", augment: bool | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """As :meth:`DataBundle.batches`; each rank's workers draw their augmentation from their own seed."""
        _check_split(split)
        _check_batch_size(batch_size)
        s: FileSplit = getattr(self, split)
        augment = (self.augment and split == "train") if augment is None else augment
        order = torch.randperm(len(s), generator=generator).tolist() if shuffle else list(range(len(s)))
        rank, world_size = shard
        worker_seed = int(torch.randint(0, 2**62, (1,), generator=generator)) + rank
        if world_size > 1:
            order, batch_size = _shard_order(order, batch_size, rank, world_size, drop_last)
        dev = torch.device(device)
        loader = torch.utils.data.DataLoader(
            _ImageFiles(s, self._train_tf if augment else self._eval_tf), batch_size=batch_size, sampler=order,
            drop_last=drop_last, num_workers=self.num_workers, pin_memory=dev.type == "cuda",
            persistent_workers=False, generator=torch.Generator().manual_seed(worker_seed))
        return ((x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)) for x, y in loader)


def _shard_order(order: list[int], batch_size: int, rank: int, world_size: int,
                 drop_last: bool) -> tuple[list[int], int]:
    """This rank's part of each global batch of ``order`` (the same slices as ``DataBundle.batches``)."""
    end = len(order) // batch_size * batch_size if drop_last else len(order)
    mine = [index for start in range(0, end, batch_size)
            for index in order[_shard_slice(start, min(start + batch_size, end), rank, world_size)]]
    return mine, -(-batch_size // world_size)


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, split: FileSplit, transform: object) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        with Image.open(self.split.paths[i]) as im:
            return self.transform(im.convert("RGB")), self.split.labels[i]


def load_data(name: str, directory: str | None = None, seed: int = 0, image_size: int | None = None,
              synthetic_size: int = 256) -> DataBundle | ImageFolderBundle:
    """Load a dataset by name (one of :data:`DATASETS`); ``seed`` only affects ``synthetic`` (fixed splits)."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool)
                                   or image_size < 1):
        raise InputError(f"image_size must be a positive integer or None, got {image_size!r}")
    if name == "digits":
        return _digits(image_size)
    if name == "synthetic":
        if not isinstance(synthetic_size, int) or isinstance(synthetic_size, bool) or synthetic_size < 1:
            raise InputError(f"synthetic_size must be a positive integer, got {synthetic_size!r}")
        return _synthetic(seed, image_size, synthetic_size)
    if name == "cifar10":
        return _cifar10(directory, image_size)
    if directory is None:
        raise InputError("imagenet needs a data directory with train/<class>/ and val/<class>/ folders")
    return ImageFolderBundle(directory, image_size)
