"""CIFAR-10 from a local directory in its python-pickle format (never downloaded).

The authors' split (notes/official-implementation.md, Schedules): the 50k training images split unshuffled
25k/25k into train and val, reflect-pad 4 + random crop 32 + horizontal flip, mean/std normalisation; the 10k
test set never selects. The pickles are read by an unpickler that admits only what a CIFAR batch holds.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..registry import register_dataset
from .bundle import DataBundle, Split

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


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


def cifar10_bundle(directory: str | None, image_size: int | None = None) -> DataBundle:
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




@register_dataset("cifar10")
def cifar10(directory: str | None, seed: int, image_size: int | None, workers: int) -> DataBundle:
    """CIFAR-10 python pickles from data.dir; 25k train / 25k val (unshuffled), test_batch for reporting."""
    return cifar10_bundle(directory, image_size)
