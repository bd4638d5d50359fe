"""APS layers: a meta-weight, per-candidate transforms P^o, Q^i, and the candidate kernel of Eq. 2.

The candidate kernel W^{i,o} = (Q^i)ᵀ ×_2 𝒲 ×_1 P^o (paper Eq. 2). Where both sides' transforms are exact
identity slices (frozen ordinal, independent and overlap schemes) it is a zero-copy slice of the meta-weight;
otherwise it is an einsum. Transforms are buffers: they get no task-loss gradient (notes: the authors' code
detaches them too) and move only as their scheme moves them (:meth:`sharing_lab.schemes.SharingScheme.move`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .plain import pointwise
from .schemes import Transforms

BN_MODES = ("per_candidate", "per_candidate_affine")


class TransformSet(nn.Module):
    """The transforms of one side of one APS layer (one matrix per candidate), kept as buffers."""

    def __init__(self, widths: Sequence[int], transforms: Transforms, movable: bool) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.movable = movable
        for index, matrix in enumerate(transforms.matrices):
            self.register_buffer(f"t{index}", matrix.clone())
        self.offsets = transforms.offsets

    @classmethod
    def fixed(cls, channels: int) -> TransformSet:
        """The identity of a side that is not searched (image channels, class logits)."""
        return cls((channels,), Transforms((torch.eye(channels),), (0,)), movable=False)

    @property
    def matrices(self) -> list[torch.Tensor]:
        return [getattr(self, f"t{index}") for index in range(len(self.widths))]

    @property
    def meta_width(self) -> int:
        return self.t0.shape[0]

    @property
    def exact(self) -> bool:
        return self.offsets is not None

    def release(self) -> None:
        """Forget the slice offsets: the matrices are about to stop being identity slices."""
        self.offsets = None

    def get_extra_state(self) -> dict:
        return {"offsets": self.offsets}

    def set_extra_state(self, state: dict) -> None:
        self.offsets = None if state["offsets"] is None else tuple(state["offsets"])


def candidate_kernel(weight: torch.Tensor, out_side: TransformSet, o: int, in_side: TransformSet | None, i: int):
    """Eq. 2 for output candidate ``o`` and input candidate ``i`` (``in_side`` None: depthwise, no input mix).

    ``weight`` is (M_out, M_in, …) with trailing spatial dims. Slices when both sides are exact selections.
    """
    out_exact = out_side.exact
    in_exact = in_side is None or in_side.exact
    if out_exact and in_exact:
        lo = out_side.offsets[o]
        kernel = weight[lo : lo + out_side.widths[o]]
        if in_side is not None:
            li = in_side.offsets[i]
            kernel = kernel[:, li : li + in_side.widths[i]]
        return kernel
    spatial = "hw"[: weight.dim() - 2]
    if in_side is None:
        return torch.einsum(f"mj{spatial},mx->xj{spatial}", weight, out_side.matrices[o])
    return torch.einsum(f"mn{spatial},mx,ny->xy{spatial}", weight, out_side.matrices[o], in_side.matrices[i])


class APSConv2d(nn.Module):
    """A convolution over a shared meta-weight 𝒲 ∈ R^{M_out×M_in×k×k} with per-candidate BatchNorm.

    ``out_side`` holds P^o, ``in_side`` Q^i (None for a depthwise conv, whose kernel mixes no input channels).
    ``bn_mode`` is one of ``BN_MODES``: a separate BN per output candidate, without (default, as the authors'
    code) or with affine parameters.
    """

    def __init__(
        self,
        out_side: TransformSet,
        in_side: TransformSet | None,
        kernel: int,
        stride: int,
        generator: torch.Generator | None = None,
        bn_mode: str = "per_candidate",
    ) -> None:
        super().__init__()
        if bn_mode not in BN_MODES:
            raise InputError(f"unknown BN mode {bn_mode!r}; known: {', '.join(BN_MODES)}")
        self.kernel_size, self.stride, self.depthwise = kernel, stride, in_side is None
        self.out_side, self.in_side = out_side, in_side
        out_meta = out_side.meta_width
        in_meta = 1 if in_side is None else in_side.meta_width
        self.weight = nn.Parameter(torch.empty(out_meta, in_meta, kernel, kernel))
        fan_out = kernel * kernel * (1 if self.depthwise else max(out_side.widths))
        with torch.no_grad():
            self.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
        affine = bn_mode == "per_candidate_affine"
        self.bns = nn.ModuleList(nn.BatchNorm2d(width, affine=affine) for width in out_side.widths)
        self.capture_kernel, self.last_kernel = False, None  # set by probes that need ∇ of the candidate kernel

    def kernel(self, i: int, o: int) -> torch.Tensor:
        """The candidate kernel W^{i,o} (Eq. 2)."""
        return candidate_kernel(self.weight, self.out_side, o, self.in_side, i)

    def forward(self, x: torch.Tensor, i: int, o: int) -> torch.Tensor:
        kernel = self.kernel(i, o)
        if self.capture_kernel:
            self.last_kernel = kernel
        if self.depthwise:
            y = F.conv2d(x, kernel, None, self.stride, self.kernel_size // 2, groups=kernel.shape[0])
        elif self.kernel_size == 1:
            y = pointwise(x, kernel, self.stride)
        else:
            y = F.conv2d(x, kernel, None, self.stride, self.kernel_size // 2)
        return self.bns[o](y)

    def sides(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(P list, Q list) of this layer for Eq. 4; a depthwise layer's input factor is the scalar 1."""
        q = self.in_side.matrices if self.in_side is not None else [torch.ones(1, 1, device=self.weight.device)]
        return self.out_side.matrices, q


def transition_plan(module: APSConv2d | APSLinear) -> tuple[list, list, bool, bool]:
    """(P, Q, update_P, update_Q) of a layer for a scheme's move, releasing the slice offsets of the sides that
    move."""
    out_side, in_side = module.out_side, module.in_side
    update_P = out_side.movable
    update_Q = in_side is not None and in_side.movable
    for side, moves in ((out_side, update_P), (in_side, update_Q)):
        if moves:
            side.release()
    return (*module.sides(), update_P, update_Q)


class APSLinear(nn.Module):
    """The classifier over a meta-weight (classes × M_in) with one Q^i per input candidate, so the last
    decision is live: the logits depend on which candidate feeds the classifier (unlike the authors' code)."""

    def __init__(self, in_side: TransformSet, num_classes: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_side = in_side
        self.out_side = TransformSet.fixed(num_classes)
        bound = 1.0 / math.sqrt(max(in_side.widths))
        self.weight = nn.Parameter(torch.empty(num_classes, in_side.meta_width))
        self.bias = nn.Parameter(torch.empty(num_classes))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            self.bias.uniform_(-bound, bound, generator=generator)
        self.capture_kernel, self.last_kernel = False, None

    def forward(self, x: torch.Tensor, i: int) -> torch.Tensor:
        kernel = candidate_kernel(self.weight, self.out_side, 0, self.in_side, i)
        if self.capture_kernel:
            self.last_kernel = kernel
        return F.linear(x, kernel, self.bias)

    def sides(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.out_side.matrices, self.in_side.matrices
