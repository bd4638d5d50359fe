"""Shared pytest setup: two torch threads (torch 2.13 CPU was seen to crash with one on these nets); tiny IDX
files (Fashion-MNIST's and MNIST's format) for the dataset tests."""

import gzip
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

IDX_SIDE = 6
IDX_TRAIN = 10_200  # just over the 10,000 validation images the IDX datasets split off


def idx_bytes(array: np.ndarray, dims: tuple[int, ...] | None = None, magic: bytes | None = None) -> bytes:
    """One IDX file of unsigned bytes (its header may be made to lie: ``dims``, ``magic``)."""
    dims = array.shape if dims is None else dims
    head = magic if magic is not None else bytes([0, 0, 0x08, len(dims)])
    return head + struct.pack(f">{len(dims)}I", *dims) + array.astype(np.uint8).tobytes()


def write_idx_set(root: Path, train: int = IDX_TRAIN, test: int = 50, compress: bool = True) -> Path:
    """A tiny IDX set in ``root``: images whose brightness encodes their label, labels cycling 0..9."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = (rng.integers(0, 40, (count, IDX_SIDE, IDX_SIDE)) + 20 * labels[:, None, None]).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{part}-{kind}-ubyte"
            payload = idx_bytes(array)
            if compress:
                (root / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (root / name).write_bytes(payload)
    return root


@pytest.fixture
def idx_files() -> SimpleNamespace:
    """The IDX writers: ``idx_bytes``, ``write_set``, and the set's ``side`` and ``train`` size."""
    return SimpleNamespace(idx_bytes=idx_bytes, write_set=write_idx_set, side=IDX_SIDE, train=IDX_TRAIN)
