"""Probes: measurements taken while a search runs (paper Section 3.3; DESIGN §2 and §5).

A probe is an object the search loop calls at its cadence; it writes rows to the run's records. The built-in
:class:`SharingProbe` records, per APS layer, the sharing level Φ_l (Eq. 4) and the authors' code's variant,
the gradient alignment of Eq. 3 between K sampled architectures on one fixed probe batch, and the coupled
gradient norm of Section 3.3. Users add their own by subclassing :class:`Probe` and passing it to
:class:`sharing_lab.search.Search` (``probes=[...]``); ``probes.enabled = false`` switches them all off.

Probes never touch the training state: gradients come from ``torch.autograd.grad`` (no ``.grad`` written, no
optimiser step), BatchNorm runs on batch statistics with running statistics untouched, and random draws use
the probe's own generator (checkpointed with the run).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .config import ProbeConfig
from .evaluate import batch_statistics
from .sharing import phi, phi_code


@dataclass
class ProbeContext:
    """What a probe may read: the running search (``search.supernet``, ``search.writer``, …), step, epoch."""

    search: Any
    step: int
    epoch: int


class Probe(ABC):
    """Base class. ``every_steps`` > 0 runs :meth:`run` every that many steps; 0 runs it at each epoch end
    (evaluations happen at epoch ends, so every evaluation is probed too)."""

    name = "probe"

    def __init__(self, every_steps: int = 0) -> None:
        self.every_steps = every_steps

    def due(self, step: int, steps_per_epoch: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def end_of_epoch(self, context: ProbeContext) -> None:
        if self.every_steps == 0:
            self.run(context)

    @abstractmethod
    def run(self, context: ProbeContext) -> None:
        """Take the measurement and add rows to ``context.search.writer``."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of two gradients as a float64 0-d tensor on their device (NaN if one is zero)."""
    denominator = (a.norm() * b.norm()).double()
    value = (a * b).sum().double() / denominator
    return torch.where(denominator > 0, value, torch.full_like(value, float("nan")))


def _layer_indices(supernet, arch) -> list[tuple[int, int] | None]:
    """(input candidate, output candidate) used by each APS layer under ``arch`` (None: layer unused)."""
    layout, widths = supernet.layout, supernet.layout.widths_of(arch)

    def index(channels):
        return arch[channels.decision] if channels.decision is not None else 0

    used = [(index(layout.stem.inputs), index(layout.stem.outputs))]
    for block in layout.blocks:
        used.extend((index(c.inputs), index(c.outputs)) for c in block.convs)
        if block.projection_possible():
            needed = block.projection_needed(widths)
            used.append((index(block.inputs), index(block.outputs)) if needed else None)
    if layout.head is not None:
        used.append((index(layout.head.inputs), index(layout.head.outputs)))
    used.append((index(layout.classifier_in), 0))
    return used


def coupled_gradient(module, grad_b: torch.Tensor, used_a: tuple[int, int], used_b: tuple[int, int]) -> torch.Tensor:
    """(Q^a)ᵀQ^b G^b (P^b)ᵀP^a of Section 3.3: the part of b's kernel gradient G^b that lands on a's kernel."""
    (i_a, o_a), (i_b, o_b) = used_a, used_b
    P = module.out_side.matrices
    out_map = P[o_a].T @ P[o_b]
    if module.in_side is None:  # depthwise: no input mixing
        return torch.einsum("xu,uj...->xj...", out_map, grad_b)
    Q = module.in_side.matrices
    in_map = Q[i_b].T @ Q[i_a]
    return torch.einsum("xu,uv...,vy->xy...", out_map, grad_b, in_map)


class SharingProbe(Probe):
    """Φ_l, Φ_code, gradient alignment (Eq. 3) and coupled-gradient norm per layer (tables ``layers``, ``pairs``,
    scalars ``phi_code``, ``cos_align``, ``coupled_norm``)."""

    name = "sharing"

    def __init__(self, every_steps: int = 0, every_epochs: int = 1, align_archs: int = 4, probe_batch: int = 128,
                 seed: int = 0) -> None:
        super().__init__(every_steps)
        self.every_epochs, self.align_archs, self.probe_batch = every_epochs, align_archs, probe_batch
        self.generator = torch.Generator().manual_seed(10_007 + seed)

    def end_of_epoch(self, context: ProbeContext) -> None:
        if self.every_steps == 0 and ((context.epoch + 1) % self.every_epochs == 0 or self._evaluating(context)):
            self.run(context)

    @staticmethod
    def _evaluating(context: ProbeContext) -> bool:
        cfg = context.search.config.search
        return (context.epoch + 1) % cfg.eval_every == 0 or context.epoch + 1 == cfg.epochs

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def _probe_batch(self, search) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.arange(min(self.probe_batch, search.data.train.labels.numel()))
        return search.data.batch("train", indices, device=search.device)

    def _gradients(self, search, x, y, arch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Loss gradients w.r.t. every layer's meta-weight and w.r.t. the candidate kernel it used."""
        supernet = search.supernet
        layers = [module for _, module in supernet.aps_layers()]
        for module in layers:
            module.capture_kernel = True
        try:
            with torch.enable_grad(), batch_statistics(supernet):
                loss = F.cross_entropy(supernet(x, arch), y)
                kernels = [module.last_kernel for module in layers]
                used = [k is not None for k in kernels]
                targets = [m.weight for m in layers] + [k for k in kernels if k is not None]
                grads = torch.autograd.grad(loss, targets, allow_unused=True)
        finally:
            for module in layers:
                module.capture_kernel = False
                module.last_kernel = None
        meta = [g if g is not None else torch.zeros_like(m.weight) for g, m in zip(grads[: len(layers)], layers)]
        kernel_iter = iter(grads[len(layers):])
        kernel_grads = [next(kernel_iter) if flag else None for flag in used]
        return meta, kernel_grads

    @torch.no_grad()
    def run(self, context: ProbeContext) -> None:
        """Every quantity is computed on the search's device and read back in one transfer at the end."""
        search = context.search
        supernet = search.supernet
        layers = [module for _, module in supernet.aps_layers()]
        pending: list[torch.Tensor] = []  # float64 0-d tensors, read back together

        def later(value: torch.Tensor) -> int:
            pending.append(value.double().reshape(()))
            return len(pending) - 1

        phis = [later(phi(*m.sides())) for m in layers]
        codes = [later(phi_code(*m.sides())) for m in layers]
        x, y = self._probe_batch(search)
        archs = [supernet.sample_uniform(self.generator) for _ in range(self.align_archs)]
        grads = [self._gradients(search, x, y, arch) for arch in archs]
        used = [_layer_indices(supernet, arch) for arch in archs]
        layer_cos: list[list[int]] = [[] for _ in layers]
        layer_coupled: list[list[int]] = [[] for _ in layers]
        pair_rows, network_cos = [], []
        for a, b in itertools.combinations(range(len(archs)), 2):
            flat_a = torch.cat([g.flatten() for g in grads[a][0]])
            flat_b = torch.cat([g.flatten() for g in grads[b][0]])
            total_cos, total_phi = later(_cos(flat_a, flat_b)), 0.0
            network_cos.append(total_cos)
            for index, module in enumerate(layers):
                ua, ub = used[a][index], used[b][index]
                if ua is None or ub is None:
                    continue
                cos = later(_cos(grads[a][0][index], grads[b][0][index]))
                pair_phi = _pair_phi(module, ua, ub)
                total_phi = total_phi + pair_phi
                layer_cos[index].append(cos)
                pair_rows.append(dict(step=context.step, epoch=context.epoch, layer=index, a=a, b=b,
                                      phi_pair=later(pair_phi), cos=cos))
                for first, second, g_second in ((ua, ub, grads[b][1][index]), (ub, ua, grads[a][1][index])):
                    if first != second and g_second is not None:
                        layer_coupled[index].append(later(coupled_gradient(module, g_second, first, second).norm()))
            pair_rows.append(dict(step=context.step, epoch=context.epoch, layer=-1, a=a, b=b,
                                  phi_pair=later(torch.as_tensor(total_phi)), cos=total_cos))
        values = torch.stack([v.to(pending[0].device) for v in pending]).tolist() if pending else []
        for row in pair_rows:
            row["phi_pair"], row["cos"] = values[row["phi_pair"]], values[row["cos"]]
        layer_rows = [
            dict(step=context.step, epoch=context.epoch, layer=index, phi=values[phis[index]],
                 phi_code=values[codes[index]], cos_align=_mean([values[i] for i in layer_cos[index]]),
                 coupled_norm=_mean([values[i] for i in layer_coupled[index]]), name=name)
            for index, (name, _) in enumerate(supernet.aps_layers())
        ]
        writer = search.writer
        writer.add("layers", layer_rows)
        writer.add("pairs", pair_rows)
        coupled = [row["coupled_norm"] for row, ids in zip(layer_rows, layer_coupled) if ids]
        writer.add("scalars", [
            dict(step=context.step, epoch=context.epoch, name=name, value=value)
            for name, value in (("phi_code", sum(values[i] for i in codes)),
                                ("cos_align", _mean([values[i] for i in network_cos])),
                                ("coupled_norm", _mean(coupled)))
        ])


def _pair_phi(module, used_a: tuple[int, int], used_b: tuple[int, int]) -> torch.Tensor:
    """φ(i, o; ĩ, õ) of Definition 3.1 for this layer's candidates under two architectures (float64, 0-d)."""
    (i_a, o_a), (i_b, o_b) = used_a, used_b
    P = module.out_side.matrices
    value = (P[o_a].T @ P[o_b]).square().sum().double()
    if module.in_side is not None:
        Q = module.in_side.matrices
        value = value * (Q[i_a].T @ Q[i_b]).square().sum().double()
    return value


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")


def default_probes(config: ProbeConfig, seed: int = 0) -> list[Probe]:
    """The probes of a search with configuration ``config`` (none when disabled)."""
    if not config.enabled:
        return []
    return [SharingProbe(config.every_steps, config.every_epochs, config.align_archs, config.probe_batch, seed)]
