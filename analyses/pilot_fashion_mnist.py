"""Pilot for a Fashion-MNIST ground-truth space (issue 24): train a few architectures of a candidate space for a
few seeds, each seed's architectures as one population (same batches: paired comparisons), and report what the
space's choice needs: accuracy per architecture, the seed-to-seed spread, the paired difference between the
best architecture and the second-best candidate of each decision (others at their best) with its standard error
over seeds (the resolution), and the training time.

    python analyses/pilot_fashion_mnist.py --out pilot.csv --seeds 0 1 2 3 --jobs 2 \
        --set model.multipliers=[0.25,0.5,0.75,1.0] --set data.image_size=14 --set data.train_images=10000 \
        --set retrain.epochs=10 --set retrain.batch_size=128

Resumable: rows already in ``--out`` are kept. Needs the IDX files (Debian's dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sharing_lab.analysis.retrain import train_population
from sharing_lab.compute.runtime import torch_threads
from sharing_lab.config import resolve
from sharing_lab.data.protocol import load_data
from sharing_lab.space.search_space import build_space

BASE = ("model.name=resnet20", "model.granularity=stage", "data.name=fashion-mnist")


def archs_of(decisions: int, candidates: int) -> list[tuple[int, ...]]:
    """The uniform architectures, and the best one's neighbours: one decision one candidate down."""
    top = candidates - 1
    uniform = [(k,) * decisions for k in range(candidates)]
    neighbours = [tuple(top - (i == d) for i in range(decisions)) for d in range(decisions)]
    return uniform + neighbours


def train_seed(overrides: tuple[str, ...], seed: int) -> list[dict]:
    config = resolve(None, [*BASE, *overrides, f"seed={seed}"])
    data = load_data(config.data.name, config.data.dir, seed, config.data.image_size, 0, config.data.train_images)
    space = build_space(config, data.num_classes, data.in_channels, data.image_size)
    archs = archs_of(space.num_decisions, min(space.num_candidates))
    members = [space.widths_of(arch) for arch in archs]
    start = time.perf_counter()
    with torch_threads(1):
        scores = train_population(space.layout, members, config, data, torch.device("cpu"))
    seconds = time.perf_counter() - start
    return [{"arch": "-".join(map(str, arch)), "widths": ",".join(map(str, widths)), "seed": seed,
             "macs": space.cost(arch).macs, "val_acc": val, "test_acc": test, "population_s": seconds}
            for arch, widths, (val, test) in zip(archs, members, scores)]


def report(frame: pd.DataFrame) -> None:
    table = frame.pivot_table(index="arch", columns="seed", values="test_acc") * 100
    print(table.round(2).assign(mean=table.mean(axis=1), sd=table.std(axis=1, ddof=1)).round(2).to_string())
    best = table.mean(axis=1).idxmax()
    print(f"best {best}: {table.loc[best].mean():.2f}%")
    for arch in table.index:
        if arch != best and sum(a != b for a, b in zip(arch.split("-"), best.split("-"))) == 1:
            diff = table.loc[best] - table.loc[arch]
            se = diff.std(ddof=1) / np.sqrt(diff.count())
            print(f"best - {arch}: {diff.mean():+.2f} points, paired sd {diff.std(ddof=1):.2f}, se {se:.2f} "
                  f"over {diff.count()} seeds (se 0.25 needs {int(np.ceil((diff.std(ddof=1) / 0.25) ** 2))} seeds)")
    print(f"population time per seed: {frame.groupby('seed')['population_s'].first().mean():.0f} s (one thread)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    overrides = tuple(args.overrides)
    done = pd.read_csv(args.out, dtype={"arch": str}) if args.out.exists() else pd.DataFrame(columns=["seed"])
    todo = [seed for seed in args.seeds if seed not in set(done["seed"])]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for rows in pool.map(train_seed, [overrides] * len(todo), todo):
            new = not args.out.exists()
            with args.out.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                if new:
                    writer.writeheader()
                writer.writerows(rows)
            print(f"seed {rows[0]['seed']}: {rows[0]['population_s']:.0f} s", flush=True)
    report(pd.read_csv(args.out, dtype={"arch": str}))


if __name__ == "__main__":
    main()
