"""The sharing probe: Φ_l (Eq. 4) and the authors' code's variant, the gradient alignment of Eq. 3 between K
sampled architectures on one fixed probe batch, and the coupled-gradient norm of Section 3.3, per APS layer."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ...aps.sharing import pair_level, phi, phi_code
from ...config import ProbeConfig
from ...registry import register_probe
from ..accuracy import batch_statistics
from .base import Probe, ProbeView


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of two gradients as a float64 0-d tensor on their device (NaN if one is zero)."""
    denominator = (a.norm() * b.norm()).double()
    value = (a * b).sum().double() / denominator
    return torch.where(denominator > 0, value, torch.full_like(value, float("nan")))


def coupled_gradient(module, grad_b: torch.Tensor, used_a: tuple[int, int], used_b: tuple[int, int]) -> torch.Tensor:
    """(Q^a)ᵀQ^b G^b (P^b)ᵀP^a of Section 3.3: the part of b's kernel gradient G^b that lands on a's kernel."""
    (i_a, o_a), (i_b, o_b) = used_a, used_b
    P = module.out_side.dense
    out_map = P[o_a].T @ P[o_b]
    if module.in_side is None:  # depthwise: no input mixing
        return torch.einsum("xu,uj...->xj...", out_map, grad_b)
    Q = module.in_side.dense
    in_map = Q[i_b].T @ Q[i_a]
    return torch.einsum("xu,uv...,vy->xy...", out_map, grad_b, in_map)


class SharingProbe(Probe):
    """Φ_l, Φ_code, gradient alignment (Eq. 3) and coupled-gradient norm per layer (tables ``layers``, ``pairs``,
    scalars ``phi_code``, ``cos_align``, ``coupled_norm``, ``kernel_grad_norm``: the norm of the kernel gradients
    G^b that the coupled norms map, so that the coupling can be read relative to the gradient's size)."""

    name = "sharing"

    def __init__(self, every_steps: int = 0, every_epochs: int = 1, align_archs: int = 4, probe_batch: int = 128,
                 seed: int = 0) -> None:
        super().__init__(every_steps)
        self.every_epochs, self.align_archs, self.probe_batch = every_epochs, align_archs, probe_batch
        self.generator = torch.Generator().manual_seed(10_007 + seed)

    def end_of_epoch(self, view: ProbeView) -> None:
        if self.every_steps == 0 and ((view.epoch + 1) % self.every_epochs == 0 or view.evaluating):
            self.run(view)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    @staticmethod
    def _gradients(supernet, x, y, arch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Loss gradients w.r.t. every layer's meta-weight and w.r.t. the candidate kernel it used."""
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
    def run(self, view: ProbeView) -> None:
        """Every quantity is computed on the search's device and read back in one transfer at the end."""
        supernet = view.supernet
        layers = [module for _, module in supernet.aps_layers()]
        pending: list[torch.Tensor] = []  # float64 0-d tensors, read back together

        def later(value: torch.Tensor) -> int:
            pending.append(value.double().reshape(()))
            return len(pending) - 1

        sides = [_dense_sides(m) for m in layers]
        phis = [later(phi(*pair)) for pair in sides]
        codes = [later(phi_code(*pair)) for pair in sides]
        x, y = view.batch(self.probe_batch)
        archs = [view.space.sample_uniform(self.generator) for _ in range(self.align_archs)]
        grads = [self._gradients(supernet, x, y, arch) for arch in archs]
        used = [view.space.layer_uses(arch) for arch in archs]
        layer_cos: list[list[int]] = [[] for _ in layers]
        layer_coupled: list[list[int]] = [[] for _ in layers]
        layer_grad: list[list[int]] = [[] for _ in layers]  # ‖G^b‖ beside each coupled norm: the relative measure
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
                pair_rows.append(dict(step=view.step, epoch=view.epoch, layer=index, a=a, b=b,
                                      phi_pair=later(pair_phi), cos=cos))
                for first, second, g_second in ((ua, ub, grads[b][1][index]), (ub, ua, grads[a][1][index])):
                    if first != second and g_second is not None:
                        layer_coupled[index].append(later(coupled_gradient(module, g_second, first, second).norm()))
                        layer_grad[index].append(later(g_second.norm()))
            pair_rows.append(dict(step=view.step, epoch=view.epoch, layer=-1, a=a, b=b,
                                  phi_pair=later(torch.as_tensor(total_phi)), cos=total_cos))
        values = torch.stack([v.to(pending[0].device) for v in pending]).tolist() if pending else []
        for row in pair_rows:
            row["phi_pair"], row["cos"] = values[row["phi_pair"]], values[row["cos"]]
        layer_rows = [
            dict(step=view.step, epoch=view.epoch, layer=index, phi=values[phis[index]],
                 phi_code=values[codes[index]], cos_align=_mean([values[i] for i in layer_cos[index]]),
                 coupled_norm=_mean([values[i] for i in layer_coupled[index]]),
                 kernel_grad_norm=_mean([values[i] for i in layer_grad[index]]), name=name)
            for index, (name, _) in enumerate(supernet.aps_layers())
        ]
        writer = view.writer
        writer.add("layers", layer_rows)
        writer.add("pairs", pair_rows)
        coupled = [row["coupled_norm"] for row, ids in zip(layer_rows, layer_coupled) if ids]
        kernel_grads = [row["kernel_grad_norm"] for row, ids in zip(layer_rows, layer_coupled) if ids]
        writer.add("scalars", [
            dict(step=view.step, epoch=view.epoch, name=name, value=value)
            for name, value in (("phi_code", sum(values[i] for i in codes)),
                                ("cos_align", _mean([values[i] for i in network_cos])),
                                ("coupled_norm", _mean(coupled)), ("kernel_grad_norm", _mean(kernel_grads)))
        ])


def _dense_sides(module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The layer's (P list, Q list) as contiguous matrices (a supernet's are views into its side banks, and a
    small matrix product rounds by its operands' strides: the probes' values stay those of per-layer tensors)."""
    P, Q = module.sides()
    return [t.contiguous() for t in P], [t.contiguous() for t in Q]


def _pair_phi(module, used_a: tuple[int, int], used_b: tuple[int, int]) -> torch.Tensor:
    """φ(i, o; ĩ, õ) of Definition 3.1 for this layer's candidates under two architectures (float64, 0-d)."""
    (i_a, o_a), (i_b, o_b) = used_a, used_b
    P = module.out_side.dense
    if module.in_side is None:
        return pair_level(P[o_a], P[o_b])
    Q = module.in_side.dense
    return pair_level(P[o_a], P[o_b], Q[i_a], Q[i_b])


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")




@register_probe("sharing")
def sharing(config: ProbeConfig, seed: int) -> SharingProbe:
    """Φ_l, Φ_code, gradient alignment (Eq. 3) and coupled-gradient norm per layer."""
    return SharingProbe(config.every_steps, config.every_epochs, config.align_archs, config.probe_batch, seed)
