"""A population: N plain networks of one layout and different widths computed as one network.

At the embedded scale every operator does almost no arithmetic, so N small networks cost N times the per-operator
overhead when run one at a time. Here member n's channels of a layer occupy the block ``[n·C, n·C + c_n)`` of C =
the widest member's width, the rest zero: a convolution is one grouped convolution (groups = N; the stem, whose
input is the shared image, an ungrouped one), a 1×1 convolution one batched product, BatchNorm one BatchNorm over
the N·C channels (so statistics and running buffers are per member), the classifier one batched product; a
shortcut is each member's own (a projection where the member needs one, else the identity). The padded entries
are exact zeros and stay so: they multiply only zeros in the forward, so their gradients are exactly zero, and
SGD (momentum, Nesterov, weight decay) keeps a zero with a zero gradient at zero. Each member computes its own
network's function (to float rounding: the grouped kernels add in another order), and the loss is the sum of the
members' mean losses, so each member's gradient and optimiser step are its own network's.

:meth:`Population.load_members` packs plain networks (:class:`sharing_lab.space.plain.PlainNet`) into it,
:meth:`Population.member_state` unpacks one again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Block, Channels, ConvSpec, Layout
from .plain import PlainNet


class _Widths:
    """The members' widths of one channel count: per member, and padded (the widest)."""

    def __init__(self, channels: Channels, members: Sequence[Sequence[int]]) -> None:
        self.each = [channels.width(widths) for widths in members]
        self.pad = max(self.each)
        self.shared = channels.decision is None  # image channels or classes: the same for every member



class PopulationConvBN(nn.Module):
    """A ConvBN of every member: a grouped convolution (ungrouped on the shared image), BatchNorm over N·C."""

    def __init__(self, conv: ConvSpec, members: Sequence[Sequence[int]], act: str) -> None:
        super().__init__()
        self.count, self.spec, self.act = len(members), conv, act
        self.inputs, self.outputs = _Widths(conv.inputs, members), _Widths(conv.outputs, members)
        c_in = 1 if conv.depthwise else self.inputs.pad
        self.weight = nn.Parameter(torch.zeros(self.count * self.outputs.pad, c_in, conv.kernel, conv.kernel))
        self.bn = nn.BatchNorm2d(self.count * self.outputs.pad)
        nn.init.zeros_(self.bn.weight)  # the padding's scale: zero, like every padded parameter

    def load(self, n: int, state: Mapping[str, torch.Tensor], prefix: str, buffers: bool = True) -> None:
        """Member ``n``'s convolution and BatchNorm (parameters and, with ``buffers``, running statistics) from its
        plain network's state dict (entries ``{prefix}0.weight`` and ``{prefix}1.*``) into its block."""
        weight = state[f"{prefix}0.weight"]
        c_out, c_in = weight.shape[:2]
        rows = slice(n * self.outputs.pad, n * self.outputs.pad + c_out)
        with torch.no_grad():
            self.weight[rows, :c_in] = weight
            for name in ("weight", "bias", *(("running_mean", "running_var") if buffers else ())):
                getattr(self.bn, name)[rows] = state[f"{prefix}1.{name}"]
            if buffers:
                self.bn.num_batches_tracked.copy_(state[f"{prefix}1.num_batches_tracked"])

    def member_state(self, n: int, prefix: str, grad: bool = False) -> dict[str, torch.Tensor]:
        """Member ``n``'s ``{conv}.weight`` and BatchNorm entries, named as in its plain network (``grad``: the
        parameters' gradients instead, without the buffers)."""
        c_out, c_in = self.outputs.each[n], (1 if self.spec.depthwise else self.inputs.each[n])
        rows = slice(n * self.outputs.pad, n * self.outputs.pad + c_out)
        pick = (lambda t: t.grad) if grad else (lambda t: t)
        state = {f"{prefix}0.weight": pick(self.weight)[rows, :c_in]}
        for name in ("weight", "bias") if grad else ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}1.{name}"] = pick(getattr(self.bn, name))[rows]
        if not grad:
            state[f"{prefix}1.num_batches_tracked"] = self.bn.num_batches_tracked
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        if spec.depthwise:
            y = F.conv2d(x, self.weight, None, spec.stride, spec.kernel // 2, groups=self.weight.shape[0])
        elif spec.kernel == 1:
            y = grouped_pointwise(x, self.weight, self.count, spec.stride)
        else:
            groups = 1 if self.inputs.shared else self.count
            y = F.conv2d(x, self.weight, None, spec.stride, spec.kernel // 2, groups=groups)
        y = self.bn(y)
        if spec.act:
            y = F.relu6(y) if self.act == "relu6" else F.relu(y)
        return y


def grouped_pointwise(x: torch.Tensor, weight: torch.Tensor, count: int, stride: int = 1) -> torch.Tensor:
    """N 1×1 convolutions as one batched product: ``x`` (B, N·C_in, H, W), ``weight`` (N·C_out, C_in, 1, 1)."""
    if stride != 1:
        x = x[:, :, ::stride, ::stride]
    batch, channels, height, width = x.shape
    grouped = x.reshape(batch, count, channels // count, height, width)
    kernels = weight.reshape(count, weight.shape[0] // count, weight.shape[1])
    return torch.einsum("bnchw,noc->bnohw", grouped, kernels).reshape(batch, -1, height, width)


def _resize_channels(x: torch.Tensor, count: int, pad: int) -> torch.Tensor:
    """(B, N·C, H, W) → (B, N·pad, H, W), each member's block cut or zero-extended to ``pad`` channels."""
    batch, channels, height, width = x.shape
    if channels == count * pad:
        return x
    grouped = x.reshape(batch, count, channels // count, height, width)
    if channels // count > pad:
        return grouped[:, :, :pad].reshape(batch, count * pad, height, width)
    return F.pad(grouped, (0, 0, 0, 0, 0, pad - channels // count)).reshape(batch, count * pad, height, width)


class PopulationBlock(nn.Module):
    """A residual block of every member; each member's shortcut is its own (projection or identity)."""

    def __init__(self, block: Block, members: Sequence[Sequence[int]], act: str) -> None:
        super().__init__()
        self.block, self.count, self.act = block, len(members), act
        self.body = nn.ModuleList(PopulationConvBN(conv, members, act) for conv in block.convs)
        self.projects = [block.projection_needed(widths) for widths in members]
        self.projection = None
        if any(self.projects):
            spec = ConvSpec(f"{block.name}.shortcut", block.inputs, block.outputs, 1, block.stride, block.in_size,
                            act=False)
            self.projection = PopulationConvBN(spec, members, act)
        out_pad = self.body[-1].outputs.pad

        def mask(flags: list[bool]) -> torch.Tensor | None:  # 1.0 on the channels of the flagged members
            if not block.has_shortcut or all(flags) or not any(flags):
                return None
            return torch.tensor([float(f) for f in flags]).repeat_interleave(out_pad).view(1, -1, 1, 1)

        # a member's projection output is masked where the member has none: its BatchNorm's shift would otherwise
        # learn from the member's gradient
        self.register_buffer("projecting", mask(self.projects))
        self.register_buffer("identity", mask([not p for p in self.projects]))
        self.any_identity = block.has_shortcut and not all(self.projects)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.body:
            out = conv(out)
        if self.block.has_shortcut:
            if self.projection is not None:
                shortcut = self.projection(x)
                out = out + (shortcut if self.projecting is None else self.projecting * shortcut)
            if self.any_identity:
                shortcut = _resize_channels(x, self.count, self.body[-1].outputs.pad)
                out = out + (shortcut if self.identity is None else self.identity * shortcut)
        if self.block.post_act:
            out = F.relu6(out) if self.act == "relu6" else F.relu(out)
        return out


class Population(nn.Module):
    """The plain networks of ``layout`` at each of ``members`` (one width per decision each), as one network.

    ``forward(x)`` returns the members' logits (B, N, classes); :meth:`loss` is the sum of their mean
    cross-entropies (each member's gradient is its own network's)."""

    def __init__(self, layout: Layout, members: Sequence[Sequence[int]]) -> None:
        super().__init__()
        for widths in members:
            layout.check_widths(widths)
        self.layout, self.members = layout, [tuple(int(w) for w in widths) for widths in members]
        count, act = len(self.members), layout.activation
        self.stem = PopulationConvBN(layout.stem, self.members, act)
        self.blocks = nn.ModuleList(PopulationBlock(block, self.members, act) for block in layout.blocks)
        self.head = PopulationConvBN(layout.head, self.members, act) if layout.head is not None else None
        self.features = _Widths(layout.classifier_in, self.members)
        self.classifier_weight = nn.Parameter(torch.zeros(count, layout.num_classes, self.features.pad))
        self.classifier_bias = nn.Parameter(torch.zeros(count, layout.num_classes))

    @property
    def count(self) -> int:
        return len(self.members)

    def convs(self) -> Iterable[tuple[str, PopulationConvBN]]:
        """Every ConvBN with the prefix its entries have in a plain network's state dict."""
        yield "stem.0.", self.stem
        for b, block in enumerate(self.blocks):
            for c, conv in enumerate(block.body):
                yield f"blocks.{b}.body.{c}.", conv
            if block.projection is not None:
                yield f"blocks.{b}.shortcut.", block.projection
        if self.head is not None:
            yield "head.", self.head

    def load_members(self, states: Sequence[Mapping[str, torch.Tensor]]) -> Population:
        """Pack the members' plain networks, given as their state dicts (member n's of its network at
        ``members[n]``: :meth:`PlainNet.state_dict`, or a supernet's
        :meth:`~sharing_lab.search.supernet.Supernet.plain_state`), into the population; returns it."""
        if len(states) != self.count:
            raise ValueError(f"{len(states)} networks for a population of {self.count}")
        for n, state in enumerate(states):
            if tuple(state["classifier.weight"].shape[1:]) != (self.features.each[n],):
                raise ValueError("the networks' widths are not the population's members")
            for prefix, conv in self.convs():
                if f"{prefix}0.weight" in state:  # a member without this projection keeps zeros there
                    conv.load(n, state, prefix)
            with torch.no_grad():
                width = self.features.each[n]
                self.classifier_weight[n, :, :width] = state["classifier.weight"]
                self.classifier_bias[n] = state["classifier.bias"]
        # channels-last: oneDNN's grouped convolutions over many small groups take half the time (CPU, measured)
        return self.to(memory_format=torch.channels_last)

    def member_state(self, n: int, grad: bool = False) -> dict[str, torch.Tensor]:
        """Member ``n`` as its plain network's state dict (:meth:`PlainNet.load_state_dict` takes it); ``grad``:
        its parameters' gradients, named the same."""
        state: dict[str, torch.Tensor] = {}
        for prefix, conv in self.convs():
            if prefix.endswith("shortcut.") and not self.blocks[int(prefix.split(".")[1])].projects[n]:
                continue
            state.update(conv.member_state(n, prefix, grad))
        width = self.features.each[n]
        pick = (lambda t: t.grad) if grad else (lambda t: t)
        state["classifier.weight"] = pick(self.classifier_weight)[n, :, :width]
        state["classifier.bias"] = pick(self.classifier_bias)[n]
        return {key: value.detach().clone() for key, value in state.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x.contiguous(memory_format=torch.channels_last))
        if self.layout.stem_pool:
            out = F.max_pool2d(out, 3, 2, 1)
        for block in self.blocks:
            out = block(out)
        if self.head is not None:
            out = self.head(out)
        features = out.mean(dim=(2, 3)).view(out.shape[0], self.count, self.features.pad)
        return torch.einsum("bnc,nkc->bnk", features, self.classifier_weight) + self.classifier_bias

    @staticmethod
    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ over members of each member's mean cross-entropy on the batch (logits (B, N, K), labels (B,))."""
        return F.cross_entropy(logits.transpose(1, 2), y[:, None].expand(-1, logits.shape[1]),
                               reduction="none").mean(0).sum()


def build_population(layout: Layout, members: Sequence[Sequence[int]], seeds: Sequence[int] | int = 0) -> Population:
    """The population of ``members``, each initialised as its own plain network is from its seed (one seed for
    all, or one per member): :func:`sharing_lab.space.plain.build_plain` inside a forked RNG."""
    seeds = [seeds] * len(members) if isinstance(seeds, int) else list(seeds)
    nets = []
    for widths, seed in zip(members, seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets.append(PlainNet(layout, widths))
    return Population(layout, members).load_members([net.state_dict() for net in nets])


def population_bytes(layout: Layout, members: Sequence[Sequence[int]], batch: int, training: bool = True) -> int:
    """Bytes the population of ``members`` holds in activations for a batch, roughly (float32; in training every
    conv's output kept for the backward with its BatchNorm's and activation's, four copies; in inference one)."""
    convs = [*layout.convs(), *(ConvSpec(b.name, b.inputs, b.outputs, 1, b.stride, b.in_size) for b in layout.blocks
                               if b.projection_possible())]
    values = sum(len(members) * max(conv.outputs.width(w) for w in members) * conv.out_size ** 2 for conv in convs)
    return (4 if training else 1) * 4 * batch * values


def member_chunks(layout: Layout, members: Sequence[Sequence[int]], batch: int, max_bytes: float,
                  training: bool = True) -> list[slice]:
    """``members`` cut into consecutive populations of equal size, as large as :func:`population_bytes` allows
    within ``max_bytes`` (at least one member each)."""
    size = len(members) or 1
    while size > 1 and population_bytes(layout, members[:size], batch, training) > max_bytes:
        size = (size + 1) // 2
    return [slice(start, start + size) for start in range(0, len(members), size)]
