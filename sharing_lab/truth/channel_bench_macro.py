"""Channel-Bench-Macro (Su et al., BCNet, CVPR 2021 / TPAMI 2022; ``github.com/xiusu/Channel-Bench-Macro``) as a
ground truth: its results file converted into this toolkit's table format (:mod:`sharing_lab.truth.table`).

The benchmark trained every architecture of two 7-decision spaces (:mod:`sharing_lab.space.models.
channel_bench_macro`) on CIFAR-10 from scratch, three seeds each: ``Results_ResNet.json`` and
``Results_MobileNet.json`` map an architecture string of seven digits 1–4 (multiplier × 4 per decision) to
``{"acc": [three test accuracies in %], "mean", "std", "params", "flops"}``. Its ``flops`` count the
multiply-accumulates of the convolutions and the classifier and its ``params`` the conv and linear weights,
the classifier bias and BatchNorm's affine pair: this toolkit's convention (:mod:`sharing_lab.space.flops`), so
every entry's counts must equal ours; a file whose counts differ is another space's (or damaged) and is refused.

The file is read as hostile input: JSON only (nothing is unpickled), its size bounded before it is read, every
entry checked; the repository states no licence, so the file is never shipped, only converted from the user's copy.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import pyarrow as pa

from ..errors import InputError
from ..fileio import read_json
from ..space.flops import count
from ..space.layout import Layout
from ..space.search_space import layout_of
from . import table as gt

SOURCE = "channel-bench-macro"
MAX_BYTES = 64 * 2**20  # the published files are 2.8 MB
MAX_SEEDS = 10
EXTRA = {"bench_mean": pa.float64(), "bench_std": pa.float64()}  # the file's own mean and std (fractions)
# What the benchmark's train.py does (read from its repository; the file records none of it).
RECIPE = {"source": "Channel-Bench-Macro train.py", "epochs": 60, "batch_size": 256, "optimizer": "SGD",
          "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine", "nesterov": False,
          "augmentation": "random crop 32 (pad 4), horizontal flip", "train_images": 50000,
          "test_acc": "the best epoch's CIFAR-10 test accuracy (train.py keeps the maximum over the 60 epochs)"}
PROVENANCE = {"benchmark": "Channel-Bench-Macro", "url": "https://github.com/xiusu/Channel-Bench-Macro",
              "citation": "Su et al., BCNet: Searching for Network Width with Bilaterally Coupled Network, CVPR 2021",
              "licence": "the repository states no licence: the file is not redistributed; this table is derived "
                         "from the user's copy for their own use"}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_results(path: str | Path, layout: Layout) -> tuple[list[dict], int]:
    """The table rows of a Channel-Bench-Macro results file for ``layout`` (one per architecture and seed:
    ``test_acc`` the file's accuracy / 100, no validation accuracy or training time) and the seeds per
    architecture. Every architecture of the space must be present once, with finite accuracies in [0, 100]
    and our MACs and parameter counts; anything else is one :class:`InputError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(f"{path} cannot be read: {error.strerror or error}") from None
    if size > MAX_BYTES:
        raise InputError(f"{path} holds {size:,} bytes; a Channel-Bench-Macro results file holds about 2.8 MB "
                         f"(at most {MAX_BYTES:,} read)")
    results = read_json(path, "Channel-Bench-Macro file")
    candidates = [len(decision.candidates) for decision in layout.decisions]
    expected = math.prod(candidates)
    if not isinstance(results, dict):
        raise InputError(f"{path}: expected an object of architectures, found {type(results).__name__}")
    if len(results) > expected:
        raise InputError(f"{path} has {len(results):,} entries; the {layout.model} space has {expected:,} "
                         "architectures")
    rows, seeds = [], None
    for arch in itertools.product(*(range(n) for n in candidates)):
        name = "".join(str(index + 1) for index in arch)
        entry = results.get(name)
        if entry is None:
            bad = next((key for key in results if not _is_arch(key, candidates)), None)
            what = f"entry {bad[:20]!r} is not {len(candidates)} digits 1-4" if bad is not None else \
                f"architecture {name} is missing ({len(results):,} entries of {expected:,})"
            raise InputError(f"{path}: {what} (Channel-Bench-Macro's format for {layout.model})")
        accuracies = _check_entry(path, name, entry)
        seeds = len(accuracies) if seeds is None else seeds
        if len(accuracies) != seeds:
            raise InputError(f"{path}: {name} has {len(accuracies)} accuracies, the others {seeds}")
        widths = layout.widths_of(arch)
        cost = count(layout, widths)
        if (cost.macs, cost.params) != (entry["flops"], entry["params"]):
            raise InputError(f"{path}: {name} has flops {entry['flops']:,} and params {entry['params']:,}; "
                             f"{layout.model}'s are {cost.macs:,} and {cost.params:,} (another space's file?)")
        text = ",".join(map(str, widths))
        rows.extend({"widths": text, "seed": seed, "macs": cost.macs, "params": cost.params, "val_acc": math.nan,
                     "test_acc": acc / 100, "train_s": math.nan, "bench_mean": entry["mean"] / 100,
                     "bench_std": entry["std"] / 100} for seed, acc in enumerate(accuracies))
    return rows, seeds or 0


def _is_arch(key: str, candidates: list[int]) -> bool:
    return len(key) == len(candidates) and all(c.isdigit() and 1 <= int(c) <= n for c, n in zip(key, candidates))


def _check_entry(path: Path, name: str, entry: object) -> list[float]:
    """The accuracies of one entry, after checking its fields."""
    if not isinstance(entry, dict):
        raise InputError(f"{path}: {name} is {type(entry).__name__}, not an object")
    missing = [key for key in ("acc", "mean", "std", "params", "flops") if key not in entry]
    if missing:
        raise InputError(f"{path}: {name} lacks {', '.join(missing)}")
    accuracies = entry["acc"]
    if not isinstance(accuracies, list) or not 1 <= len(accuracies) <= MAX_SEEDS:
        raise InputError(f"{path}: {name}'s acc must be a list of 1 to {MAX_SEEDS} accuracies")
    if not all(_number(acc) and 0 <= acc <= 100 for acc in accuracies):
        raise InputError(f"{path}: {name}'s accuracies must be numbers in [0, 100], found {accuracies[:MAX_SEEDS]!r}")
    if not (_number(entry["mean"]) and _number(entry["std"])):
        raise InputError(f"{path}: {name}'s mean and std must be numbers")
    if not (_integer(entry["flops"]) and _integer(entry["params"])):
        raise InputError(f"{path}: {name}'s flops and params must be integers")
    return [float(acc) for acc in accuracies]


def import_results(path: str | Path, space: str, data_dir: str | Path, replace: bool = False) -> Path:
    """Convert the user's Channel-Bench-Macro results file for the ground-truth space ``space`` (one with
    ``source = "channel-bench-macro"``) into its table in ``data_dir``; an existing table is kept unless
    ``replace``. Returns the table's path."""
    truth = gt.resolve_space(space)
    if truth.source != SOURCE:
        known = ", ".join(name for name, s in gt.SPACES.items() if s.source == SOURCE)
        raise InputError(f"{space!r} is not a Channel-Bench-Macro space; known: {known}")
    out = gt.table_path(truth.name, data_dir)
    if out.exists() and not replace:
        raise InputError(f"{out} exists; remove it or pass --replace")
    layout = layout_of(truth.config().model)
    rows, seeds = read_results(path, layout)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    meta = {"format": gt.FORMAT, "space": truth.name, "description": truth.description, "key": truth.key(),
            "seeds": list(range(seeds)), "recipe": RECIPE, "wall_s": 0.0,
            "provenance": {**PROVENANCE, "file": Path(path).name, "sha256": digest}}
    out.parent.mkdir(parents=True, exist_ok=True)
    gt.write_table_file(out, rows, meta, EXTRA)
    return out
