"""Architectures that share their weights (a supernet's) computed as one tree of populations.

Under weight sharing the activation after a segment of the network (the stem, a block, the head) depends only on
the decisions that the segments so far use: architectures that agree on those compute the same thing there. So
each segment runs once per distinct prefix of decisions, as a population (:mod:`sharing_lab.space.population`)
of those prefixes, and its output is gathered for the next segment's prefixes; the classifier runs once per
architecture. On the embedded space's 64 architectures (one decision per stage) the stem and stage 1 run 4
times, stage 2 16 times, stage 3 and the classifier 64 times: each architecture computes exactly what it would
alone, the shared parts once. BatchNorm statistics are per prefix, hence each architecture's own, so a
recalibration (:func:`sharing_lab.search.accuracy.recalibrate_bn`) of the whole tree recalibrates every member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Channels, Layout
from .population import PopulationBlock, PopulationConvBN


def _decisions(channels: Sequence[Channels]) -> set[int]:
    return {c.decision for c in channels if c.decision is not None}


def _gather(x: torch.Tensor, count: int, index: torch.Tensor) -> torch.Tensor:
    """(B, count·C, …) → (B, len(index)·C, …): the channel blocks of ``index``, in its order."""
    batch, channels, *rest = x.shape
    return x.reshape(batch, count, channels // count, *rest).index_select(1, index).reshape(batch, -1, *rest)


class _Segment(nn.Module):
    """One segment over the distinct prefixes at its depth: the population ``module`` of their representatives
    and, for each prefix, the index of its parent among the ``parent_count`` prefixes of the segment before
    (None: the same prefixes)."""

    def __init__(self, module: nn.Module, parents: list[int] | None, parent_count: int) -> None:
        super().__init__()
        self.module, self.parent_count = module, parent_count
        self.register_buffer("parents", None if parents is None else torch.tensor(parents, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.parents is not None:
            x = _gather(x, self.parent_count, self.parents)
        return self.module(x)


class SharedPopulation(nn.Module):
    """The networks of ``layout`` at each of ``members`` (one width per decision each) whose weights agree
    wherever their decisions do (a supernet's architectures), as a tree of populations. ``forward(x)`` returns
    the members' logits (B, N, classes)."""

    def __init__(self, layout: Layout, members: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.layout, self.members = layout, [tuple(int(w) for w in widths) for widths in members]
        act, used = layout.activation, set()
        segments: list[tuple[str, object]] = [("stem.0.", layout.stem)]
        segments += [(f"blocks.{b}.", block) for b, block in enumerate(layout.blocks)]
        if layout.head is not None:
            segments.append(("head.", layout.head))
        self.prefixes: list[str] = []
        self.representatives: list[list[int]] = []  # per segment: the member standing for each prefix
        self.segments = nn.ModuleList()
        previous_keys: list[tuple] | None = None
        previous_of: dict[int, int] = {}
        for prefix, spec in segments:
            convs = [spec] if prefix in ("stem.0.", "head.") else list(spec.convs)
            used |= _decisions([c.inputs for c in convs] + [c.outputs for c in convs])
            order = sorted(used)
            keys, first, of_member = [], {}, {}
            for n, widths in enumerate(self.members):
                key = tuple(widths[d] for d in order)
                if key not in first:
                    first[key] = len(keys)
                    keys.append(key)
                of_member[n] = first[key]
            representatives = [next(n for n in range(len(self.members)) if of_member[n] == k) for k in
                               range(len(keys))]
            chosen = [self.members[n] for n in representatives]
            module = (PopulationConvBN(spec, chosen, act) if prefix in ("stem.0.", "head.")
                      else PopulationBlock(spec, chosen, act))
            parents = None
            if previous_keys is not None:
                parents = [previous_of[n] for n in representatives]
                if parents == list(range(len(previous_keys))):
                    parents = None
            self.segments.append(_Segment(module, parents, len(previous_keys or [None])))
            self.prefixes.append(prefix)
            self.representatives.append(representatives)
            previous_keys, previous_of = keys, of_member
        self.last_count = len(previous_keys)
        leaves = [previous_of[n] for n in range(len(self.members))]
        self.register_buffer("leaves", None if leaves == list(range(self.last_count)) else torch.tensor(leaves))
        self.features = [layout.classifier_in.width(widths) for widths in self.members]
        pad = max(self.features)
        self.classifier_weight = nn.Parameter(torch.zeros(len(self.members), layout.num_classes, pad),
                                              requires_grad=False)
        self.classifier_bias = nn.Parameter(torch.zeros(len(self.members), layout.num_classes), requires_grad=False)

    def load_members(self, states: Sequence[Mapping[str, torch.Tensor]], buffers: bool = True) -> SharedPopulation:
        """Take each prefix's weights from its representative member's plain-network state dict
        (:meth:`sharing_lab.search.supernet.Supernet.plain_states`; ``buffers``: the BatchNorms' running statistics
        too, which a recalibration replaces); returns the population."""
        for prefix, segment, representatives in zip(self.prefixes, self.segments, self.representatives):
            module = segment.module
            for k, n in enumerate(representatives):
                if isinstance(module, PopulationConvBN):
                    module.load(k, states[n], prefix, buffers)
                    continue
                for c, conv in enumerate(module.body):
                    conv.load(k, states[n], f"{prefix}body.{c}.", buffers)
                if module.projection is not None and f"{prefix}shortcut.0.weight" in states[n]:
                    module.projection.load(k, states[n], f"{prefix}shortcut.", buffers)
        with torch.no_grad():
            for n, state in enumerate(states):
                self.classifier_weight[n, :, :self.features[n]] = state["classifier.weight"]
                self.classifier_bias[n] = state["classifier.bias"]
        return self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.contiguous(memory_format=torch.channels_last)
        for index, segment in enumerate(self.segments):
            out = segment(out)
            if index == 0 and self.layout.stem_pool:
                out = F.max_pool2d(out, 3, 2, 1)
        features = out.mean(dim=(2, 3))
        if self.leaves is not None:
            features = _gather(features, self.last_count, self.leaves)
        features = features.view(out.shape[0], len(self.members), -1)
        return torch.einsum("bnc,nkc->bnk", features, self.classifier_weight) + self.classifier_bias
