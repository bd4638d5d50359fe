"""Projected wall time of the paper's CIFAR-10 ResNet-20 search (DESIGN §7 target: under 30 min on one H100).

Runs the real search loop of the ``cifar10-resnet20`` preset (19 decisions, {16,32,64,96}, batch 256,
25k weight images + 25k held-out, 600 epochs of which 200 warm-up, evaluation every 5 epochs, probes every 10)
for a few warm-up epochs and a few search-phase epochs, times each part, and projects the whole search:

    200 × warm-up epoch + 400 × search epoch + 120 × evaluation + 60 × probe + final beam/export.

Without ``--cifar DIR`` it writes random images in the CIFAR-10 python format to a temporary directory (speed
does not depend on the pixels). Usage: ``python benchmarks/paper_search.py --device cuda [--json]``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sharing_lab.analysis.bench import elapsed_ms  # noqa: E402
from sharing_lab.config import resolve  # noqa: E402
from sharing_lab.search.evaluation import evaluate  # noqa: E402
from sharing_lab.search.finish import finish  # noqa: E402
from sharing_lab.search.loop import train_epoch  # noqa: E402
from sharing_lab.search.session import open_search  # noqa: E402


def write_random_cifar(folder: Path, per_file: int = 10_000, seed: int = 0) -> Path:
    """Random uint8 images with random labels in the CIFAR-10 python-pickle layout (5 × 10k train, 10k test)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        payload = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                   b"labels": rng.integers(0, 10, per_file).tolist(), b"filenames": [b"x.png"] * per_file}
        with open(folder / name, "wb") as handle:
            pickle.dump(payload, handle, protocol=4)
    return folder


def _timed(fn, device: torch.device) -> float:
    return elapsed_ms(fn, device) / 1e3


def measure(cifar: Path, device: str, epochs: int, overrides: list[str], run_dir: Path) -> dict:
    config = resolve("cifar10-resnet20", [f"data.dir={cifar}", f"device={device}", *overrides])
    run_dir.mkdir(parents=True, exist_ok=True)
    search = open_search(config, run_dir, log=lambda message: None)
    dev = search.device
    cfg = config.search

    def epoch() -> None:
        train_epoch(search)

    warmup = [_timed(epoch, dev) for _ in range(epochs + 1)][1:]  # the first epoch tunes cuDNN for every shape
    search.state.epoch = cfg.warmup_epochs  # into the search phase: controller, rewards, Eq. 5
    searching = [_timed(epoch, dev) for _ in range(epochs + 1)][1:]
    evaluation = [_timed(lambda: evaluate(search.view()), dev) for _ in range(2)][1]  # the first tunes cuDNN
    probe = [_timed(lambda: [p.run(search.probe_view()) for p in search.state.probes], dev) for _ in range(2)][1]
    finished = _timed(lambda: finish(search.view(), search.facts()), dev)
    warm_s, search_s = statistics.median(warmup), statistics.median(searching)
    evaluations = cfg.epochs // cfg.eval_every
    probes = cfg.epochs // config.probes.every_epochs
    projected = (cfg.warmup_epochs * warm_s + (cfg.epochs - cfg.warmup_epochs) * search_s
                 + evaluations * evaluation + probes * probe + finished)
    steps = search.state.steps_per_epoch
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__, **search.runtime.describe(), "steps_per_epoch": steps,
        "warmup_epoch_s": warm_s, "search_epoch_s": search_s, "warmup_step_ms": 1e3 * warm_s / steps,
        "search_step_ms": 1e3 * search_s / steps, "evaluation_s": evaluation, "probe_s": probe, "finish_s": finished,
        "images_per_s_warmup": steps * config.data.batch_size / warm_s,
        "projected_search_min": projected / 60, "target_min": 30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 python directory (default: random images)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per phase (after one untimed)")
    parser.add_argument("--per-file", type=int, default=10_000, help="random images per batch file (smoke runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cifar = args.cifar or write_random_cifar(Path(scratch) / "cifar", args.per_file)
        report = measure(cifar, args.device, args.epochs, args.overrides, Path(scratch) / "run")
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:24s} {value:.4g}" if isinstance(value, float) else f"{key:24s} {value}")


if __name__ == "__main__":
    main()
