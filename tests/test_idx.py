"""Fashion-MNIST and MNIST from IDX files (:mod:`sharing_lab.data.idx`): tiny files written here, valid and
hostile (truncated, wrong magic, a header that lies about its size, labels out of range, a FIFO), the splits and
``data.train_images``; one test on Debian's real files when they are installed."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from sharing_lab.cli import main
from sharing_lab.config import resolve
from sharing_lab.data import idx, load_data
from sharing_lab.data.idx import FASHION_MNIST_DIR, VAL_IMAGES, read_idx
from sharing_lab.errors import InputError
from sharing_lab.jobs.recipes import FASHION_TARGET
from sharing_lab.truth import table as gt

SIDE = 6  # conftest's IDX_SIDE


def test_a_valid_set_gives_the_official_test_split_and_a_stratified_validation_split(tmp_path, idx_files):
    write_set = idx_files.write_set
    data = load_data("mnist", str(write_set(tmp_path / "gz")))
    assert (len(data.train), len(data.val), len(data.test)) == (200, VAL_IMAGES, 50)
    assert np.bincount(data.val.labels.numpy()).tolist() == [VAL_IMAGES // 10] * 10  # stratified
    assert data.in_channels == 1 and data.image_size == SIDE and str(data.train.images.dtype) == "torch.uint8"
    raw = load_data("mnist", str(write_set(tmp_path / "raw", compress=False)))
    assert bool((raw.test.images == data.test.images).all())  # raw and gzip files read the same
    small = load_data("mnist", str(tmp_path / "gz"), image_size=3, train_images=50)
    assert small.image_size == 3 and len(small.train) == 50
    assert np.bincount(small.train.labels.numpy()).tolist() == [5] * 10
    again = load_data("mnist", str(tmp_path / "gz"), seed=7, image_size=3, train_images=50)
    assert bool((again.train.images == small.train.images).all())  # the subset does not depend on the seed


def corrupt(root: Path, name: str, payload: bytes) -> None:
    for stale in root.glob(f"{name}*"):
        stale.unlink()
    (root / name).write_bytes(payload)


CASES = {
    "truncated data": ("train-images-idx3-ubyte", lambda b: b(np.zeros((VAL_IMAGES + 200, SIDE, SIDE)))[:-7],
                       "more than the file can hold"),
    "a gzip file shorter than its header": ("train-images-idx3-ubyte.gz", lambda b: gzip.compress(
        b(np.zeros((VAL_IMAGES + 199, SIDE, SIDE)), dims=(VAL_IMAGES + 200, SIDE, SIDE))), "the file holds"),
    "a truncated gzip stream": ("train-images-idx3-ubyte.gz", lambda b: gzip.compress(
        b(np.zeros((VAL_IMAGES + 200, SIDE, SIDE))))[:-20], "not a readable IDX file"),
    "wrong magic": ("train-images-idx3-ubyte", lambda b: b(np.zeros((3, SIDE, SIDE)), magic=b"\x1f\x00\x08\x03"),
                    "not an IDX file"),
    "wrong data type": ("train-labels-idx1-ubyte", lambda b: b(np.zeros(3), magic=b"\x00\x00\x0d\x01"),
                        "data type 0x0d"),
    "a header that lies": ("train-images-idx3-ubyte",
                           lambda b: b(np.zeros((2, SIDE, SIDE)), dims=(4_000_000_000, 1024, 1024)),
                           "more than the file can hold"),
    "a lying gzip header": ("train-images-idx3-ubyte.gz",
                            lambda b: gzip.compress(b(np.zeros((2, SIDE, SIDE)), dims=(2_000_000_000, 28, 28))),
                            "more than the file can hold"),
    "labels out of range": ("t10k-labels-idx1-ubyte", lambda b: b(np.full(50, 10)), "labels must be in 0..9"),
    "counts that differ": ("t10k-labels-idx1-ubyte", lambda b: b(np.zeros(49)), "49 labels for 50 images"),
    "not gzip": ("t10k-labels-idx1-ubyte.gz", lambda b: b"not gzip at all", "not a readable IDX file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_files_are_one_line_and_exit_2(tmp_path, case, capsys, idx_files):
    name, payload, fragment = CASES[case]
    root = idx_files.write_set(tmp_path / "set")
    corrupt(root, name, payload(idx_files.idx_bytes))
    with pytest.raises(InputError, match=fragment):
        load_data("mnist", str(root))
    with pytest.raises(SystemExit) as exit_info:
        main(["run-search", "--set", "data.name=mnist", "--set", f"data.dir={root}", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_fifo_is_refused_without_blocking(tmp_path, idx_files):
    root = idx_files.write_set(tmp_path / "set")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    os.mkfifo(root / "t10k-labels-idx1-ubyte")
    with pytest.raises(InputError, match="not a regular file"):
        read_idx(root, "test")


def test_missing_files_name_what_is_expected(tmp_path, idx_files):
    write_set = idx_files.write_set
    root = write_set(tmp_path / "set")
    (root / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InputError, match="missing train-labels-idx1-ubyte"):
        load_data("mnist", str(root))
    with pytest.raises(InputError, match="needs data.dir"):
        load_data("mnist")
    with pytest.raises(InputError, match="train_images = 5: a stratified subset needs"):
        load_data("mnist", str(write_set(tmp_path / "ok")), train_images=5)


@pytest.mark.parametrize("how", [["--set", "data.name=fashion-mnist"], ["--config", "fashion-mnist"]])
def test_without_the_package_fashion_mnist_names_it(tmp_path, monkeypatch, capsys, how):
    monkeypatch.setattr(idx, "FASHION_MNIST_DIR", str(tmp_path / "not-installed"))
    with pytest.raises(SystemExit) as exit_info:
        main(["run-search", *how, "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "apt-get install dataset-fashion-mnist" in err and "train-images-idx3-ubyte" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_preset_is_the_ground_truth_space():
    config = resolve("fashion-mnist", [])
    space = gt.space_for(config)
    assert space is gt.SPACES["fashion-mnist-resnet20-x124"]
    assert (config.data.image_size, config.data.train_images, config.retrain.epochs) == (14, 10_000, 10)
    assert space.config().retrain == config.retrain  # searches retrain as the table was trained


def test_groundtruth_show_judges_the_space_at_its_own_target(capsys):
    """The shipped table's regime figures come at the space's declared target (the recipes' too), unless --target
    names another; the within-target architectures are those at or under it."""
    space = gt.SPACES["fashion-mnist-resnet20-x124"]
    assert FASHION_TARGET == space.target == 2.8e5
    for extra, target in (([], space.target), (["--target", "2e5"], 2e5)):
        with pytest.raises(SystemExit) as exit_info:
            main(["groundtruth", "show", space.name, "--json", *extra])
        assert exit_info.value.code == 0
        fit = json.loads(capsys.readouterr().out)["regime"]
        assert fit["target"] == target
        rows = gt.summarise(gt.groundtruth(space))
        assert fit["within_target"] == int((rows["macs"] <= target).sum())


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_real_fashion_mnist_files():
    data = load_data("fashion-mnist", image_size=14, train_images=10_000)
    assert (len(data.train), len(data.val), len(data.test)) == (10_000, VAL_IMAGES, 10_000)
    assert data.image_size == 14 and np.bincount(data.test.labels.numpy()).tolist() == [1000] * 10
