"""ImageNet from class folders of JPEG files, without torchvision: splits, batches, determinism, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sharing_lab.data.image_transforms import decode, eval_transform
from sharing_lab.data.imagenet import ImageFolderBundle, imagenet, scan_image_folder
from sharing_lab.data.protocol import Dataset
from sharing_lab.errors import InputError
from sharing_lab.registry import DATASETS

CLASSES = ("cat", "dog", "eel")
TRAIN_PER_CLASS, VAL_PER_CLASS = 6, 2


def _write_jpeg(path: Path, rng: np.random.Generator) -> None:
    height, width = (int(v) for v in rng.integers(40, 71, 2))
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((width, height), Image.BICUBIC).save(path, quality=90)


def make_tree(root: Path, seed: int = 0) -> Path:
    """``root/train/<class>/`` with 6 JPEGs and ``root/val/<class>/`` with 2, of random sizes 40..70 px."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for c in CLASSES:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(count):
                _write_jpeg(folder / f"{c}_{i:02d}.JPEG", rng)
    (root / "train" / "cat" / "notes.txt").write_text("not an image: skipped by suffix")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("imagenet"))


def test_bundle_follows_the_protocol_and_splits_each_class_in_half(tree):
    data = imagenet(str(tree), seed=0, image_size=32, workers=0)
    assert isinstance(data, Dataset)
    assert (data.name, data.num_classes, data.in_channels, data.image_size, data.augment) == ("imagenet", 3, 3,
                                                                                               32, True)
    assert data.classes == list(CLASSES)
    assert len(data.mean) == len(data.std) == 3
    half = TRAIN_PER_CLASS // 2
    assert [data.split_size(s) for s in ("train", "val", "test")] == [3 * half, 3 * half, 3 * VAL_PER_CLASS]
    assert data.train.labels.tolist() == [0] * half + [1] * half + [2] * half
    assert data.test.labels.dtype == torch.int64
    assert all(Path(p).parent.parent.name == "train" for p in data.train.paths + data.val.paths)
    assert not set(data.train.paths) & set(data.val.paths)
    assert all(Path(p).parent.parent.name == "val" for p in data.test.paths)
    assert data.num_batches("train", 4) == 2 and data.num_batches("train", 4, drop_last=False) == 3
    assert imagenet(str(tree), seed=0, image_size=None, workers=0).image_size == 224
    assert DATASETS.get("imagenet") is imagenet


def test_non_ascii_file_names(tmp_path):
    root = make_tree(tmp_path / "names")
    first = root / "train" / "cat" / "cat_00.JPEG"
    first.rename(first.with_name("cat_00_é.JPEG"))
    data = ImageFolderBundle(root, image_size=16, workers=0)
    i = data.train.paths.index(str(first.with_name("cat_00_é.JPEG")))
    x, y = data.batch("train", torch.tensor([i]))
    assert x.shape == (1, 3, 16, 16) and y.tolist() == [0]
    assert len(list(data.batches("train", 3, generator=torch.Generator().manual_seed(0)))) == 3


def test_batch_is_the_eval_transform_of_those_images(tree):
    data = ImageFolderBundle(tree, image_size=32, workers=0)
    indices = torch.tensor([4, 0, 7])
    x, y = data.batch("val", indices)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == data.val.labels[indices].tolist()
    for row, i in zip(x, indices.tolist()):
        assert torch.equal(row, eval_transform(decode(data.val.paths[i]), 32))
    threaded = ImageFolderBundle(tree, image_size=32, workers=2)
    assert torch.equal(threaded.batch("val", indices)[0], x)
    empty_x, empty_y = data.batch("train", torch.tensor([], dtype=torch.int64))
    assert empty_x.shape == (0, 3, 32, 32) and empty_y.shape == (0,)
    with pytest.raises(IndexError):
        data.batch("val", torch.tensor([9]))
    with pytest.raises(InputError, match="unknown split"):
        data.batch("holdout", indices)


def _collect(data: ImageFolderBundle, seed: int, **kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(data.batches("train", 4, generator=torch.Generator().manual_seed(seed), **kwargs))


def test_batches_do_not_depend_on_the_worker_count(tree):
    in_process = _collect(ImageFolderBundle(tree, image_size=32, workers=0), 7, drop_last=False)
    two_workers = _collect(ImageFolderBundle(tree, image_size=32, workers=2), 7, drop_last=False)
    assert [len(y) for _, y in in_process] == [4, 4, 1]
    for (xa, ya), (xb, yb) in zip(in_process, two_workers, strict=True):
        assert xa.shape == (len(ya), 3, 32, 32) and xa.dtype == torch.float32 and ya.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    early = ImageFolderBundle(tree, image_size=32, workers=2).batches("train", 4, torch.Generator().manual_seed(7))
    assert torch.equal(next(early)[0], in_process[0][0])
    early.close()  # stopping early stops the workers


def test_batches_are_drawn_from_the_generator_when_called(tree):
    data = ImageFolderBundle(tree, image_size=32, workers=0)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = list(data.batches("train", 3, generator=generator))
    after = generator.get_state()
    generator.set_state(state)
    data.batches("train", 3, generator=generator)  # not consumed: the draws are made anyway
    assert torch.equal(generator.get_state(), after)
    generator.set_state(state)
    again = list(data.batches("train", 3, generator=generator))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    other = _collect(data, 4)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
    seen = torch.cat([y for _, y in first]).tolist()
    assert sorted(seen) == sorted(data.train.labels.tolist())  # one pass, shuffled, every image once


def test_augmentation_defaults_to_train_and_can_be_switched_off(tree):
    data = ImageFolderBundle(tree, image_size=32, workers=0)
    plain = list(data.batches("train", 9, shuffle=False, drop_last=False, augment=False))
    assert len(plain) == 1
    expected = torch.stack([eval_transform(decode(p), 32) for p in data.train.paths])
    assert torch.equal(plain[0][0], expected)
    augmented = list(data.batches("train", 9, generator=torch.Generator().manual_seed(0), shuffle=False))
    assert not torch.equal(augmented[0][0], expected)
    val = list(data.batches("val", 9, generator=torch.Generator().manual_seed(0), shuffle=False))
    x_val, _ = data.batch("val", torch.arange(9))
    assert torch.equal(val[0][0], x_val)  # held-out splits are never augmented by default


def test_shards_are_the_slices_of_each_global_batch(tree):
    data = ImageFolderBundle(tree, image_size=32, workers=0)
    whole = _collect(data, 5, augment=False)
    parts = [_collect(data, 5, augment=False, shard=(rank, 2)) for rank in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole) == 2
    for b, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][b][0], parts[1][b][0]]), x)
        assert torch.equal(torch.cat([parts[0][b][1], parts[1][b][1]]), y)
    augmented = [_collect(data, 5, shard=(rank, 2)) for rank in range(2)]
    assert torch.equal(torch.cat([augmented[0][0][0], augmented[1][0][0]]), _collect(data, 5)[0][0])


def test_bad_arguments(tree):
    data = ImageFolderBundle(tree, image_size=32, workers=0)
    with pytest.raises(InputError, match="batch size"):
        data.num_batches("train", 0)
    with pytest.raises(InputError, match="batch size"):
        data.batches("train", 2.5)
    with pytest.raises(InputError, match="shard"):
        data.batches("train", 2, shard=(2, 2))
    with pytest.raises(InputError, match="image_size"):
        ImageFolderBundle(tree, image_size=0)
    with pytest.raises(InputError, match="workers"):
        ImageFolderBundle(tree, workers=-1)


def test_missing_directory_is_one_line_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist") as error:
        imagenet(str(tmp_path / "nowhere"), seed=0, image_size=32, workers=0)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="data.dir"):
        imagenet(None, seed=0, image_size=32, workers=0)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(InputError, match="val/ missing"):
        imagenet(str(tmp_path), seed=0, image_size=32, workers=0)


def test_tree_problems_are_input_errors(tmp_path):
    root = make_tree(tmp_path / "few")
    for extra in (root / "train" / "dog").iterdir():
        if extra.name != "dog_00.JPEG":
            extra.unlink()
    with pytest.raises(InputError, match="dog: needs at least 2 images"):
        ImageFolderBundle(root)
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(InputError, match="no class folders"):
        ImageFolderBundle(empty)
    stray = make_tree(tmp_path / "stray")
    (stray / "val" / "zebra").mkdir()
    with pytest.raises(InputError, match="zebra"):
        ImageFolderBundle(stray)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_jpeg_is_one_line_input_error_when_decoded(tmp_path, workers):
    root = make_tree(tmp_path / "corrupt")
    bad = root / "train" / "eel" / "eel_05.JPEG"  # second half of its class: the val split
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    data = ImageFolderBundle(root, image_size=32, workers=workers)  # scanning does not decode
    i = data.val.paths.index(str(bad))
    x, _ = data.batch("val", torch.tensor([0]))
    assert x.shape == (1, 3, 32, 32)
    with pytest.raises(InputError, match="eel_05.JPEG: not a readable image") as error:
        data.batch("val", torch.tensor([0, i]))
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="eel_05.JPEG") as error:
        list(data.batches("val", 3, shuffle=False))
    assert "\n" not in str(error.value)


def test_resnet18_search_on_tiny_jpegs(tree, tmp_path):
    out = tmp_path / "runs"
    overrides = ["model.name=resnet18", "data.name=imagenet", f"data.dir={json.dumps(str(tree))}",
                 "data.image_size=32", "search.epochs=2", "search.warmup_epochs=1", "data.batch_size=6",
                 "data.reward_batch_size=6", "data.eval_batch_size=6", "data.calibration_images=12",
                 "data.workers=0", "search.eval_archs=2", "search.beam_top=2", "probes.probe_batch=4"]
    command = [sys.executable, "-m", "sharing_lab.cli", "run-search", "--out", str(out), "--name", "tiny"]
    for override in overrides:
        command += ["--set", override]
    # idle OpenMP threads sleep instead of spinning: the same results, twice as fast on a busy 2-core machine
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "tiny" / "summary.json").exists()


def test_an_image_that_is_a_fifo_is_refused_before_loading(tmp_path):
    """A FIFO named like an image would block the loader (and with it SIGTERM): the scan refuses it by name."""
    root = make_tree(tmp_path / "tree")
    klass = sorted((root / "train").iterdir())[0]
    os.mkfifo(klass / "zz-fifo.JPEG")
    with pytest.raises(InputError, match="zz-fifo.JPEG: not a regular file"):
        scan_image_folder(root)
