"""Batched Eq. 2 and fused Eq. 5 (issue 14) against the per-layer code they replace.

The reference of Eq. 2 is the code before batching: a slice for exact sides, otherwise one einsum per layer over
contiguous transforms. The batched kernels are the einsum's products element for element (the padding to the
widest candidate only adds exact zeros to the sums) with the einsum's output strides, and the 1×1 layers take
the einsum's own per-layer backward, so on the CPU logits and meta-weight gradients are equal to float32
rounding, in the paper's space and in the embedded default's: bitwise (torch.equal) on AVX2 CPUs, within about
1e-6 relative on AVX-512 ones, where bmm and einsum sum in another order. The reference of Eq. 5 is
:func:`sharing_lab.aps.sharing.transition_layers` on copies of the transforms: the fused step does the same
arithmetic and stays within 1e-6 relative (bitwise on this CPU).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

import sharing_lab.aps.layers as aps
from sharing_lab.aps.layers import transition_plan
from sharing_lab.aps.schemes import get_scheme
from sharing_lab.aps.sharing import transition_layers
from sharing_lab.search.supernet import Supernet
from sharing_lab.space.layout import build_layout
from sharing_lab.space.search_space import SearchSpace


def _reference_kernel(weight, out_side, o, in_side, i):
    """Eq. 2 as the code computed it before batching (transforms were contiguous buffers then)."""
    if out_side.exact and (in_side is None or in_side.exact):
        lo = out_side.offsets[o]
        kernel = weight[lo: lo + out_side.widths[o]]
        if in_side is not None:
            li = in_side.offsets[i]
            kernel = kernel[:, li: li + in_side.widths[i]]
        return kernel
    spatial = "hw"[: weight.dim() - 2]
    P = out_side.matrices[o].contiguous()
    if in_side is None:
        return torch.einsum(f"mj{spatial},mx->xj{spatial}", weight, P)
    return torch.einsum(f"mn{spatial},mx,ny->xy{spatial}", weight, P, in_side.matrices[i].contiguous())


def _space(granularity: str = "conv", scheme: str = "transitionary", widths=(4, 8, 12, 16),
           channels: int = 3) -> SearchSpace:
    layout = build_layout("resnet20", granularity, list(widths), num_classes=10, in_channels=channels, image_size=8)
    return SearchSpace(layout, get_scheme(scheme))


def _batch(seed: int = 0, size: int = 6, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(size, channels, 8, 8, generator=generator),
            torch.randint(0, 10, (size,), generator=generator))


def _step(net: Supernet, x, y, arch) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    logits = net(x, arch)
    F.cross_entropy(logits, y).backward()
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    return logits.detach(), grads


def _reference_step(net: Supernet, x, y, arch, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(aps, "candidate_kernel", _reference_kernel)
        patch.setattr(net, "_kernels", lambda uses: [None] * len(uses))
        return _step(net, x, y, arch)


def _rounding_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 rounding: bitwise on some CPUs (seen on AVX2), and within 1e-5 of the largest entry
    where the bmm and einsum kernels sum in another order (seen on AVX-512: about 1e-6)."""
    return torch.equal(a, b) or bool((a - b).abs().max() <= 1e-5 * b.abs().max())


@pytest.mark.parametrize("granularity, widths, channels, count", [
    ("conv", (4, 8, 12, 16), 3, 4),
    ("stage", (4, 8, 12, 16), 1, 4),  # the embedded default's space (digits: one image channel)
    ("conv", (16, 32, 64, 96), 3, 1),  # the paper's
], ids=["conv", "default-search", "paper"])
def test_batched_kernels_give_the_einsum_logits_and_gradients_to_rounding(granularity, widths, channels, count,
                                                                      monkeypatch):
    space = _space(granularity, widths=widths, channels=channels)
    net = Supernet(space, seed=0)
    for _ in range(3):  # P/Q away from their start
        net.transition(1e-4)
    assert {group.area for group in net._kernel_groups()} == {1, 9}, "3×3 and 1×1 layers should be batched"
    x, y = _batch(channels=channels)
    generator = torch.Generator().manual_seed(1)
    archs = [space.smallest(), space.largest()] + [space.sample_uniform(generator) for _ in range(count)]
    for arch in archs:
        logits, grads = _step(net, x, y, arch)
        ref_logits, ref_grads = _reference_step(net, x, y, arch, monkeypatch)
        assert _rounding_close(logits, ref_logits), arch
        assert {n for n, g in grads.items() if g is None} == {n for n, g in ref_grads.items() if g is None}
        for name, grad in grads.items():
            assert grad is None or _rounding_close(grad, ref_grads[name]), (arch, name)


def _strides(tensor: torch.Tensor) -> list[int]:
    return [stride for stride, size in zip(tensor.stride(), tensor.shape) if size > 1]


def test_meta_weight_gradients_have_the_einsum_strides(monkeypatch):
    """What torch.autograd.grad hands a probe: the same values in the same layout, so its reductions agree too."""
    space = _space("stage", channels=1)
    net = Supernet(space, seed=0)
    x, y = _batch(channels=1)
    arch = space.largest()
    weights = [module.weight for module in net._layers]
    grads = torch.autograd.grad(F.cross_entropy(net(x, arch), y), weights, allow_unused=True)
    with monkeypatch.context() as patch:
        patch.setattr(aps, "candidate_kernel", _reference_kernel)
        patch.setattr(net, "_kernels", lambda uses: [None] * len(uses))
        expected = torch.autograd.grad(F.cross_entropy(net(x, arch), y), weights, allow_unused=True)
    for grad, reference in zip(grads, expected):
        assert (grad is None) == (reference is None)
        if grad is not None:
            assert torch.equal(grad, reference) and _strides(grad) == _strides(reference)


def test_unused_projections_keep_no_gradient():
    space = _space()
    net = Supernet(space, seed=0)
    x, y = _batch()
    arch = space.smallest()  # equal widths everywhere: only the stride-2 projections run
    _, grads = _step(net, x, y, arch)
    uses = space.layer_uses(arch)
    for (name, _), use in zip(net.aps_layers(), uses):
        assert (grads[f"{name}.weight"] is None) == (use is None), name


def test_exact_schemes_keep_slicing_and_batch_nothing():
    net = Supernet(_space(scheme="ordinal"), seed=0)
    assert not net._banks and not net._kernel_groups()
    kernel = net.blocks[0].convs[0].kernel(1, 2)
    assert kernel.untyped_storage().data_ptr() == net.blocks[0].convs[0].weight.untyped_storage().data_ptr()


def test_fused_eq5_equals_the_per_layer_step_over_20_steps():
    net = Supernet(_space(), seed=0)
    reference = [([t.clone() for t in P], [t.clone() for t in Q], up, uq)
                 for P, Q, up, uq in (transition_plan(m) for m in net._movable)]
    tau = 2e-4
    for _ in range(20):
        expected = transition_layers(reference, tau)
        got = net.transition(tau)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    for (P, Q, _, _), module in zip(reference, net._movable):
        moved, matrices = module.sides()
        for mine, theirs in zip(moved + matrices, P + Q):
            torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)
            assert torch.equal(mine, theirs)  # same arithmetic: bitwise on the CPU
    start = Supernet(_space(), seed=0)
    assert not torch.equal(start.blocks[0].convs[0].out_side.t1, net.blocks[0].convs[0].out_side.t1)


def test_transforms_are_views_of_the_banks_and_the_state_dict_round_trips():
    space = _space()
    net = Supernet(space, seed=0)
    net.transition(1e-4)
    bank = net._banks[0]
    side = net.blocks[1].convs[0].in_side
    assert side.t2.untyped_storage().data_ptr() == bank.buffer.untyped_storage().data_ptr()
    state = net.state_dict()
    assert "blocks.1.convs.0.in_side.t2" in state and not any("bank" in key for key in state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    other = Supernet(space, seed=1)
    other.load_state_dict(torch.load(buffer))
    x, y = _batch()
    arch = space.sample_uniform(torch.Generator().manual_seed(2))
    assert torch.equal(net(x, arch), other(x, arch))
    assert torch.equal(net.transition(1e-4), other.transition(1e-4))
    assert torch.equal(net.blocks[1].convs[0].in_side.t2, other.blocks[1].convs[0].in_side.t2)


def test_moving_the_supernet_re_ties_the_banks():
    net = Supernet(_space(), seed=0)
    net.transition(1e-4)
    wide = copy.deepcopy(net).double()
    assert all(side.intact for side in wide._banked) and wide._banks[0].buffer.dtype == torch.float64
    for mine, theirs in zip(wide.stem.out_side.matrices, net.stem.out_side.matrices):
        assert torch.equal(mine, theirs.double())
    x, _ = _batch()
    arch = wide.space.largest()
    torch.testing.assert_close(wide(x.double(), arch).float(), net(x, arch), rtol=1e-4, atol=1e-4)
    wide.transition(1e-4)  # moves the float64 bank the modules see
    assert wide.stem.out_side.t0.untyped_storage().data_ptr() == wide._banks[0].buffer.untyped_storage().data_ptr()
