"""APS layers: a meta-weight, per-candidate transforms P^o, Q^i, and the candidate kernel of Eq. 2.

The candidate kernel W^{i,o} = (Q^i)ᵀ ×_2 𝒲 ×_1 P^o (paper Eq. 2). Where both sides' transforms are exact
identity slices (frozen ordinal, independent and overlap schemes) it is a zero-copy slice of the meta-weight;
otherwise it is an einsum. In a supernet, the layers whose meta-weights share a shape get their kernels of a
step together (:class:`KernelGroup`: a few batched ops instead of an einsum per layer, bitwise equal on the CPU).
Transforms are buffers: they get no task-loss gradient (notes: the authors' code detaches them too) and move
only as their scheme moves them (:meth:`sharing_lab.aps.schemes.SharingScheme.move`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..compute.pointwise import pointwise
from ..errors import InputError
from .schemes.base import Transforms

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
    def dense(self) -> list[torch.Tensor]:
        """The matrices as contiguous tensors (copies of the views a supernet's side bank hands its modules), for
        readers whose small products round by their operands' strides (the probes)."""
        return [matrix.contiguous() for matrix in self.matrices]

    @property
    def meta_width(self) -> int:
        return self.t0.shape[0]

    @property
    def exact(self) -> bool:
        return self.offsets is not None

    def release(self) -> None:
        """Forget the slice offsets: the matrices are about to stop being identity slices."""
        self.offsets = None

    @property
    def identity(self) -> bool:
        """A fixed side: one candidate, the identity of the whole meta width."""
        return self.offsets == (0,) and self.widths == (self.meta_width,)

    def tie(self, views: Sequence[torch.Tensor]) -> None:
        """Hold ``views`` (into a :class:`sharing_lab.aps.sharing.SideBank`) as this side's matrices."""
        for index, view in enumerate(views):
            self._buffers[f"t{index}"] = view
        self._tied = tuple(views)

    @property
    def intact(self) -> bool:
        """Whether the buffers are still the views given to :meth:`tie` (``Module.to`` and friends replace them)."""
        tied = self.__dict__.get("_tied")
        return tied is not None and all(self._buffers[f"t{i}"] is view for i, view in enumerate(tied))

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
    if weight.dim() == 2 and out_side.identity:
        # A classifier (P = I): the einsum's second product alone, as the einsum runs it (a bmm; ``mm`` picks
        # another CPU kernel for small products and rounds differently), so bitwise equal to it, gradient too.
        return torch.bmm(weight.unsqueeze(0), in_side.matrices[i].unsqueeze(0)).squeeze(0)
    return torch.einsum(f"mn{spatial},mx,ny->xy{spatial}", weight, out_side.matrices[o], in_side.matrices[i])


def _as_kernel(product: torch.Tensor, rows: int, spatial: Sequence[int], columns: int) -> torch.Tensor:
    """Data in (out, *k, in) order as an (out, in, *k) kernel view: the strides the einsum of Eq. 2 gives its
    output (channels-last for 2-d kernels), which decide the convolution's memory format."""
    return product.view(rows, *spatial, columns).permute(0, len(spatial) + 1, *range(1, len(spatial) + 1))


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

    def forward(self, x: torch.Tensor, i: int, o: int, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """The layer under input candidate ``i`` and output candidate ``o``; ``kernel``: W^{i,o} when the caller made
        it already (a supernet's :class:`KernelGroup`)."""
        if kernel is None:
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

    def forward(self, x: torch.Tensor, i: int, kernel: torch.Tensor | None = None) -> torch.Tensor:
        if kernel is None:
            kernel = candidate_kernel(self.weight, self.out_side, 0, self.in_side, i)
        if self.capture_kernel:
            self.last_kernel = kernel
        return F.linear(x, kernel, self.bias)

    def sides(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.out_side.matrices, self.in_side.matrices


class _StackWeights(torch.autograd.Function):
    """The meta-weights 𝒲_l (M_out, M_in, *k) of a step's layers stacked in the layout the einsum of Eq. 2 gives
    its first product (L, M_out, Π k · M_in); the backward hands each layer its gradient in the layout of its
    parameter. A supernet keeps these meta-weights channels-last: then neither direction copies, and the gradients
    have the strides the einsum's backward gives them (so reductions over them, the probes', add up alike)."""

    @staticmethod
    def forward(ctx, *weights: torch.Tensor) -> torch.Tensor:
        first = weights[0]
        ctx.shape = tuple(first.shape)
        ctx.channels_last = first.dim() == 4 and first.shape[2] * first.shape[3] > 1 and not first.is_contiguous() \
            and first.is_contiguous(memory_format=torch.channels_last)
        stacked = torch.stack(weights)
        if first.dim() == 2 or math.prod(first.shape[2:]) == 1:
            return stacked.view(len(weights), first.shape[0], first.shape[1])
        return stacked.permute(0, 1, *range(3, first.dim() + 1), 2).reshape(len(weights), first.shape[0], -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, inner, *spatial = ctx.shape
        count = grad.shape[0]
        if not spatial or math.prod(spatial) == 1:
            return grad.reshape(count, *ctx.shape).unbind(0)
        grad = grad.view(count, out, *spatial, inner)  # each layer's (out, *k, in): channels-last order
        grad = grad.permute(0, 1, len(spatial) + 2, *range(2, len(spatial) + 2))
        return (grad if ctx.channels_last else grad.contiguous()).unbind(0)


class _PointwiseKernels(torch.autograd.Function):
    """The kernels of a group of 1×1 layers (forward: :meth:`KernelGroup._products`, batched) whose backward is
    the einsum's own per layer: ∇𝒲 = P^o ((∇W^{i,o}) Q^{iᵀ}), contracting over the actual widths with the
    gradient in the layout the 1×1 product hands it. A batched backward over zero-padded widths contracts over
    the padded width instead, and MKL rounds that differently for narrow candidates (seen for c < 16 with the
    transposed gradient of a 1×1 einsum), which a search then amplifies."""

    @staticmethod
    def forward(ctx, group: KernelGroup, picks, P_t: torch.Tensor, Q_t: torch.Tensor, *weights: torch.Tensor):
        ctx.set_materialize_grads(False)
        modules = [group.modules[m] for m, _, _ in picks]
        ctx.shapes = [tuple(module.weight.shape) for module in modules]
        ctx.dtype = weights[0].dtype
        ctx.save_for_backward(*(module.out_side.matrices[o] for module, (_, _, o) in zip(modules, picks)),
                              *(module.in_side.matrices[i] for module, (_, i, _) in zip(modules, picks)))
        stacked = torch.stack(weights).view(len(weights), *weights[0].shape[:2])
        return tuple(group._products(picks, P_t, Q_t, stacked))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):
        count = len(grads)
        saved = ctx.saved_tensors
        out = []
        for grad, P, Q, shape in zip(grads, saved[:count], saved[count:], ctx.shapes):
            if grad is None:
                out.append(None)
                continue
            P, Q = P.to(grad.dtype), Q.to(grad.dtype)  # under autocast the forward's products ran in bf16
            out.append((P @ (grad.reshape(P.shape[1], Q.shape[1]) @ Q.T)).to(ctx.dtype).view(shape))
        return (None, None, None, None, *out)


class KernelGroup:
    """Eq. 2 for the layers of a supernet whose meta-weights share one shape (M_out, M_in, *k) and whose P and Q
    live in :class:`sharing_lab.aps.sharing.SideBank` buffers: W^{i,o} = P^{oᵀ} (𝒲 Q^i) of every layer a step uses
    in one stack of the meta-weights, two batched matrix products over transforms zero-padded to the widest
    candidate (gathered by the supernet, one gather per bank) and one gather of every kernel, with indices
    cached per (position, o, i). The einsum's products element for element, so bitwise equal to it on the CPU
    (the padding only adds exact zeros); each kernel is a view with the einsum's strides, and 1×1 layers take
    the einsum's own backward (:class:`_PointwiseKernels`). Memory: the index cache grows to one entry per
    (position, o, i), Σ_l Σ_{o,i} c_o c_i Π k int32 values (≈ 28 MB for the paper's ResNet-20 space).
    """

    def __init__(self, layers: Sequence[int], modules: Sequence[APSConv2d], out_bank, out_sides: Sequence[int],
                 in_bank, in_sides: Sequence[int]) -> None:
        self.layers, self.modules = list(layers), list(modules)
        self.out_bank, self.out_sides, self.in_bank, self.in_sides = out_bank, list(out_sides), in_bank, list(in_sides)
        shape = modules[0].weight.shape
        self.spatial = tuple(shape[2:])
        self.area = math.prod(self.spatial)
        self.meta_in = shape[1]
        self._index: dict[tuple[int, int, int], torch.Tensor] = {}

    def picks(self, uses: Sequence) -> list[tuple[int, int, int]]:
        """(member, i, o) of every member that ``uses`` (the supernet's per-layer uses) needs, in member order."""
        return [(member, *uses[layer]) for member, layer in enumerate(self.layers) if uses[layer] is not None]

    def rows(self, picks: Sequence[tuple[int, int, int]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The bank rows of the picks' P^o and Q^i (for :meth:`SideBank.gather`)."""
        return ([self.out_bank.rows(self.out_sides[m], o) for m, _, o in picks],
                [self.in_bank.rows(self.in_sides[m], i) for m, i, _ in picks])

    def kernels(self, picks: Sequence[tuple[int, int, int]], P_t: torch.Tensor, Q_t: torch.Tensor) -> list:
        """The picks' kernels from their gathered, padded P^{oᵀ} (L, max c_o, M_out) and Q^{iᵀ} (L, max c_i, M_in)."""
        weights = [self.modules[m].weight for m, _, _ in picks]
        if self.area == 1:
            return list(_PointwiseKernels.apply(self, picks, P_t, Q_t, *weights))
        return self._products(picks, P_t, Q_t, _StackWeights.apply(*weights))

    def _products(self, picks, P_t: torch.Tensor, Q_t: torch.Tensor, stacked: torch.Tensor) -> list[torch.Tensor]:
        """P^{oᵀ} (𝒲 Q^i) of every pick from the stacked meta-weights (L, M_out, Π k · M_in): two batched
        products, then one gather of every kernel out of the padded results."""
        count, pad_out, pad_in = len(picks), P_t.shape[1], Q_t.shape[1]
        first = torch.bmm(P_t, stacked).view(count, pad_out * self.area, self.meta_in)  # P^{oᵀ} 𝒲 over M_out
        padded = torch.bmm(first, Q_t.transpose(1, 2))  # … Q^i over M_in: (L, max c_o · Π k, max c_i)
        index = [self._gather_index(position, o, i, pad_out, pad_in) for position, (_, i, o) in enumerate(picks)]
        flat = padded.view(-1).index_select(0, torch.cat(index) if count > 1 else index[0])
        widths = [(self.out_bank.widths[o], self.in_bank.widths[i]) for _, i, o in picks]
        pieces = flat.split([w_o * w_i * self.area for w_o, w_i in widths])
        if self.area == 1:
            return [piece.view(w_o, w_i, *self.spatial) for piece, (w_o, w_i) in zip(pieces, widths)]
        return [_as_kernel(piece, w_o, self.spatial, w_i) for piece, (w_o, w_i) in zip(pieces, widths)]

    def _gather_index(self, position: int, o: int, i: int, pad_out: int, pad_in: int) -> torch.Tensor:
        """Positions of kernel (o, i) of the position-th pick in the flattened padded products, in (out, *k, in)
        order (cached)."""
        key = (position, o, i)
        if key not in self._index:
            w_o, w_i = self.out_bank.widths[o], self.in_bank.widths[i]
            base = position * pad_out * self.area * pad_in
            rows = torch.arange(w_o * self.area).view(-1, 1) * pad_in
            last = base + (w_o * self.area - 1) * pad_in + w_i - 1
            dtype = torch.int32 if last < 2**31 - 1 else torch.long  # int32 halves the cache
            index = (base + rows + torch.arange(w_i).view(1, -1)).reshape(-1)
            self._index[key] = index.to(dtype=dtype, device=self.modules[0].weight.device)
        return self._index[key]
