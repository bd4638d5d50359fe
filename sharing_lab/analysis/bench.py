"""Benchmarks of the search step on the user's machine (DESIGN §7): APS step against a plain network of the
same widths, the Φ update, probe cost, throughput, and a projection of the paper's ResNet-20 search.

Timings interleave the variants being compared and report medians, so background load affects both sides.
Both sides run with the same :class:`~sharing_lab.compute.runtime.Runtime` (on CUDA: bf16 autocast, channels-last).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..aps.schemes.base import get_scheme
from ..compute.runtime import Runtime, resolve_runtime, run_settings
from ..compute.training import train_step
from ..config import Config, resolve
from ..search.accuracy import batch_statistics
from ..search.controller import Controller, Reinforce, reward
from ..search.loop import run, train_epoch
from ..search.session import open_search
from ..search.supernet import Supernet
from ..space.layout import build_layout
from ..space.plain import build_plain
from ..space.search_space import SearchSpace
from .opcount import count_ops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def elapsed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of ``fn()`` in milliseconds, the device's queued work included (the project's one timer)."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def step_ratio(scheme: str, runtime: Runtime, batch: int, image_size: int, repeats: int, seed: int = 0,
               widths=(16, 32, 64, 96), model: str = "resnet20") -> dict:
    """Median time of one training step of the APS supernet on random architectures against a plain network
    with the same widths (fresh optimiser state per network, same batch)."""
    device = runtime.device
    layout = build_layout(model, widths=list(widths), image_size=image_size)
    space = SearchSpace(layout, get_scheme(scheme))
    supernet = runtime.model(Supernet(space, seed))
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    x = runtime.input(torch.randn(batch, 3, image_size, image_size, device=device))
    y = torch.randint(0, 10, (batch,), device=device)
    archs = [space.sample_uniform(generator) for _ in range(repeats)]
    plains = {}
    aps_ms, plain_ms = [], []
    for index, arch in enumerate(archs + archs[:2]):  # the first two of each are warm-up
        widths_now = layout.widths_of(arch)
        if widths_now not in plains:
            net = runtime.model(build_plain(layout, widths_now))
            plains[widths_now] = (net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9))
        net, plain_optimizer = plains[widths_now]
        train_step(net, plain_optimizer, x, y, runtime)  # warm the plain net's kernels for these shapes
        a = elapsed_ms(lambda arch=arch: train_step(supernet, optimizer, x, y, runtime, arch), device)
        p = elapsed_ms(lambda net=net, opt=plain_optimizer: train_step(net, opt, x, y, runtime), device)
        if index >= 2:
            aps_ms.append(a)
            plain_ms.append(p)
    aps, plain = statistics.median(aps_ms), statistics.median(plain_ms)
    return {"scheme": scheme, "aps_ms": aps, "plain_ms": plain, "ratio": aps / plain,
            "images_per_s": batch / (aps / 1e3)}


def transition_ms(device: torch.device, repeats: int, widths=(16, 32, 64, 96)) -> float:
    """Median time of one Eq. 5 step over every layer of a transitionary ResNet-20 supernet."""
    space = SearchSpace(build_layout("resnet20", widths=list(widths)), get_scheme("transitionary"))
    supernet = Supernet(space).to(device)
    supernet.transition(1e-9)
    return statistics.median(elapsed_ms(lambda: supernet.transition(1e-9), device) for _ in range(repeats))


def controller_step_ms(repeats: int, decisions: int = 19, candidates: int = 4) -> float:
    """Median time of a search step's controller work (no supernet forward), on the CPU, where the search keeps
    the controller: the step's two architectures in one pass (one of them with its log-probability) and the
    REINFORCE update."""
    device = torch.device("cpu")
    controller = Controller([candidates] * decisions)
    reinforce = Reinforce(controller, 1e-4, 4e-3, 0.99)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        _, sample = controller.sample_many(None, generator, (True, False))
        reinforce.update(sample, reward(0.5, 1.0, None))

    return statistics.median(elapsed_ms(step, device) for _ in range(repeats))


def run_benchmarks(device: torch.device, repeats: int = 20, batch: int = 128, probe_overhead: float | None = None,
                   precision: str = "auto", memory_format: str = "auto") -> dict:
    """Every benchmark number in one dict (keys at least ``step_ratio``, ``probe_overhead``, ``images_per_s``,
    ``device``). ``probe_overhead`` is measured by the caller on a real search (it needs whole epochs)."""
    runtime = resolve_runtime(device, precision, memory_format, image_size=32)
    exact = step_ratio("ordinal", runtime, batch, 32, repeats)
    einsum = step_ratio("transitionary", runtime, batch, 32, repeats)
    phi_ms = transition_ms(device, repeats)
    controller_ms = controller_step_ms(repeats)
    # Paper's CIFAR-10 ResNet-20 search: 25k weight images at batch 256 for 600 epochs (200 warm-up); each search
    # step adds a controller step, its 256-image reward forward (≈ a third of a training step) and an Eq. 5 step.
    steps_per_epoch = 25_000 // 256
    scale = 256 / batch
    train_s = einsum["aps_ms"] * scale / 1e3
    search_step_s = train_s * (1 + 1 / 3) + (controller_ms + phi_ms) / 1e3
    projected = steps_per_epoch * (200 * train_s + 400 * search_step_s)
    return {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": batch,
        **{key: value for key, value in runtime.describe().items() if key != "device"},  # device: the card's name
        "step_ratio": exact["ratio"], "step_ratio_einsum": einsum["ratio"],
        "aps_step_ms": exact["aps_ms"], "plain_step_ms": exact["plain_ms"],
        "aps_step_einsum_ms": einsum["aps_ms"], "images_per_s": exact["images_per_s"],
        "phi_update_ms": phi_ms, "controller_step_ms": controller_ms,
        "probe_overhead": probe_overhead,
        "projected_paper_resnet20_search_h": projected / 3600,
    }


def probe_overhead(device: torch.device, run_dir, epochs: int = 3) -> dict:
    """Share of wall time the default probes add to the default embedded search at their default cadence.

    Times warm-up epochs (the cheapest, so the share is an upper bound) and the probe's run, then divides the
    probe's cost by the training time between two probe runs. The first epoch and probe are not counted (first
    calls: allocations, cuDNN tuning of the shapes they meet).
    """
    config = resolve(None, [f"device={device}"])  # the digits default: small, so launch-bound on GPUs
    search = open_search(config, run_dir, log=lambda message: None)
    epoch_s, probe_s = [], []
    for _ in range(epochs + 1):
        epoch_s.append(elapsed_ms(lambda: train_epoch(search), device) / 1e3)
        search.state.epoch += 1
        probe_s.append(sum(elapsed_ms(lambda p=probe: p.run(search.probe_view()), device) / 1e3
                           for probe in search.state.probes))
    epoch_s, probe_s = epoch_s[1:], probe_s[1:]
    every = config.probes.every_epochs
    share = statistics.median(probe_s) / (every * statistics.median(epoch_s))
    return {"probe_overhead": share, "probe_s": statistics.median(probe_s), "epoch_s": statistics.median(epoch_s),
            "probe_every_epochs": every}


def ops_report(model: str = "resnet20", batch: int = 32, widths=(16, 32, 64, 96), granularity: str = "conv",
               scheme: str = "transitionary", archs: int = 4, seed: int = 0, tau: float = 1e-5,
               image_size: int | None = None) -> dict:
    """Aten operators per step of the search's pieces, counted by :class:`sharing_lab.analysis.opcount.OpCounter` on the
    CPU (deterministic; DESIGN §7), paper preset by default (ResNet-20, one decision per conv, {16, 32, 64, 96},
    transitionary, SGD 0.1/0.9/wd 2e-4 in its foreach form as on CUDA, controller as the search builds it).

    ``train_step``: the loop's weight step (:func:`sharing_lab.compute.training.train_step`: forward, backward, SGD);
    ``forward``: the reward (no-grad forward under batch statistics, argmax, correct count); ``transition``:
    :meth:`Supernet.transition` (Eq. 5 on every movable layer); ``controller``: one search step's controller
    work (an architecture-only sample, a sample with gradient, :meth:`Reinforce.update`); ``plain_train_step``:
    the plain network of the same widths. Each is the mean over ``archs`` random architectures (fixed seed),
    counted on a second call (first calls fill caches), rounded to an integer. The counts do not depend on
    ``batch`` or ``image_size`` (default: the model's), which only make the run slower or faster.
    """
    runtime = Runtime(torch.device("cpu"))
    layout = build_layout(model, granularity, list(widths), image_size=image_size)
    space = SearchSpace(layout, get_scheme(scheme))
    supernet = Supernet(space, seed)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4, foreach=True)
    generator = torch.Generator().manual_seed(seed)
    drawn = [space.sample_uniform(generator) for _ in range(archs)]  # first: the same for every batch size
    size = layout.image_size
    x = torch.randn(batch, layout.in_channels, size, size, generator=generator)
    y = torch.randint(0, layout.num_classes, (batch,), generator=generator)
    controller = Controller(space.num_candidates, 100, seed)
    reinforce = Reinforce(controller, 1.6e-4, 4e-3, 0.99)
    sample_generator = torch.Generator().manual_seed(seed + 1)

    def flops_left(prefix) -> float:
        return space.flops_left(prefix, None)

    def reward_forward(arch) -> None:
        with torch.no_grad(), batch_statistics(supernet):
            (supernet(x, arch).argmax(1) == y).sum()

    def controller_step() -> None:  # what loop.decide and loop.controller_step do on the controller
        _, sample = controller.sample_many(flops_left, sample_generator, (True, False))
        reinforce.update(sample, 0.5)

    plains = {}

    def plain_step(arch) -> None:
        widths_now = layout.widths_of(arch)
        if widths_now not in plains:
            net = build_plain(layout, widths_now)
            plains[widths_now] = (net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4,
                                                       foreach=True))
        train_step(*plains[widths_now], x, y, runtime)

    pieces: dict[str, Callable[[tuple[int, ...]], object]] = {
        "train_step": lambda arch: train_step(supernet, optimizer, x, y, runtime, arch),
        "forward": reward_forward,
        "transition": lambda arch: supernet.transition(tau),
        "controller": lambda arch: controller_step(),
        "plain_train_step": plain_step,
    }
    ops = {}
    for name, piece in pieces.items():
        totals = {"dispatched": 0, "launching": 0}
        for arch in drawn:
            piece(arch)  # warm: caches, optimiser state, the REINFORCE baseline
            counts = count_ops(lambda arch=arch, piece=piece: piece(arch)).counts()
            totals = {key: totals[key] + counts[key] for key in totals}
        ops[name] = {key: round(value / len(drawn)) for key, value in totals.items()}
    return {"ops": ops, "model": model, "batch": batch, "image_size": layout.image_size, "widths": list(widths),
            "granularity": granularity, "scheme": scheme, "decisions": space.num_decisions, "archs": archs,
            "seed": seed, "device": "cpu", "torch": torch.__version__}


def phases(config: Config, run_dir: Path, sync: bool = True) -> dict:
    """Where a search's time goes: the search of ``config`` run to its end in ``run_dir`` (one process, its
    thread policy), its wall seconds per phase (:class:`sharing_lab.search.clock.PhaseClock`, synchronising a GPU
    at every lap when ``sync``) and the summary figure's; ``total_s`` their sum (the process's start and imports
    not included)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    search = open_search(config, run_dir, log=lambda message: None)
    search.clock.sync, search.clock.device = sync and search.device.type == "cuda", search.device
    with run_settings(search.runtime):
        run(search)
    breakdown = search.clock.breakdown()
    started = time.perf_counter()
    from ..plots.summary import write_or_log  # matplotlib and seaborn: 0.7 s to import, paid by runs that draw

    write_or_log(run_dir, lambda message: None)
    breakdown["summary figure"] = {"s": round(time.perf_counter() - started, 4), "laps": 1}
    total = sum(phase["s"] for phase in breakdown.values())
    for phase in breakdown.values():
        phase["share"] = round(phase["s"] / total, 4)
    return {"phases": breakdown, "total_s": total, "threads": search.runtime.threads,
            "steps": search.state.step, "epochs": config.search.epochs, "device": str(search.device)}


def loop_ops(config: Config, run_dir: Path) -> dict:
    """Aten operators per step of the real training loop (:func:`sharing_lab.search.loop.train_epoch`: data,
    decisions, weight step, divergence guard, reward, transition, controller, probes at their cadence), for a
    warm-up epoch and a search epoch, each counted on the second epoch of its kind (first calls fill caches)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    search = open_search(config, run_dir, log=lambda message: None)
    steps, counts = search.state.steps_per_epoch, {}
    for name, epoch in (("warmup_step", 0), ("search_step", config.search.warmup_epochs)):
        search.state.epoch = epoch
        train_epoch(search)
        counter = count_ops(lambda: train_epoch(search))
        counts[name] = {"dispatched": round(counter.dispatched / steps), "launching": round(counter.launching / steps)}
    return counts
