"""Channel-Bench-Macro as a ground truth (issue 25): its two networks, the import of a results file in its format
(written here, never the published file), refusals of malformed files, and a search scored against the import."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sharing_lab
from sharing_lab.cli import main
from sharing_lab.space.flops import count
from sharing_lab.space.layout import build_layout
from sharing_lab.truth import table as gt
from sharing_lab.truth.regime import regime

# Entries of the published ResNet file (issue 25): architecture -> (flops, params).
PUBLISHED = {"1111111": (90_096_896, 963_658), "4444444": (1_436_226_560, 15_356_170)}


def _results(model: str) -> dict:
    """A results file in the benchmark's format for every architecture of ``model``: our counts, accuracies that
    rise with width plus seed noise."""
    layout = build_layout(model)
    rng = np.random.default_rng(0)
    out = {}
    for arch in itertools.product(range(4), repeat=7):
        cost = count(layout, layout.widths_of(arch))
        accs = [float(88 + 0.2 * sum(arch) + noise) for noise in rng.normal(0, 0.1, 3)]
        out["".join(str(a + 1) for a in arch)] = {"acc": accs, "mean": float(np.mean(accs)),
                                                  "std": float(np.std(accs)), "params": cost.params,
                                                  "flops": cost.macs}
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, dict]:
    data = _results("cbm-resnet")
    path = tmp_path_factory.mktemp("cbm") / "Results_ResNet.json"
    path.write_text(json.dumps(data))
    return path, data


def _run(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("arch, expected", PUBLISHED.items())
def test_resnet_counts_equal_the_published_entries(arch, expected):
    layout = build_layout("cbm-resnet")
    widths = layout.widths_of([int(c) - 1 for c in arch])
    cost = count(layout, widths)
    assert (cost.macs, cost.params) == expected


def test_layouts_are_the_benchmarks():
    resnet, mobile = build_layout("cbm-resnet"), build_layout("cbm-mobilenet")
    assert [d.candidates[-1] for d in resnet.decisions] == [256, 256, 256, 512, 512, 512, 512]
    assert [d.candidates[-1] for d in mobile.decisions] == [128, 768, 768, 768, 256, 1536, 1024]
    assert [d.candidates[0] for d in resnet.decisions] == [64, 64, 64, 128, 128, 128, 128]
    # the stride-2 block has no shortcut; the others are identities (the skip widths are tied)
    assert [b.has_shortcut for b in resnet.blocks] == [True, True, False, True, True]
    assert [b.has_shortcut for b in mobile.blocks] == [True, True, False, True]
    assert mobile.head is not None and mobile.classifier_in.decision == 6 and mobile.activation == "relu"


def test_import_show_and_the_table(results, tmp_path, capsys):
    path, data = results
    code, out, err = _run(capsys, "groundtruth", "import", "channel-bench-macro", path, "--space", "cbm-resnet",
                          "--data-dir", tmp_path)
    assert code == 0, err
    table_file = tmp_path / gt.IMPORTED_DIR / "cbm-resnet-cifar10.parquet"
    assert str(table_file) in out and "16384 architectures x 3 seeds" in out
    rows, meta = gt.read_table_file(table_file, gt.SPACES["cbm-resnet-cifar10"])
    assert len(rows) == 3 * 4**7 and sorted(rows["seed"].unique()) == [0, 1, 2]
    assert meta["provenance"]["sha256"] and "licence" in meta["provenance"] and meta["recipe"]["epochs"] == 60
    widest = rows[rows["widths"] == "256,256,256,512,512,512,512"].sort_values("seed")
    assert widest["test_acc"].tolist() == pytest.approx([a / 100 for a in data["4444444"]["acc"]])
    assert widest["bench_mean"].iloc[0] == pytest.approx(data["4444444"]["mean"] / 100)
    assert rows["val_acc"].isna().all()
    code, out, err = _run(capsys, "groundtruth", "show", "cbm-resnet-cifar10", "--data-dir", tmp_path, "--top", "3")
    assert code == 0, err
    assert "resolution" in out and "decision 6" in out and "256,256,256,512,512,512,512" in out
    code, _, err = _run(capsys, "groundtruth", "show", "cbm-resnet-cifar10")
    assert code == 2 and "data directory" in err
    # importing again keeps the table unless told to replace it
    code, _, err = _run(capsys, "groundtruth", "import", "channel-bench-macro", path, "--space", "cbm-resnet",
                        "--data-dir", tmp_path)
    assert code == 2 and "--replace" in err and table_file.is_file()


def _mutations(data: dict) -> dict:
    text = json.dumps(data)
    missing = dict(data)
    del missing["2222222"]
    short = dict(data)
    short["111111"] = short.pop("1111111")
    words = {**data, "3333333": {**data["3333333"], "acc": ["93.1", 93.2, 93.3]}}
    nan = {**data, "3333333": {**data["3333333"], "acc": [float("nan"), 93.2, 93.3]}}
    return {"truncated JSON": (text[: len(text) // 2], "not valid JSON"),
            "wrong digit count": (json.dumps(short), "'111111' is not 7 digits"),
            "architecture missing": (json.dumps(missing), "2222222 is missing"),
            "non-numeric accuracies": (json.dumps(words), "numbers in [0, 100]"),
            "NaN accuracy": (json.dumps(nan), "numbers in [0, 100]"),
            "a list": ("[1, 2, 3]", "expected an object"),
            "million entries": ("{" + ",".join(f'"{i:07d}":0' for i in range(10**6)) + "}", "1,000,000 entries")}


def test_malformed_files_are_one_line_each(results, tmp_path, capsys):
    _, data = results
    for case, (text, fragment) in _mutations(data).items():
        bad = tmp_path / f"{case}.json"
        bad.write_text(text)
        code, out, err = _run(capsys, "groundtruth", "import", "channel-bench-macro", bad, "--space", "cbm-resnet",
                              "--data-dir", tmp_path / "data")
        assert code == 2, case
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (case, err)
        assert fragment in err, (case, err)
    assert not (tmp_path / "data" / gt.IMPORTED_DIR).exists()  # nothing written for a refused file


def test_the_other_spaces_file_is_refused(results, tmp_path, capsys):
    path, _ = results
    code, _, err = _run(capsys, "groundtruth", "import", "channel-bench-macro", path, "--space", "cbm-mobilenet",
                        "--data-dir", tmp_path)
    assert code == 2 and "another space's file" in err and "cbm-mobilenet" in err


def test_a_huge_file_is_refused_before_reading(tmp_path, capsys):
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(65 * 2**20)
    code, _, err = _run(capsys, "groundtruth", "import", "channel-bench-macro", huge, "--space", "cbm-resnet",
                        "--data-dir", tmp_path)
    assert code == 2 and "bytes" in err


def test_regime_figures_on_a_known_table():
    # two decisions, widths {1, 2}; (2, 2) best by 0.5 over (1, 2) and by 1.0 over (2, 1); paired noise known
    rows = []
    for seed, noise in enumerate([0.0, 0.002, -0.002, 0.001]):
        for widths, acc, macs in (("1,1", 0.80, 10), ("1,2", 0.895, 20), ("2,1", 0.89, 30), ("2,2", 0.90, 40)):
            rows.append({"widths": widths, "seed": seed, "macs": macs,
                         "test_acc": acc + (noise if widths == "2,2" else 0.0)})
    fit = regime(pd.DataFrame(rows), target=30)
    assert fit["best"] == "2,2" and fit["second"] == "1,2"
    assert [d["gap"] for d in fit["decisions"]] == pytest.approx([0.5 + 0.025, 1.0 + 0.025])
    assert fit["resolution"] == pytest.approx(np.std([0.0, 0.2, -0.2, 0.1], ddof=1) / 2)
    assert fit["within_best"] == "1,2" and fit["within_largest"] == "2,1"
    assert fit["requirements"]["best within target is not the largest"]
    assert fit["requirements"]["top gaps <= 2 points"]


def _write_cifar(folder: Path, per_file: int = 40) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": rng.integers(0, 256, (per_file, 3072), np.uint8),
                         b"labels": rng.integers(0, 10, per_file).tolist(), b"filenames": [b"x.png"] * per_file}, f,
                        protocol=2)


@pytest.mark.slow
def test_a_search_in_cbm_resnet_is_scored_against_the_import(results, tmp_path, capsys):
    path, _ = results
    cifar = tmp_path / "cifar"
    _write_cifar(cifar)
    assert _run(capsys, "groundtruth", "import", "channel-bench-macro", path, "--space", "cbm-resnet",
                "--data-dir", cifar)[0] == 0
    tiny = ["data.batch_size=16", "data.reward_batch_size=16", "data.eval_batch_size=64", "data.calibration_images=16",
            "data.eval_images=16", "probes.probe_batch=8", "probes.align_archs=2", "search.prob_samples=2",
            "search.epochs=1", "search.warmup_epochs=0", "search.eval_every=1", "search.eval_archs=2",
            "search.beam_top=2", "search.gt_archs=8", "model.meta=max", f"data.dir={cifar}"]
    code, out, err = _run(capsys, "run-search", "--config", "cifar10-cbm-resnet", "--out", tmp_path / "runs",
                          "--name", "cbm", *[part for item in tiny for part in ("--set", item)])
    assert code == 0, err
    assert "ground truth (cbm-resnet-cifar10)" in out and "of 16384" in out
    space = sharing_lab.read_table(tmp_path / "runs" / "cbm", "space")
    assert len(space) == 8  # the fixed sample
    assert "256,256,256,512,512,512,512" in set(space["widths"])  # the best five are in it
    scalars = sharing_lab.read_table(tmp_path / "runs" / "cbm", "scalars")
    assert {"gt_kendall", "gt_top1_prob", "gt_top5_prob"} <= set(scalars["name"])
    top5 = scalars.loc[scalars["name"] == "gt_top5_prob", "value"]
    assert ((top5 > 0) & (top5 < 1)).all()
