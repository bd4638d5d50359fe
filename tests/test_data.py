"""Tests for sharing_lab.data: splits, normalisation, deterministic batches, augmentation, file loaders, bad input."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sharing_lab.data import DataBundle, Split, load_data
from sharing_lab.data.bundle import count_batches, random_crop_flip
from sharing_lab.data.cifar10 import CIFAR_MEAN, CIFAR_STD
from sharing_lab.data.imagenet import scan_image_folder
from sharing_lab.data.protocol import SPLITS, Dataset
from sharing_lab.data.synthetic import synthetic_bundle
from sharing_lab.errors import InputError
from sharing_lab.registry import DATASETS

PER_FILE = 20  # images per tiny CIFAR batch file


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_data("digits")


def _cifar_arrays(seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: (rng.integers(0, 256, (PER_FILE, 3072), dtype=np.uint8), rng.integers(0, 10, PER_FILE).tolist())
            for n in names}


def _write_cifar(folder: Path, arrays: dict, protocol: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in arrays.items():
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels,
                         b"filenames": [b"x.png"] * len(labels)}, f, protocol=protocol)
    return folder


@pytest.fixture
def cifar_dir(tmp_path: Path) -> tuple[Path, dict]:
    arrays = _cifar_arrays()
    return _write_cifar(tmp_path / "cifar", arrays), arrays


# ---------------------------------------------------------------- digits and synthetic


def test_digits_split_sizes_shapes_and_independence_of_seed(digits):
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1078, 359, 360)
    assert (digits.num_classes, digits.in_channels, digits.image_size, digits.augment) == (10, 1, 8, False)
    assert digits.train.images.shape == (1078, 1, 8, 8) and digits.train.images.dtype == torch.float32
    assert digits.train.labels.dtype == torch.int64
    other = load_data("digits", seed=7)
    assert torch.equal(other.val.images, digits.val.images) and torch.equal(other.test.labels, digits.test.labels)


def test_digits_split_is_stratified_and_disjoint(digits):
    totals = sum(torch.bincount(s.labels, minlength=10) for s in (digits.train, digits.val, digits.test))
    for split, frac in ((digits.train, 0.6), (digits.val, 0.2), (digits.test, 0.2)):
        counts = torch.bincount(split.labels, minlength=10).double()
        assert torch.all((counts - frac * totals).abs() <= 1.5), (counts, frac * totals)
    rows = torch.cat([s.images.flatten(1) for s in (digits.train, digits.val, digits.test)])
    assert len(rows) == 1797  # every image used exactly once (digits has a few duplicates, so count, not unique)


def test_digits_normalised_with_scalar_train_statistics(digits):
    from sklearn.datasets import load_digits

    x = digits.train.images
    assert abs(x.mean().item()) < 1e-4 and abs(x.double().std(correction=0).item() - 1) < 1e-4
    raw = load_digits().images
    # a scalar affine map of the raw 0..16 values: the raw zero maps to one value everywhere
    assert x.min().item() == pytest.approx((0 - raw.mean()) / raw.std(), abs=0.2)
    assert torch.unique(x).numel() == 17


def test_digits_upsampled(digits):
    big = load_data("digits", image_size=16)
    assert big.train.images.shape == (1078, 1, 16, 16) and big.image_size == 16
    assert torch.allclose(F.avg_pool2d(big.train.images, 2).mean(), digits.train.images.mean(), atol=1e-5)


def test_synthetic_deterministic_by_seed_and_learnable():
    a, b, c = load_data("synthetic", seed=3), load_data("synthetic", seed=3), load_data("synthetic", seed=4)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert (len(a.train), len(a.val), len(a.test)) == (256, 128, 128)
    assert a.train.images.shape[1:] == (3, 8, 8) and a.train.images.dtype == torch.float32
    assert synthetic_bundle(0, image_size=12, size=40).train.images.shape == (40, 3, 12, 12)
    means = torch.stack([a.train.images[a.train.labels == k].mean(0) for k in range(10)]).flatten(1)
    pred = torch.cdist(a.val.images.flatten(1), means).argmin(1)
    assert (pred == a.val.labels).float().mean() > 0.6  # nearest class mean: well above chance (0.1)


# ---------------------------------------------------------------- batches()


def test_batches_shapes_dtype_and_drop_last(digits):
    assert digits.num_batches("train", 32) == 33 and digits.num_batches("train", 32, drop_last=False) == 34
    out = list(digits.batches("train", 32, torch.Generator().manual_seed(0)))
    assert len(out) == 33 and all(x.shape == (32, 1, 8, 8) and y.shape == (32,) for x, y in out)
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in out)
    full = list(digits.batches("train", 32, torch.Generator().manual_seed(0), drop_last=False))
    assert len(full) == 34 and len(full[-1][1]) == 1078 - 33 * 32
    # one pass covers every example exactly once
    assert torch.equal(torch.cat([y for _, y in full]).sort().values, digits.train.labels.sort().values)
    assert digits.num_batches("val", 1000) == 0 and list(digits.batches("val", 1000)) == []


def test_batches_unshuffled_follow_data_order(digits):
    xs, ys = zip(*digits.batches("test", 100, shuffle=False, drop_last=False))
    assert torch.equal(torch.cat(xs), digits.test.images) and torch.equal(torch.cat(ys), digits.test.labels)


def test_batches_deterministic_from_generator_state(digits):
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    first = list(digits.batches("train", 64, g))
    after = g.get_state()
    g.set_state(state)
    again = list(digits.batches("train", 64, g))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    nxt = list(digits.batches("train", 64, g))  # the generator moved on: a new order
    assert not torch.equal(nxt[0][1], first[0][1])
    # all randomness is drawn at the call, so the state does not depend on how many batches were consumed
    g.set_state(state)
    next(iter(digits.batches("train", 64, g)))
    assert torch.equal(g.get_state(), after)


def test_bad_split_and_batch_size(digits):
    with pytest.raises(InputError, match="unknown split"):
        digits.batches("valid", 8)
    with pytest.raises(InputError, match="batch size"):
        digits.num_batches("train", 0)


# ---------------------------------------------------------------- augmentation


def _all_crops_and_flips(img: torch.Tensor, p: int) -> list[torch.Tensor]:
    h, w = img.shape[-2:]
    padded = F.pad(img[None].float(), (p, p, p, p), mode="reflect")[0].to(img.dtype)
    crops = [padded[:, i:i + h, j:j + w] for i in range(2 * p + 1) for j in range(2 * p + 1)]
    return crops + [c.flip(-1) for c in crops]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_crop_flip_matches_reflect_pad_crop_flip(dtype):
    img = (torch.arange(3 * 6 * 7) % 251).view(3, 6, 7).to(dtype)  # every pixel distinct within a channel
    batch = img.expand(200, 3, 6, 7)
    out = random_crop_flip(batch, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == dtype
    candidates = _all_crops_and_flips(img, 2)
    hits = [next(k for k, c in enumerate(candidates) if torch.equal(o, c)) for o in out]
    assert len(set(hits)) > 30  # many distinct offsets, flipped and not
    assert 0.3 < np.mean([h >= 25 for h in hits]) < 0.7  # flips with p = 0.5
    again = random_crop_flip(batch, padding=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_random_crop_flip_padding_zero_only_flips():
    img = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).expand(50, 1, 4, 4)
    out = random_crop_flip(img, padding=0, generator=torch.Generator().manual_seed(1))
    same = (out == img).flatten(1).all(1)
    flipped = (out == img.flip(-1)).flatten(1).all(1)
    assert torch.all(same ^ flipped) and same.any() and flipped.any()
    with pytest.raises(ValueError):
        random_crop_flip(img, padding=4)


# ---------------------------------------------------------------- CIFAR-10 from pickles


@pytest.mark.parametrize("nested", [False, True])
def test_cifar10_loader_split_and_layouts(tmp_path, nested):
    arrays = _cifar_arrays(1)
    _write_cifar(tmp_path / "c" / "cifar-10-batches-py" if nested else tmp_path / "c", arrays)
    b = load_data("cifar10", str(tmp_path / "c"))
    assert (b.name, b.num_classes, b.in_channels, b.image_size, b.augment) == ("cifar10", 10, 3, 32, True)
    assert b.mean == CIFAR_MEAN and b.std == CIFAR_STD
    train_all = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    labels_all = sum((arrays[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert len(b.train) == len(b.val) == 50 and len(b.test) == PER_FILE
    assert b.train.images.dtype == torch.uint8
    assert np.array_equal(b.train.images.numpy(), train_all[:50]) and np.array_equal(b.val.images.numpy(),
                                                                                      train_all[50:])
    assert b.train.labels.tolist() == labels_all[:50] and b.val.labels.tolist() == labels_all[50:]
    assert b.test.labels.tolist() == arrays["test_batch"][1]


def test_cifar10_batches_normalise_and_augment(cifar_dir):
    folder, arrays = cifar_dir
    b = load_data("cifar10", str(folder))
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    expected = (b.val.images.float() / 255 - mean) / std
    (x, y), = list(b.batches("val", 50, shuffle=False))  # val: no augmentation by default
    assert x.dtype == torch.float32 and torch.allclose(x, expected, atol=1e-5) and torch.equal(y, b.val.labels)
    plain, = b.batches("train", 50, shuffle=False, augment=False)
    assert torch.allclose(plain[0], (b.train.images.float() / 255 - mean) / std, atol=1e-5)
    aug, = b.batches("train", 50, torch.Generator().manual_seed(0), shuffle=False)  # train: augmented by default
    changed = ~torch.isclose(aug[0], plain[0]).flatten(1).all(1)
    assert changed.sum() > 40  # random images: almost every crop/flip differs from the original
    assert torch.allclose(aug[0].mean(), plain[0].mean(), atol=0.1)  # same pixels, moved around


MALFORMED = {
    "garbage": lambda p: p.write_bytes(b"\x00not a pickle at all" * 10),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "not a dict": lambda p: p.write_bytes(pickle.dumps([1, 2, 3])),
    "missing key": lambda p: p.write_bytes(pickle.dumps({b"labels": [0] * PER_FILE})),
    "wrong shape": lambda p: p.write_bytes(pickle.dumps({b"data": np.zeros((PER_FILE, 100), np.uint8),
                                                         b"labels": [0] * PER_FILE})),
    "wrong dtype": lambda p: p.write_bytes(pickle.dumps({b"data": np.zeros((PER_FILE, 3072), np.float32),
                                                         b"labels": [0] * PER_FILE})),
    "labels length": lambda p: p.write_bytes(pickle.dumps({b"data": np.zeros((PER_FILE, 3072), np.uint8),
                                                           b"labels": [0] * 3})),
    "label range": lambda p: p.write_bytes(pickle.dumps({b"data": np.zeros((PER_FILE, 3072), np.uint8),
                                                         b"labels": [10] * PER_FILE})),
    "foreign object": lambda p: p.write_bytes(pickle.dumps(_Evil())),
}


class _Evil:
    def __reduce__(self):
        return (Path.cwd, ())  # harmless, but a CIFAR batch never holds a callable: must be refused


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_cifar10_malformed_file(cifar_dir, case):
    folder, _ = cifar_dir
    MALFORMED[case](folder / "data_batch_3")
    with pytest.raises(InputError) as err:
        load_data("cifar10", str(folder))
    assert "data_batch_3" in str(err.value) and "\n" not in str(err.value)


def test_cifar10_missing_directory_and_files(tmp_path, cifar_dir):
    with pytest.raises(InputError, match="needs a data directory"):
        load_data("cifar10")
    with pytest.raises(InputError, match="does not exist"):
        load_data("cifar10", str(tmp_path / "nope"))
    folder, _ = cifar_dir
    (folder / "data_batch_4").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(InputError, match="missing CIFAR-10 batch file.*data_batch_4, test_batch"):
        load_data("cifar10", str(folder))


def test_cifar10_protocol_5_pickles_load(tmp_path):
    arrays = _cifar_arrays(2)
    b = load_data("cifar10", str(_write_cifar(tmp_path / "c", arrays, protocol=5)))
    assert np.array_equal(b.test.images.numpy().reshape(PER_FILE, -1), arrays["test_batch"][0])
    with pytest.raises(InputError, match="32x32"):
        load_data("cifar10", str(tmp_path / "c"), image_size=64)


# ---------------------------------------------------------------- imagenet, names, imports


def test_imagenet_needs_no_torchvision_and_refuses_bad_directories(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # behaves as not installed, even where it is
    (tmp_path / "train" / "n01").mkdir(parents=True)
    (tmp_path / "val" / "n01").mkdir(parents=True)
    # the loader decodes with Pillow and transforms in torch: without torchvision it reaches the folders
    with pytest.raises(InputError, match="needs at least 2 images"):
        load_data("imagenet", str(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        load_data("imagenet", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="needs a data directory"):
        load_data("imagenet")


def test_image_folder_scan_splits_each_class_in_halves(tmp_path):
    for c, n in (("b", 5), ("a", 4)):
        (tmp_path / "train" / c).mkdir(parents=True)
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "train" / c / f"{i}.JPEG").touch()
        (tmp_path / "val" / c / "v.JPEG").touch()
    (tmp_path / "train" / "a" / "notes.txt").touch()
    classes, train, val, test = scan_image_folder(tmp_path)
    assert classes == ["a", "b"]
    assert [Path(p).name for p in train.paths] == ["0.JPEG", "1.JPEG", "0.JPEG", "1.JPEG"]
    assert train.labels.tolist() == [0, 0, 1, 1] and val.labels.tolist() == [0, 0, 1, 1, 1]
    assert len(test) == 2 and test.labels.tolist() == [0, 1]
    (tmp_path / "val" / "zzz").mkdir()
    with pytest.raises(InputError, match="zzz"):
        scan_image_folder(tmp_path)


def test_unknown_dataset_and_bad_sizes():
    with pytest.raises(InputError) as err:
        load_data("emnist")
    assert all(name in str(err.value) for name in DATASETS.names())
    with pytest.raises(InputError, match="image_size"):
        load_data("digits", image_size=0)
    with pytest.raises(InputError, match="synthetic size"):
        synthetic_bundle(size=-1)


# ---------------------------------------------------------------- every registered dataset


def _registered_dataset(name: str, request) -> Dataset:
    """``name`` built as the search builds it: cifar10 and the IDX sets from tiny files, the others without."""
    if name == "imagenet":
        pytest.skip("imagenet needs image files: tests/test_imagenet.py covers it")
    directory = str(request.getfixturevalue("cifar_dir")[0]) if name == "cifar10" else None
    if name in ("mnist", "fashion-mnist"):
        directory = str(request.getfixturevalue("idx_files").write_set(request.getfixturevalue("tmp_path") / "idx"))
    return load_data(name, directory, seed=0)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_registered_dataset_follows_the_protocol(name, request):
    ds = _registered_dataset(name, request)
    assert isinstance(ds, Dataset)
    assert ds.name == name and ds.num_classes >= 2 and ds.in_channels >= 1 and ds.image_size >= 1
    shape = (ds.in_channels, ds.image_size, ds.image_size)
    for split in SPLITS:
        n = ds.split_size(split)
        assert n >= 1
        batch_size = max(1, n // 3) + 1  # a remainder, so drop_last matters
        assert ds.num_batches(split, batch_size) == count_batches(n, batch_size, True) == n // batch_size
        assert ds.num_batches(split, batch_size, drop_last=False) == count_batches(n, batch_size, False)
        passes = list(ds.batches(split, batch_size, torch.Generator().manual_seed(0), drop_last=False))
        assert len(passes) == ds.num_batches(split, batch_size, drop_last=False)
        assert sum(len(y) for _, y in passes) == n
        for x, y in passes:
            assert x.shape == (len(y), *shape) and x.dtype == torch.float32 and torch.isfinite(x).all()
            assert y.dtype == torch.int64 and bool(((0 <= y) & (y < ds.num_classes)).all())
        dropped = list(ds.batches(split, batch_size, torch.Generator().manual_seed(0)))
        assert len(dropped) == ds.num_batches(split, batch_size) and all(len(y) == batch_size for _, y in dropped)
        # batch(): the unaugmented examples, the same as an unshuffled, unaugmented pass
        indices = torch.arange(min(n, 5))
        x, y = ds.batch(split, indices)
        assert x.shape == (len(indices), *shape) and x.dtype == torch.float32 and y.shape == (len(indices),)
        (first_x, first_y), *_ = ds.batches(split, len(indices), shuffle=False, augment=False)
        assert torch.equal(first_x, x) and torch.equal(first_y, y)
    with pytest.raises(InputError, match="unknown split"):
        ds.split_size("valid")


def test_split_validates_shapes():
    with pytest.raises(InputError):
        Split(torch.zeros(3, 1, 2, 2), torch.zeros(4, dtype=torch.int64))


def test_import_is_light():
    code = "import sys, sharing_lab.data; print(sorted(m for m in ('sklearn', 'torchvision') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
