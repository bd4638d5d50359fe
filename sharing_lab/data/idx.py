"""Fashion-MNIST and MNIST from their IDX files (LeCun's format; never downloaded).

A directory holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each raw or gzip-compressed (``.gz``). Fashion-MNIST's default directory is where
Debian's package ``dataset-fashion-mnist`` puts them. Every file is treated as hostile: it must be a regular file,
its magic number, dimensions, counts and labels are checked, and a header that declares more data than the file
can hold is refused before anything is allocated.

Splits: the official 10,000 test images are ``test``; a fixed stratified split of the 60,000 training images
(:data:`VAL_IMAGES` for ``val``, random state 0) gives ``train`` and the controller's ``val``. Images stay uint8
(normalised per batch with the training split's mean and standard deviation); ``image_size`` resizes them once,
antialiased.
"""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..registry import register_dataset
from .bundle import DataBundle, Split

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
VAL_IMAGES = 10_000
MAX_DEFLATE_RATIO = 1032  # deflate expands at most about 1032:1: a .gz file cannot hold more than this
MAX_SIDE = 1024
CHUNK = 1 << 20


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (root / name).exists() or (root / name).is_symlink():
            return root / name
    return None


def _payload(path: Path, expected_ndim: int) -> tuple[tuple[int, ...], bytes]:
    """The dimensions and the data bytes of one IDX file of unsigned bytes, checked against its header."""
    try:
        status = path.stat()
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"{path}: not a regular file")
    size = status.st_size
    compressed = path.suffix == ".gz"
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise InputError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
            if head[2] != 0x08:
                raise InputError(f"{path}: IDX data type 0x{head[2]:02x}, expected 0x08 (unsigned bytes)")
            if head[3] != expected_ndim:
                raise InputError(f"{path}: {head[3]} dimensions, expected {expected_ndim}")
            raw = f.read(4 * expected_ndim)
            if len(raw) < 4 * expected_ndim:
                raise InputError(f"{path}: truncated IDX header")
            dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4"))
            if expected_ndim == 3 and not all(1 <= d <= MAX_SIDE for d in dims[1:]):
                raise InputError(f"{path}: image size {dims[1]}x{dims[2]} outside 1..{MAX_SIDE}")
            declared = int(np.prod(dims, dtype=np.int64)) if dims else 0
            room = (size * MAX_DEFLATE_RATIO) if compressed else size - 4 - 4 * expected_ndim
            if declared > room:
                raise InputError(f"{path}: its header declares {declared:,} bytes of data, more than the file "
                                 f"can hold ({size:,} bytes{' compressed' if compressed else ''})")
            data = bytearray()
            while len(data) <= declared:  # one byte past the declared size tells a file that holds more
                chunk = f.read(min(CHUNK, declared + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise InputError(f"{path}: not a readable IDX file ({type(error).__name__}: {error})") from None
    if len(data) != declared:
        raise InputError(f"{path}: its header declares {declared:,} bytes of data, the file holds "
                         f"{'more' if len(data) > declared else f'{len(data):,}'}")
    return dims, bytes(data)


def read_idx(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of ``part`` ("train" or "test") in ``root``."""
    paths = {}
    for kind in ("images", "labels"):
        stem = FILES[f"{part}_{kind}"]
        paths[kind] = _find(root, stem)
        if paths[kind] is None:
            raise InputError(f"{root}: missing {stem} (or {stem}.gz)")
    dims, data = _payload(paths["images"], 3)
    images = np.frombuffer(data, dtype=np.uint8).reshape(dims)
    (count,), data = _payload(paths["labels"], 1)
    labels = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    if count != len(images):
        raise InputError(f"{paths['labels']}: {count:,} labels for {len(images):,} images in {paths['images']}")
    if count and labels.max() > 9:
        raise InputError(f"{paths['labels']}: labels must be in 0..9, found {labels.max()}")
    return images, labels


def _resize(images: np.ndarray, image_size: int | None) -> torch.Tensor:
    """(N, 1, S, S) uint8: resized once with antialiasing (bilinear), rounded back to bytes."""
    tensor = torch.from_numpy(images.copy()).unsqueeze(1)
    if image_size is None or image_size == images.shape[-1]:
        return tensor.contiguous()
    resized = F.interpolate(tensor.float(), size=(image_size, image_size), mode="bilinear", antialias=True,
                            align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8).contiguous()


def idx_bundle(name: str, directory: str | Path, image_size: int | None = None) -> DataBundle:
    """The IDX dataset in ``directory``: stratified train/val split of the training images (random state 0),
    the official test images as ``test``; mean and standard deviation of the training split."""
    from sklearn.model_selection import train_test_split  # as digits: paid only by the runs that read IDX files

    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{root}: {name} directory does not exist or is not a directory")
    x, y = read_idx(root, "train")
    x_test, y_test = read_idx(root, "test")
    if x.shape[1:] != x_test.shape[1:]:
        raise InputError(f"{root}: training images are {x.shape[1]}x{x.shape[2]}, test images "
                         f"{x_test.shape[1]}x{x_test.shape[2]}")
    if len(y) <= VAL_IMAGES or min(np.bincount(y, minlength=10)) < 2:
        raise InputError(f"{root}: {len(y):,} training images; the split needs more than {VAL_IMAGES:,}, "
                         "at least two of every class")
    train_index, val_index = train_test_split(np.arange(len(y)), test_size=VAL_IMAGES, random_state=0, stratify=y)
    train = _resize(x[np.sort(train_index)], image_size)
    scaled = train.float() / 255
    mean, std = float(scaled.mean()), float(scaled.std())
    return DataBundle(name, 10, Split(train, torch.from_numpy(y[np.sort(train_index)])),
                      Split(_resize(x[np.sort(val_index)], image_size), torch.from_numpy(y[np.sort(val_index)])),
                      Split(_resize(x_test, image_size), torch.from_numpy(y_test)), mean=(mean,), std=(std,))


@register_dataset("fashion-mnist")
def fashion_mnist(directory: str | None, seed: int, image_size: int | None, workers: int) -> DataBundle:
    """Fashion-MNIST (Zalando, MIT licence) from data.dir, by default Debian's /usr/share/datasets/fashion-mnist;
    50k train / 10k val (stratified), the official 10k test."""
    root = Path(directory or FASHION_MNIST_DIR)
    if directory is None and not (root.is_dir() and _find(root, FILES["train_images"])):
        raise InputError(f"fashion-mnist: no IDX files in {FASHION_MNIST_DIR}; install Debian's package "
                         "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set data.dir to a "
                         "directory holding train-images-idx3-ubyte[.gz] and its three sibling files")
    return idx_bundle("fashion-mnist", root, image_size)


@register_dataset("mnist")
def mnist(directory: str | None, seed: int, image_size: int | None, workers: int) -> DataBundle:
    """MNIST (or any 10-class IDX set: KMNIST) from data.dir; 50k train / 10k val (stratified), the official 10k
    test."""
    if directory is None:
        raise InputError("mnist needs data.dir: a directory holding train-images-idx3-ubyte[.gz], "
                         "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    return idx_bundle("mnist", directory, image_size)
