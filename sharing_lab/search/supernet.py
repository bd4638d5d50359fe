"""The APS supernet of a search space: every architecture over shared meta-weights (paper Section 2.1).

It runs an architecture with the candidate kernels of Eq. 2 and the shortcut rule of
:mod:`sharing_lab.space.layout`, so its forward computes the same function shape as
:class:`sharing_lab.space.plain.PlainNet` at the same widths. What each layer uses under an architecture comes from
:meth:`sharing_lab.space.search_space.SearchSpace.layer_uses`, the one walk that the forward, the BatchNorm list and
the probes share.

Transforms that are not exact selections live in :class:`sharing_lab.aps.sharing.SideBank` buffers, one per side
shape (the modules hold views, so their state-dict entries are unchanged): the kernels of a step come from a few
batched ops per meta-weight shape (:class:`sharing_lab.aps.layers.KernelGroup`) and Eq. 5 runs over all layers in a
few ops per bank (:class:`sharing_lab.aps.sharing.FusedTransition`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..aps.layers import APSConv2d, APSLinear, KernelGroup, TransformSet, candidate_kernel, transition_plan
from ..aps.sharing import FusedTransition, SideBank, phi, side_level
from ..compute.training import recompute_bn_statistics
from ..errors import InputError
from ..space.layout import Block, Channels, ConvSpec
from ..space.search_space import LayerUse, SearchSpace


class _SideFactory:
    """Makes the transform set of a channel count, drawing init noise from one generator in layer order."""

    def __init__(self, space: SearchSpace, generator: torch.Generator) -> None:
        self.space, self.generator = space, generator

    def __call__(self, channels: Channels) -> TransformSet:
        if channels.decision is None:
            return TransformSet.fixed(channels.fixed)
        decision = self.space.decisions[channels.decision]
        transforms = self.space.scheme.make(decision.candidates, decision.meta_width, self.generator)
        return TransformSet(decision.candidates, transforms, self.space.scheme.transition)


class SuperBlock(nn.Module):
    def __init__(self, block: Block, sides: _SideFactory, generator: torch.Generator, bn_mode: str) -> None:
        super().__init__()
        self.block = block
        self.convs = nn.ModuleList(_aps_conv(conv, sides, generator, bn_mode) for conv in block.convs)
        self.projection = None
        if block.projection_possible():
            self.projection = APSConv2d(
                sides(block.outputs), sides(block.inputs), 1, block.stride, generator, bn_mode
            )

    def forward(self, x: torch.Tensor, uses: Iterator[tuple[int, int, torch.Tensor | None] | None],
                act) -> torch.Tensor:
        """The block under the next entries of ``uses`` (its convs', then its projection's): (input candidate,
        output candidate, the kernel when a kernel group made it) or None (a projection the step does not use)."""
        out = x
        for spec, conv in zip(self.block.convs, self.convs):
            i, o, kernel = next(uses)
            out = conv(out, i, o, kernel=kernel)
            if spec.act:
                out = act(out)
        if self.block.has_shortcut:
            use = next(uses) if self.projection is not None else None
            out = out + (self.projection(x, use[0], use[1], kernel=use[2]) if use is not None else x)
        return act(out) if self.block.post_act else out


def _aps_conv(conv: ConvSpec, sides: _SideFactory, generator: torch.Generator, bn_mode: str) -> APSConv2d:
    in_side = None if conv.depthwise else sides(conv.inputs)
    return APSConv2d(sides(conv.outputs), in_side, conv.kernel, conv.stride, generator, bn_mode)


class Supernet(nn.Module):
    """APS supernet of ``space`` (a layout under a sharing scheme); ``seed`` fixes the meta-weights and P/Q noise."""

    def __init__(self, space: SearchSpace, seed: int = 0, bn_mode: str = "per_candidate"):
        super().__init__()
        self.space = space
        layout = space.layout
        generator = torch.Generator().manual_seed(seed)
        sides = _SideFactory(space, generator)
        self.stem = _aps_conv(layout.stem, sides, generator, bn_mode)
        self.blocks = nn.ModuleList(SuperBlock(block, sides, generator, bn_mode) for block in layout.blocks)
        self.head = _aps_conv(layout.head, sides, generator, bn_mode) if layout.head is not None else None
        self.classifier = APSLinear(sides(layout.classifier_in), layout.num_classes, generator)
        self._act = F.relu6 if layout.activation == "relu6" else F.relu
        self._layers = [module for _, module in self.aps_layers()]
        self._movable = [m for m in self._layers if m.out_side.movable or (m.in_side is not None and m.in_side.movable)]
        self._banked = [side for module in self._layers for side in (module.out_side, module.in_side)
                        if side is not None and (side.movable or not side.exact)]
        banked = {id(side) for side in self._banked}
        for module in self._layers:  # meta-weights a kernel group may stack: channels-last (same values)
            if (isinstance(module, APSConv2d) and module.kernel_size > 1 and not module.depthwise
                    and id(module.out_side) in banked and id(module.in_side) in banked
                    and min(module.out_side.widths + module.in_side.widths) > 1):  # as _kernel_groups admits
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        self._tie()

    # --- transforms in banks --------------------------------------------------------------------------------
    def _tie(self) -> None:
        """(Re)build the side banks from the modules' current transforms, point the modules at views of them, and
        derive the fused Eq. 5; kernel groups follow on the next forward."""
        keyed: dict[tuple, list[TransformSet]] = {}
        for side in self._banked:
            keyed.setdefault((side.widths, side.meta_width, side.t0.dtype, side.t0.device), []).append(side)
        self._banks, self._bank_of = [], {}
        with torch.no_grad():
            for (widths, meta, dtype, device), sides in keyed.items():
                bank = SideBank(widths, meta, len(sides), dtype, device)
                for row, side in enumerate(sides):
                    for candidate, matrix in enumerate(side.matrices):
                        bank.view(row, candidate).copy_(matrix)
                    side.tie([bank.view(row, candidate) for candidate in range(len(widths))])
                    self._bank_of[id(side)] = (len(self._banks), row)
                self._banks.append(bank)
        self._fused = self._fused_transition()
        self._groups_key, self._groups = None, []

    def _intact(self) -> None:
        """Re-tie when something replaced the modules' views (``Module.to``, ``load_state_dict(assign=True)``)."""
        if not all(side.intact for side in self._banked):
            self._tie()

    def _apply(self, fn, recurse: bool = True):
        result = super()._apply(fn, recurse)
        if "_banked" in self.__dict__:
            self._intact()
        return result

    def _fused_transition(self) -> FusedTransition | None:
        """Eq. 5 over the banks for :meth:`transition`: every movable side in a bank, fixed sides as constants."""
        if not self._movable or not all(id(side) in self._bank_of for m in self._movable
                                        for side in (m.out_side, m.in_side) if side is not None and side.movable):
            return None
        offsets = [0]
        for bank in self._banks:
            offsets.append(offsets[-1] + bank.count)
        fixed: list[float] = [0.0]  # index 0 of the constants: the partner of a bank side outside every plan
        device = self._banks[0].buffer.device if self._banks else torch.device("cpu")

        def slot(side: TransformSet | None) -> int:
            if side is not None and id(side) in self._bank_of:
                bank, row = self._bank_of[id(side)]
                return offsets[bank] + row
            level = 1.0 if side is None else float(side_level(side.matrices))  # depthwise input: 1
            fixed.append(level)
            return offsets[-1] + len(fixed) - 1

        pairs = [(slot(m.out_side), slot(m.in_side)) for m in self._movable]
        partners = [offsets[-1]] * offsets[-1]
        moves = [[False] * bank.count for bank in self._banks]
        for (p, q), module in zip(pairs, self._movable):
            for this, other, side in ((p, q, module.out_side), (q, p, module.in_side)):
                if this < offsets[-1]:
                    partners[this] = other
                    bank, row = self._bank_of[id(side)]
                    moves[bank][row] = side.movable
        return FusedTransition(self._banks, moves, torch.tensor(fixed, device=device),
                               torch.tensor(pairs, device=device), torch.tensor(partners, device=device))

    def _kernel_groups(self) -> list[KernelGroup]:
        """The batched-Eq.-2 groups: convolutions with both sides in banks and not exact, by meta-weight shape (not
        with a candidate of width 1, whose einsum output strides follow other rules: the per-layer einsum stays)."""
        key = tuple(side.exact for side in self._banked)
        if key != self._groups_key:
            members: dict[tuple, list[int]] = {}
            for index, module in enumerate(self._layers):
                refs = [self._bank_of.get(id(side)) for side in (module.out_side, module.in_side)]
                if (isinstance(module, APSConv2d) and not module.depthwise and None not in refs
                        and not module.out_side.exact and not module.in_side.exact
                        and min(module.out_side.widths + module.in_side.widths) > 1):
                    members.setdefault((tuple(module.weight.shape), refs[0][0], refs[1][0]), []).append(index)
            self._groups = []
            for (_, out_bank, in_bank), layers in members.items():
                modules = [self._layers[index] for index in layers]
                self._groups.append(KernelGroup(
                    layers, modules, self._banks[out_bank], [self._bank_of[id(m.out_side)][1] for m in modules],
                    self._banks[in_bank], [self._bank_of[id(m.in_side)][1] for m in modules]))
            self._groups_key = key
        return self._groups

    def _kernels(self, uses: Sequence[LayerUse]) -> list[torch.Tensor | None]:
        """The kernels of ``uses`` that the kernel groups make (one gather per bank), None for the others."""
        kernels: list[torch.Tensor | None] = [None] * len(uses)
        if not self._banks:
            return kernels
        self._intact()
        requests: dict[int, list[torch.Tensor]] = {}
        work = []
        for group in self._kernel_groups():
            picks = group.picks(uses)
            if not picks:
                continue
            slots = []
            for bank, rows in zip((group.out_bank, group.in_bank), group.rows(picks)):
                pending = requests.setdefault(id(bank), [])
                slots.append((id(bank), len(pending), len(rows)))
                pending.extend(rows)
            work.append((group, picks, slots))
        gathered = {id(bank): bank.gather(requests[id(bank)]) for bank in self._banks if id(bank) in requests}
        for group, picks, slots in work:
            P_t, Q_t = (gathered[bank][start: start + count] for bank, start, count in slots)
            for (member, _, _), kernel in zip(picks, group.kernels(picks, P_t, Q_t)):
                kernels[group.layers[member]] = kernel
        return kernels

    @property
    def layout(self):
        return self.space.layout

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        """Logits of architecture ``arch`` (one candidate index per decision)."""
        layer_uses = self.space.layer_uses(tuple(int(a) for a in arch))
        kernels = self._kernels(layer_uses)
        uses = iter([None if use is None else (*use, kernel) for use, kernel in zip(layer_uses, kernels)])
        i, o, kernel = next(uses)
        out = self._act(self.stem(x, i, o, kernel=kernel))
        if self.layout.stem_pool:
            out = F.max_pool2d(out, 3, 2, 1)
        for block in self.blocks:
            out = block(out, uses, self._act)
        if self.head is not None:
            i, o, kernel = next(uses)
            out = self._act(self.head(out, i, o, kernel=kernel))
        i, _, kernel = next(uses)
        return self.classifier(out.mean(dim=(2, 3)), i, kernel=kernel)

    def aps_layers(self) -> Iterator[tuple[str, APSConv2d | APSLinear]]:
        """Every APS layer with its module name, in forward order (projections after their block's convs)."""
        for name, module in self.named_modules():
            if isinstance(module, APSConv2d | APSLinear):
                yield name, module

    @torch.no_grad()
    def phi_per_layer(self) -> list[float]:
        """Φ_l of Eq. 4 for every APS layer, in :meth:`aps_layers` order."""
        return [float(phi(*([t.contiguous() for t in side] for side in module.sides()))) for module in self._layers]

    def transition(self, tau: float) -> torch.Tensor | None:
        """One step of the scheme's move (Eq. 5 for transitionary) on every layer with movable transforms;
        returns the Φ of those layers before the step (a 0-d tensor on the supernet's device) or None."""
        self._intact()
        plans = [transition_plan(module) for module in self._movable]
        return self.space.scheme.move(plans, tau, self._fused)

    def movable_layers(self) -> list[APSConv2d | APSLinear]:
        """The layers with a movable side, in the order of :meth:`track_phi`'s per-layer values."""
        return list(self._movable)

    @torch.no_grad()
    def movable_phi(self) -> float:
        """Σ_l Φ_l (Eq. 4) over :meth:`movable_layers`."""
        return sum(float(phi(*([t.contiguous() for t in side] for side in module.sides())))
                   for module in self._movable)

    def track_phi(self, targets: torch.Tensor, max_move: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One Eq. 5 step towards per-layer targets Φ_l (:meth:`sharing_lab.aps.sharing.FusedTransition.track`);
        returns (Φ_l before the step, τ_l) of :meth:`movable_layers`."""
        self._intact()
        if self._fused is None:
            raise InputError("a Φ schedule needs every movable transform in a side bank (the built-in schemes)")
        for module in self._movable:
            transition_plan(module)  # releases the slice offsets of the sides that move
        return self._fused.track(targets, max_move)

    @torch.no_grad()
    def plain_states(self, archs: Sequence[Sequence[int]]) -> list[dict[str, torch.Tensor]]:
        """Each architecture of ``archs`` as the state dict of its plain network
        (:class:`sharing_lab.space.plain.PlainNet` at its widths, which computes the same function): the candidate
        kernels of Eq. 2, each used candidate's BatchNorm (an identity affine where the supernet's BatchNorms
        have none) and the classifier. A kernel that several architectures use is made once, and shared."""
        self._intact()
        made: dict[tuple[int, int, int], dict[str, torch.Tensor]] = {}
        states = []
        for arch in archs:
            state: dict[str, torch.Tensor] = {}
            uses = self.space.layer_uses(tuple(int(a) for a in arch))
            for layer, (prefix, module, use) in enumerate(zip(self._plain_prefixes(), self._layers, uses)):
                if use is not None:
                    key = (layer, *use)
                    if key not in made:
                        made[key] = self._plain_entries(prefix, module, *use)
                    state.update(made[key])
            states.append(state)
        return states

    def _plain_entries(self, prefix: str, module: APSConv2d | APSLinear, i: int, o: int) -> dict[str, torch.Tensor]:
        """The plain network's entries of one APS layer under input candidate ``i`` and output candidate ``o``."""
        if isinstance(module, APSLinear):
            return {"classifier.weight": candidate_kernel(module.weight, module.out_side, 0, module.in_side, i),
                    "classifier.bias": module.bias}
        bn = module.bns[o]
        entries = {f"{prefix}0.weight": module.kernel(i, o),
                   f"{prefix}1.weight": bn.weight if bn.affine else torch.ones_like(bn.running_mean),
                   f"{prefix}1.bias": bn.bias if bn.affine else torch.zeros_like(bn.running_mean)}
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            entries[f"{prefix}1.{name}"] = getattr(bn, name)
        return entries

    def _plain_prefixes(self) -> list[str]:
        """The state-dict prefix each APS layer has in a plain network, in :meth:`aps_layers` order."""
        layout = self.layout
        prefixes = ["stem.0."]
        for b, block in enumerate(layout.blocks):
            prefixes.extend(f"blocks.{b}.body.{c}." for c in range(len(block.convs)))
            if block.projection_possible():
                prefixes.append(f"blocks.{b}.shortcut.")
        if layout.head is not None:
            prefixes.append("head.")
        return [*prefixes, "classifier."]

    def batchnorms(self, arch: Sequence[int]) -> list[nn.BatchNorm2d]:
        """The BatchNorm modules that architecture ``arch`` uses."""
        uses = self.space.layer_uses(arch)
        return [module.bns[use[1]] for module, use in zip(self._layers, uses)
                if use is not None and isinstance(module, APSConv2d)]

    @torch.no_grad()
    def recalibrate_bn(self, arch: Sequence[int], batches: Iterable[torch.Tensor]) -> None:
        """Recompute the running statistics of ``arch``'s BatchNorms as exact averages over ``batches``.

        BN statistics in a supernet are shared by every architecture that uses a candidate, so running
        statistics are wrong for most of them (DESIGN §3); this makes eval-mode BN right for one architecture.
        """
        recompute_bn_statistics(self.batchnorms(arch), lambda batch: self.forward(batch, arch), batches)
