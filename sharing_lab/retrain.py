"""Retraining a searched architecture from scratch as a plain network (paper Sections 5.2–5.3, Figure 8).

SGD with Nesterov momentum and a per-step cosine schedule to 0 (the notes' CIFAR retraining recipe, with the
epochs, batch and rates of ``config.retrain``). Selection never looks at the test split; its accuracy is
recorded for reporting only. Rows go into the same tables as the search: ``archs`` with ``source=retrain`` and
``scalars`` named ``retrain_*`` with the architecture's widths in column ``arch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .config import Config
from .errors import InputError
from .evaluate import accuracy
from .flops import count
from .layout import Layout
from .plain import build_plain
from .records import RecordWriter
from .runtime import resolve_runtime


def retrain(
    layout: Layout, widths: Sequence[int], config: Config, data, device: torch.device, writer: RecordWriter,
    log: Callable[[str], None] = print, progress: bool = False, log_prob: float = float("nan"), rank: int = 0,
) -> dict:
    """Train ``layout`` at ``widths`` from scratch; record per-epoch curves and the final accuracies."""
    cfg = config.retrain
    torch.manual_seed(config.seed)
    runtime = resolve_runtime(device, config.runtime.precision, config.runtime.memory_format, layout.image_size)
    net = runtime.model(build_plain(layout, widths))
    forward = torch.compile(net) if config.runtime.compile else net  # fixed widths: compiles once
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                nesterov=cfg.nesterov)
    steps_per_epoch = data.num_batches("train", cfg.batch_size)
    if steps_per_epoch == 0:
        raise InputError(f"retrain.batch_size {cfg.batch_size} is larger than the training split")
    total = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    generator = torch.Generator().manual_seed(config.seed + 77)
    label = ",".join(map(str, widths))
    step = 0
    for epoch in tqdm(range(cfg.epochs), desc=f"retrain {label}", unit="epoch", disable=not progress):
        net.train()
        loss_sum, seen = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device
        for x, y in data.batches("train", cfg.batch_size, generator=generator, device=device):
            with runtime.autocast():
                loss = F.cross_entropy(forward(runtime.input(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum, seen, step = loss_sum + loss.detach() * y.numel(), seen + y.numel(), step + 1
        train_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise InputError(f"retraining diverged: the training loss is {train_loss} in epoch {epoch}")
        net.eval()
        val_acc = accuracy(forward, data.batches("val", 512, shuffle=False, drop_last=False, device=device,
                                                 augment=False), runtime=runtime)
        writer.add("scalars", [
            {"step": step, "epoch": epoch, "name": name, "value": value, "arch": label}
            for name, value in (("retrain_train_loss", train_loss), ("retrain_val_acc", val_acc))
        ])
    test_acc = accuracy(forward, data.batches("test", 512, shuffle=False, drop_last=False, device=device,
                                              augment=False), runtime=runtime)
    cost = count(layout, widths)
    row = {"epoch": cfg.epochs, "source": "retrain", "widths": label, "macs": cost.macs, "log_prob": log_prob,
           "acc": val_acc, "test_acc": test_acc, "rank": rank, "params": cost.params}
    writer.add("archs", [row])
    writer.flush()
    log(f"retrained {label} ({cost.macs / 1e6:.2f}M MACs): val acc {val_acc:.3f}, test acc {test_acc:.3f}")
    return row
