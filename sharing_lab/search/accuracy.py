"""Accuracy of architectures: supernet architectures with recalibrated BatchNorm (:class:`ArchScorer`, what every
evaluation of a search uses), and plain networks.

BN statistics in a supernet are shared by every architecture that uses a candidate, so each evaluated
architecture gets its BN statistics recomputed on a fixed set of training images before it is scored in eval
mode (DESIGN §3; on digits running statistics gave 17–54% where recomputed ones gave 69–97%). The controller's
per-step rewards use batch statistics instead (the authors' code does the same), without touching the running
statistics (:func:`batch_statistics`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..compute.runtime import SMALL_STEP_MACS, Runtime, torch_threads
from ..compute.training import recompute_bn_statistics
from ..data.protocol import Dataset
from ..space.flops import count_macs
from ..space.population import member_chunks
from ..space.shared_population import SharedPopulation
from .supernet import Supernet


@torch.no_grad()
def accuracy(model, batches, arch: Sequence[int] | None = None, runtime: Runtime | None = None,
             limit: int | None = None) -> float:
    """Top-1 accuracy of ``model`` (a supernet with ``arch``, or a plain network) over ``batches`` (the first
    ``limit`` images when set); counts are summed on the device and read once."""
    runtime = runtime or Runtime(torch.device("cpu"))
    correct, total = torch.zeros((), dtype=torch.int64), 0
    for x, y in _limit(batches, limit):
        with runtime.autocast():
            logits = model(runtime.input(x), arch) if arch is not None else model(runtime.input(x))
        correct = (logits.argmax(dim=1) == y).sum() + correct.to(y.device)
        total += y.numel()
    return int(correct) / max(total, 1)


@torch.no_grad()
def member_accuracies(population, batches, runtime: Runtime | None = None, limit: int | None = None) -> list[float]:
    """Top-1 accuracy of every member of ``population`` (logits (B, N, K)) over ``batches`` (the first ``limit``
    images when set); counts summed on the device and read once."""
    runtime = runtime or Runtime(torch.device("cpu"))
    correct, total = None, 0
    for x, y in _limit(batches, limit):
        with runtime.autocast():
            logits = population(runtime.input(x))
        hits = (logits.argmax(dim=-1) == y[:, None]).sum(0)
        correct = hits if correct is None else correct + hits
        total += y.numel()
    return [] if correct is None else (correct.double() / max(total, 1)).tolist()


def calibration_batches(data, images: int, batch_size: int, device, runtime: Runtime | None = None
                        ) -> list[torch.Tensor]:
    """The fixed first ``images`` training images, unaugmented, as input batches (same for every architecture)."""
    runtime = runtime or Runtime(torch.device(device))
    batches, seen = [], 0
    for x, _ in data.batches("train", batch_size, shuffle=False, drop_last=False, device=device, augment=False):
        batches.append(runtime.input(x[: images - seen]))
        seen += batches[-1].shape[0]
        if seen >= images:
            break
    return batches


def evaluate_arch(
    supernet: Supernet, arch: Sequence[int], calibration: list[torch.Tensor], data, split: str,
    batch_size: int, device, images: int | None = None, runtime: Runtime | None = None,
) -> float:
    """Accuracy of ``arch`` on ``split`` after recomputing its BN statistics on ``calibration``."""
    runtime = runtime or Runtime(torch.device(device))
    was_training = supernet.training
    with runtime.autocast():
        supernet.recalibrate_bn(arch, calibration)
    supernet.eval()
    batches = data.batches(split, batch_size, shuffle=False, drop_last=False, device=device, augment=False)
    result = accuracy(supernet, batches, arch, runtime, limit=images)
    supernet.train(was_training)
    return result


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recompute the running statistics of every BatchNorm of ``model`` as exact averages over ``batches`` (what
    :meth:`sharing_lab.search.supernet.Supernet.recalibrate_bn` does for one architecture's BatchNorms)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    recompute_bn_statistics(norms, model, batches)


def _limit(batches: Iterator, images: int | None) -> Iterator:
    seen = 0
    for x, y in batches:
        if images is not None and seen >= images:
            return
        if images is not None:
            x, y = x[: images - seen], y[: images - seen]
        seen += y.numel()
        yield x, y


@contextlib.contextmanager
def batch_statistics(model: nn.Module):
    """Run BatchNorm on batch statistics without touching any running statistic or counter.

    Flips module flags only (``track_running_stats`` off, train mode), so it launches no kernels: it runs at
    every controller step.
    """
    if "_batchnorms" not in model.__dict__:
        model.__dict__["_batchnorms"] = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(module, module.track_running_stats, module.training) for module in model.__dict__["_batchnorms"]]
    for module, _, _ in saved:
        module.track_running_stats = False
        module.training = True
    try:
        yield
    finally:
        for module, tracking, training in saved:
            module.track_running_stats = tracking
            module.training = training


@dataclass(frozen=True)
class ArchScorer:
    """Accuracy of an architecture of ``supernet`` on a split: BN statistics recalibrated on ``calibration``
    (``bn_evaluation = "recalibrated"``) or taken from the evaluation batches (``"batch"``); ``images`` limits
    the images scored per architecture (None: the whole split)."""

    supernet: Supernet
    data: Dataset
    runtime: Runtime
    calibration: list[torch.Tensor]
    batch_size: int
    images: int | None
    bn_evaluation: str

    max_bytes: float = 2**30  # activations a population of architectures may hold (``many``)

    def many(self, archs: Sequence[Sequence[int]], split: str = "val") -> list[float]:
        """The accuracies of ``archs``, each as :meth:`__call__` scores it, computed as one tree of populations of
        their plain networks (:mod:`sharing_lab.space.shared_population`: what several architectures share runs
        once; as many architectures at once as ``max_bytes`` of activations allows): one recalibration pass and
        one pass over the split for many architectures. Equal to scoring them one at a time up to float rounding;
        the supernet's own BatchNorm statistics are left as they are.

        Only where operators are small (:meth:`population_pays`); elsewhere one at a time, since a population pads
        every member to the widest member's channels: on the CIFAR-10 ResNet-20 preset (CPU, 20 sampled
        architectures) the population took 24.3 s where one at a time took 22.7 s."""
        if not self.population_pays(archs):
            return [self(arch, split) for arch in archs]
        with torch_threads(self.runtime.wide_threads):  # a population's operators are large: every core helps
            return self._many(archs, split)

    def population_pays(self, archs: Sequence[Sequence[int]]) -> bool:
        """Whether :meth:`many` scores ``archs`` as a population: when each architecture's batch is below
        :data:`~sharing_lab.compute.runtime.SMALL_STEP_MACS` multiply-accumulates, where an operator costs its
        call rather than its arithmetic (the embedded space's widest: 3.8e7 per evaluation batch of 512)."""
        layout = self.supernet.layout
        widest = max((count_macs(layout, layout.widths_of(arch)) for arch in archs), default=0)
        return widest * self.batch_size < SMALL_STEP_MACS

    def _many(self, archs: Sequence[Sequence[int]], split: str) -> list[float]:
        layout, device = self.supernet.layout, self.runtime.device
        members = [layout.widths_of(arch) for arch in archs]
        scores: list[float] = []
        for chunk in member_chunks(layout, members, self.batch_size, self.max_bytes, training=False):
            states = self.supernet.plain_states(archs[chunk])
            recalibrating = self.bn_evaluation != "batch"
            population = SharedPopulation(layout, members[chunk]).load_members(states, not recalibrating).to(device)
            batches = self.data.batches(split, self.batch_size, shuffle=False, drop_last=False, device=device,
                                        augment=False)
            if self.bn_evaluation == "batch":
                with batch_statistics(population):
                    scores.extend(member_accuracies(population, batches, self.runtime, self.images))
                continue
            with self.runtime.autocast():
                recalibrate_bn(population, self.calibration)
            population.eval()
            scores.extend(member_accuracies(population, batches, self.runtime, self.images))
        return scores

    def __call__(self, arch: Sequence[int], split: str = "val") -> float:
        device = self.runtime.device
        if self.bn_evaluation == "batch":
            batches = self.data.batches(split, self.batch_size, shuffle=False, drop_last=False, device=device,
                                        augment=False)
            with batch_statistics(self.supernet):
                return accuracy(self.supernet, batches, arch, self.runtime, limit=self.images)
        return evaluate_arch(self.supernet, arch, self.calibration, self.data, split, self.batch_size, device,
                             self.images, self.runtime)
