"""Retraining a searched architecture from scratch as a plain network (paper Sections 5.2–5.3, Figure 8).

SGD with Nesterov momentum and a per-step cosine schedule to 0 (the notes' CIFAR retraining recipe, with the
epochs, batch and rates of ``config.retrain``). Selection never looks at the test split; its accuracy is
recorded for reporting only. Rows go into tables of their own (DESIGN §5, ``records.SCHEMAS``): one row per
retrained architecture in ``retrain`` and the per-epoch curves (``train_loss``, ``val_acc``) in
``retrain_curves``; the search's ``archs`` and ``scalars`` are left alone.

The network is initialised from ``config.seed`` inside :func:`torch.random.fork_rng`, so the result is
deterministic per seed and the caller's global random state is the same after the call as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..compute.runtime import resolve_device, resolve_runtime
from ..compute.training import train_step
from ..config import Config, from_mapping, resolve
from ..data.protocol import load_data
from ..errors import InputError
from ..runs import rundir
from ..runs.records import RecordWriter, part_number, read_run_table
from ..search.accuracy import accuracy, member_accuracies
from ..search.export import load_export
from ..space.flops import count
from ..space.layout import Layout
from ..space.plain import build_plain
from ..space.population import Population, build_population


def train_from_scratch(layout: Layout, widths: Sequence[int], config: Config, data, device: torch.device,
                       progress: bool = False,
                       on_epoch: Callable[[int, int, float, float], None] | None = None) -> tuple[float, float]:
    """Train the plain network of ``layout`` at ``widths`` from a seeded initialisation with the retraining
    recipe (``config.retrain``: SGD, Nesterov, per-step cosine to 0) and return (val acc, test acc).

    ``on_epoch(epoch, step, train_loss, val_acc)`` is called after every epoch. Selection never looks at the
    test split. The global random state is untouched.
    """
    runtime = resolve_runtime(device, config.runtime.precision, config.runtime.memory_format, layout.image_size)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global CPU generator
        torch.manual_seed(config.seed)
        plain = build_plain(layout, widths)
    net = runtime.model(plain)
    forward = torch.compile(net) if config.runtime.compile else net  # fixed widths: compiles once

    def split_accuracy(split: str) -> list[float]:
        batches = data.batches(split, 512, shuffle=False, drop_last=False, device=device, augment=False)
        return [accuracy(forward, batches, runtime=runtime)]

    def on_epoch_of_one(epoch: int, step: int, train_loss: float, val_acc: list[float]) -> None:
        if on_epoch is not None:
            on_epoch(epoch, step, train_loss, val_acc[0])

    val_acc, test_acc = _train(net, forward, F.cross_entropy, split_accuracy, config, data, device, runtime,
                               ",".join(map(str, widths)), progress, on_epoch_of_one)
    return val_acc[0], test_acc[0]


def train_population(layout: Layout, members: Sequence[Sequence[int]], config: Config, data,
                     device: torch.device, progress: bool = False) -> list[tuple[float, float]]:
    """Train the plain networks of ``members`` as one population (:mod:`sharing_lab.space.population`), each from
    its own network's seeded initialisation, with the retraining recipe, on the same batches as
    :func:`train_from_scratch` gives each of them; returns each member's (val acc, test acc). Equal to training
    them one at a time up to float rounding (which training then amplifies: a member's accuracies are those of
    another run of the same recipe, not a copy)."""
    runtime = resolve_runtime(device, config.runtime.precision, config.runtime.memory_format, layout.image_size)
    net = runtime.model(build_population(layout, members, config.seed))

    def split_accuracy(split: str) -> list[float]:
        batches = data.batches(split, 512, shuffle=False, drop_last=False, device=device, augment=False)
        return member_accuracies(net, batches, runtime)

    val_acc, test_acc = _train(net, net, Population.loss, split_accuracy, config, data, device, runtime,
                               f"{len(members)} networks", progress, None)
    return list(zip(val_acc, test_acc))


def _train(net: torch.nn.Module, forward: Callable, loss_fn: Callable, split_accuracy: Callable[[str], list[float]],
           config: Config, data, device: torch.device, runtime, label: str, progress: bool,
           on_epoch: Callable[[int, int, float, list[float]], None] | None) -> tuple[list[float], list[float]]:
    """The retraining recipe's loop (``config.retrain``: SGD, Nesterov, per-step cosine to 0; batches drawn from
    seed + 77) for ``net``; returns the accuracies of ``split_accuracy`` on val and test after the last epoch."""
    cfg = config.retrain
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                nesterov=cfg.nesterov)
    steps_per_epoch = data.num_batches("train", cfg.batch_size)
    if steps_per_epoch == 0:
        raise InputError(f"retrain.batch_size {cfg.batch_size} is larger than the training split")
    total = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    generator = torch.Generator().manual_seed(config.seed + 77)
    step, val_acc = 0, [math.nan]
    for epoch in tqdm(range(cfg.epochs), desc=f"retrain {label}", unit="epoch", disable=not progress):
        net.train()
        loss_sum, seen = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device
        for x, y in data.batches("train", cfg.batch_size, generator=generator, device=device):
            loss, _ = train_step(forward, optimizer, x, y, runtime, loss_fn=loss_fn)
            scheduler.step()
            loss_sum, seen, step = loss_sum + loss * y.numel(), seen + y.numel(), step + 1
        train_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise InputError(f"retraining diverged: the training loss is {train_loss} in epoch {epoch}")
        net.eval()
        val_acc = split_accuracy("val")
        if on_epoch is not None:
            on_epoch(epoch, step, train_loss, val_acc)
    return val_acc, split_accuracy("test")


def retrain(
    layout: Layout, widths: Sequence[int], config: Config, data, device: torch.device, writer: RecordWriter,
    log: Callable[[str], None] = print, progress: bool = False, log_prob: float = float("nan"), rank: int = 0,
) -> dict:
    """Train ``layout`` at ``widths`` from scratch (:func:`train_from_scratch`); record the per-epoch curves
    (``retrain_curves``) and one ``retrain`` row, which is returned (``rank``: the beam rank, or 0)."""
    label = ",".join(map(str, widths))

    def on_epoch(epoch: int, step: int, train_loss: float, val_acc: float) -> None:
        writer.add("retrain_curves", [
            {"step": step, "epoch": epoch, "widths": label, "name": name, "value": value}
            for name, value in (("train_loss", train_loss), ("val_acc", val_acc))
        ])

    val_acc, test_acc = train_from_scratch(layout, widths, config, data, device, progress, on_epoch)
    cost = count(layout, widths)
    row = {"epoch": config.retrain.epochs, "widths": label, "macs": cost.macs, "params": cost.params,
           "log_prob": float(log_prob), "rank": int(rank), "val_acc": float(val_acc), "test_acc": float(test_acc),
           "seed": int(config.seed)}
    writer.add("retrain", [row])
    writer.flush()
    log(f"retrained {label} ({cost.macs / 1e6:.2f}M MACs): val acc {val_acc:.3f}, test acc {test_acc:.3f}")
    return row


def _next_part(run_dir: Path) -> int:
    parts = [number for p in run_dir.glob("*/part-*.parquet") if (number := part_number(p)) is not None]
    return max(parts, default=-1) + 1


def retrain_source(source: str | Path, top: int | None = None, overrides: Sequence[str] = (), out: str | Path = "runs",
                   name: str | None = None, log: Callable[[str], None] = print, progress: bool = False) -> Path:
    """Retrain from scratch what ``source`` names: a search's run directory (its exported architecture, or its
    ``top`` beam architectures, recorded into that run) or an exported ``arch.json`` (recorded into a new run
    ``<out>/<name>``). ``overrides`` are ``key=value`` strings (``retrain.*``, ``runtime.*``, ``device``).
    Returns the run directory written to."""
    path = Path(source)
    if name is not None:
        rundir.check_name(name)  # before any data is loaded; the default name is checked when the run is made
    jobs = []
    if path.is_dir():
        config = resolve(rundir.read_config(path)[0], overrides)
        layout, widths, payload = load_export(path)
        if top:
            beams = read_run_table(path, "archs").query("source == 'beam'").sort_values("log_prob", ascending=False)
            for rank, row in enumerate(beams.head(top).itertuples()):
                jobs.append(([int(w) for w in row.widths.split(",")], float(row.log_prob), rank))
        else:
            jobs.append((widths, float(payload.get("log_prob", float("nan"))), 0))
        run_dir = path
    else:
        layout, widths, payload = load_export(path)
        base = Config()
        if isinstance(payload.get("data"), dict):  # retrain on the data it was searched on, unless overridden
            base = from_mapping({"data": payload["data"]}, base)
        config = resolve(base, overrides)
        jobs.append((widths, float(payload.get("log_prob", float("nan"))), 0))
        run_dir = None
    data = load_data(config.data.name, config.data.dir, config.seed, config.data.image_size, config.data.workers,
                     config.data.train_images)
    if (data.in_channels, data.num_classes, data.image_size) != (layout.in_channels, layout.num_classes,
                                                                 layout.image_size):
        raise InputError(f"{source} is a {layout.in_channels}-channel {layout.image_size}x{layout.image_size} "
                         f"{layout.num_classes}-class network; data {config.data.name!r} is "
                         f"{data.in_channels}-channel {data.image_size}x{data.image_size} {data.num_classes}-class")
    if run_dir is None:
        run_dir = rundir.create(out, name or f"retrain-{path.stem}", config, {"source": str(path)})
    writer = RecordWriter(run_dir, run_dir.name, next_part=_next_part(run_dir))
    device = resolve_device(config.device)
    for widths, log_prob, rank in jobs:
        retrain(layout, widths, config, data, device, writer, log=log, progress=progress, log_prob=log_prob,
                rank=rank)
    return run_dir


def retrain_top(run_dir: str | Path, top: int, log: Callable[[str], None] = print) -> Path:
    """Retrain the ``top`` likeliest beam architectures of a finished search into its own records."""
    return retrain_source(run_dir, top=top, log=log)
