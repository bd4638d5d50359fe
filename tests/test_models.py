"""Layouts, supernets and plain networks of every registered model."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sharing_lab.aps.layers import candidate_kernel
from sharing_lab.aps.schemes import get_scheme
from sharing_lab.errors import InputError
from sharing_lab.registry import MODELS, SCHEMES
from sharing_lab.search.supernet import Supernet
from sharing_lab.space import flops
from sharing_lab.space.layout import build_layout, model_spec
from sharing_lab.space.plain import build_plain
from sharing_lab.space.search_space import SearchSpace

SAMPLE_ARGUMENTS = {"overlap": "0.5"}  # schemes that need an argument, with one to test
SCHEME_SPECS = [f"{name}:{SAMPLE_ARGUMENTS[name]}" if name in SAMPLE_ARGUMENTS else name for name in SCHEMES.names()]
# ImageNet models at 32×32 with small candidate multipliers: the default sets give meta-weights of up to
# 1792×1792×3×3 (ResNet-18) whose einsum takes seconds per forward on 2 cores. Same decisions and shortcuts.
SMALL_MULTIPLIERS = (0.125, 0.25, 0.375)


def _supernet_of(layout, spec: str, seed: int = 0) -> Supernet:
    return Supernet(SearchSpace(layout, get_scheme(spec)), seed=seed)


def _small_layout(model: str, **kwargs):
    if model_spec(model).multipliers is not None:  # the ImageNet convention: candidates scale the base widths
        kwargs.setdefault("multipliers", SMALL_MULTIPLIERS)
        kwargs.setdefault("image_size", 32)
    return build_layout(model, **kwargs)


def _images(layout, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, layout.in_channels, layout.image_size, layout.image_size, generator=generator)


_SUPERNETS: dict = {}


def _supernet(model: str, spec: str) -> Supernet:
    """One supernet per (model, scheme) for the module: building them dominates the cost."""
    key = (model, spec)
    if key not in _SUPERNETS:
        _SUPERNETS[key] = _supernet_of(_small_layout(model), spec)
    return _SUPERNETS[key]


# --- decisions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, granularity, expected",
    [
        ("resnet20", None, 19),
        ("resnet56", None, 55),
        ("resnet18", None, 13),
        ("mobilenetv2", None, 24),
        ("resnet20", "conv", 19),
        ("resnet20", "block", 10),
        ("resnet20", "stage", 3),
        ("resnet20", "residual", 13),
        ("resnet18", "residual", 13),
    ],
)
def test_number_of_decisions(model, granularity, expected):
    layout = build_layout(model, granularity=granularity)
    assert layout.num_decisions == expected
    assert len(layout.base_widths()) == expected


def test_stage_granularity_ties_the_stem_to_stage_one():
    layout = build_layout("resnet20", granularity="stage")
    assert layout.num_decisions == 3
    assert layout.stem.outputs.decision == layout.blocks[0].outputs.decision


def test_stage_granularity_shares_a_decision_within_each_stage():
    layout = build_layout("resnet20", granularity="stage")
    for first, second in zip(layout.blocks, layout.blocks[1:3]):
        assert first.convs[0].outputs.decision == second.convs[1].outputs.decision
    stage_decisions = {block.outputs.decision for block in layout.blocks}
    assert len(stage_decisions) == 3


def test_default_candidates():
    resnet20 = build_layout("resnet20")
    assert all(d.candidates == (16, 32, 64, 96) for d in resnet20.decisions)
    assert all(d.meta_width == 208 for d in resnet20.decisions)
    resnet18 = build_layout("resnet18")
    assert resnet18.decisions[0].candidates == (32, 48, 64, 80)
    assert resnet18.decisions[-1].candidates == (256, 384, 512, 640)
    assert resnet18.image_size == 224 and resnet18.num_classes == 1000
    assert build_layout("resnet20", meta="max").decisions[0].meta_width == 96
    assert build_layout("resnet20", meta=100).decisions[0].meta_width == 100


# --- supernet forward -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SCHEME_SPECS)
@pytest.mark.parametrize("model", MODELS.names())
def test_supernet_forward_shapes(model, spec):
    net = _supernet(model, spec)
    layout = net.layout
    x = _images(layout)
    generator = torch.Generator().manual_seed(1)
    archs = [net.space.smallest(), net.space.largest(), net.space.sample_uniform(generator)]
    assert len(archs[2]) == layout.num_decisions
    outputs = []
    with torch.no_grad():
        for arch in archs:
            out = net(x, arch)
            assert out.shape == (2, layout.num_classes)
            assert torch.isfinite(out).all()
            outputs.append(out)
    assert not torch.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("granularity", ["block", "stage", "residual"])
def test_supernet_forward_other_granularities(granularity):
    layout = build_layout("resnet20", granularity=granularity, widths=(4, 8))
    net = _supernet_of(layout, "ordinal")
    space = net.space
    with torch.no_grad():
        for arch in (space.smallest(), space.largest(), space.sample_uniform(torch.Generator().manual_seed(0))):
            out = net(_images(layout), arch)
            assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_supernet_is_seeded():
    layout = build_layout("resnet20", widths=(4, 8))
    a = _supernet_of(layout, "transitionary", seed=3).state_dict()
    b = _supernet_of(layout, "transitionary", seed=3).state_dict()
    c = _supernet_of(layout, "transitionary", seed=4).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    assert not all(torch.equal(a[k], c[k]) for k in a if isinstance(a[k], torch.Tensor))


@pytest.mark.parametrize("spec", SCHEME_SPECS)
def test_classifier_does_not_ignore_the_last_decision(spec):
    net = _supernet("resnet20", spec).train()  # batch statistics: independent of other tests' forwards
    layout = net.layout
    last = layout.classifier_in.decision
    assert last == layout.num_decisions - 1
    x = _images(layout, batch=4)
    base = list(net.space.sample_uniform(torch.Generator().manual_seed(2)))
    logits = []
    with torch.no_grad():
        for choice in range(len(layout.decisions[last].candidates)):
            arch = base.copy()
            arch[last] = choice
            logits.append(net(x, arch))
    for a, b in zip(logits, logits[1:]):
        assert not torch.allclose(a, b, rtol=1e-3, atol=1e-5)


def test_supernet_rejects_bad_architectures():
    space = _supernet("resnet20", "ordinal").space
    space.check_arch(space.largest())
    with pytest.raises(InputError):
        space.check_arch(space.largest()[:-1])
    with pytest.raises(InputError):
        space.check_arch((4,) + space.largest()[1:])
    with pytest.raises(InputError):
        space.check_arch((-1,) + space.largest()[1:])


def test_supernet_transition_moves_only_transitionary_transforms():
    layout = build_layout("resnet20", widths=(4, 8, 12, 16))
    ordinal = _supernet_of(layout, "ordinal")
    before = {k: v.clone() for k, v in ordinal.named_buffers() if ".t" in k}
    ordinal.transition(1e-4)
    assert all(torch.equal(before[k], v) for k, v in ordinal.named_buffers() if k in before)
    assert all(module.out_side.exact for _, module in ordinal.aps_layers())

    net = _supernet_of(layout, "transitionary")
    stem_in = net.stem.in_side.t0.clone()
    start = sum(net.phi_per_layer())
    for _ in range(5):
        net.transition(2e-4)
    assert sum(net.phi_per_layer()) < start
    assert torch.equal(net.stem.in_side.t0, stem_in)  # the image channels are not searched
    for _, module in net.aps_layers():
        for matrix in module.out_side.matrices:
            torch.testing.assert_close(matrix.norm(dim=0), torch.ones(matrix.shape[1]), rtol=0, atol=1e-5)


# --- plain networks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS.names())
def test_plain_forward_shapes(model):
    image_size = min(model_spec(model).image_size, 64)  # CIFAR models at their 32, ImageNet models at 64
    layout = build_layout(model, image_size=image_size)
    rng = random.Random(model)
    for _ in range(2):
        widths = [rng.choice(d.candidates) for d in layout.decisions]
        net = build_plain(layout, widths).eval()
        with torch.no_grad():
            out = net(_images(layout, batch=2))
        assert out.shape == (2, layout.num_classes)
        assert torch.isfinite(out).all()


def _plain_from_supernet(net: Supernet, arch):
    """A plain network at ``arch``'s widths whose weights are the supernet's candidate kernels (Eq. 2)."""
    layout = net.layout
    widths = layout.widths_of(arch)
    plain = build_plain(layout, widths)

    def index(channels):
        return arch[channels.decision] if channels.decision is not None else 0

    def kernel(module, spec_in, spec_out):
        return module.kernel(index(spec_in), index(spec_out)).detach()

    with torch.no_grad():
        plain.stem[0][0].weight.copy_(kernel(net.stem, layout.stem.inputs, layout.stem.outputs))
        for super_block, plain_block, block in zip(net.blocks, plain.blocks, layout.blocks):
            for conv, plain_conv, spec in zip(super_block.convs, plain_block.body, block.convs):
                plain_conv[0].weight.copy_(kernel(conv, spec.inputs, spec.outputs))
            if block.projection_needed(widths):
                plain_block.shortcut[0].weight.copy_(kernel(super_block.projection, block.inputs, block.outputs))
            else:
                assert plain_block.shortcut is None
        if layout.head is not None:
            plain.head[0].weight.copy_(kernel(net.head, layout.head.inputs, layout.head.outputs))
        classifier = net.classifier
        i = index(layout.classifier_in)
        kernel = candidate_kernel(classifier.weight, classifier.out_side, 0, classifier.in_side, i)
        plain.classifier.weight.copy_(kernel)
        plain.classifier.bias.copy_(classifier.bias)
        # Running statistics of the BatchNorms that arch uses (other tests' train-mode forwards moved them).
        plain_bns = [m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        super_bns = net.batchnorms(arch)
        assert len(plain_bns) == len(super_bns)
        for plain_bn, super_bn in zip(plain_bns, super_bns):
            plain_bn.running_mean.copy_(super_bn.running_mean)
            plain_bn.running_var.copy_(super_bn.running_var)
    return plain


@pytest.mark.parametrize(
    "model, spec, granularity",
    [
        ("resnet20", "ordinal", None),
        ("resnet20", "transitionary", None),
        ("resnet20", "independent", "residual"),
        ("mobilenetv2", "ordinal", None),
        ("resnet18", "overlap:0.5", None),
    ],
)
def test_plain_net_with_supernet_kernels_matches_supernet(model, spec, granularity):
    kwargs = {"widths": (4, 8, 12, 16)} if model == "resnet20" else {}
    net = _supernet_of(_small_layout(model, granularity=granularity, **kwargs), spec, seed=5)
    layout = net.layout
    x = _images(layout, batch=3, seed=6)
    generator = torch.Generator().manual_seed(7)
    for arch in (net.space.largest(), net.space.sample_uniform(generator), net.space.sample_uniform(generator)):
        plain = _plain_from_supernet(net, arch)
        for train in (False, True):  # running statistics (copied), then batch statistics
            net.train(train)
            plain.train(train)
            with torch.no_grad():
                expected = net(x, arch)
                got = plain(x)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# --- every registered model under every registered scheme -------------------------------------------------

TINY_IMAGE = 16


def _tiny_layout(model: str):
    """``model`` at 16×16 with two small candidates per decision, in the model's own convention."""
    spec = model_spec(model)
    if spec.multipliers is not None:
        return build_layout(model, multipliers=(0.125, 0.25), num_classes=10, image_size=TINY_IMAGE)
    return build_layout(model, widths=(2, 4), num_classes=10, image_size=TINY_IMAGE)


def _measured_macs_and_params(net: torch.nn.Module, layout) -> tuple[int, int]:
    x = torch.zeros(1, layout.in_channels, layout.image_size, layout.image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval()(x)
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2, sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("model", MODELS.names())
def test_every_registered_model_under_every_registered_scheme(model):
    layout = _tiny_layout(model)
    assert layout.model == model and layout.num_decisions >= 1 and layout.image_size == TINY_IMAGE
    x = _images(layout)
    generator = torch.Generator().manual_seed(3)
    for spec in SCHEME_SPECS:
        net = _supernet_of(layout, spec)
        arch = net.space.sample_uniform(generator)
        net.space.check_arch(arch)
        with torch.no_grad():
            out = net(x, arch)
        assert out.shape == (2, layout.num_classes) and torch.isfinite(out).all(), spec
        widths = layout.widths_of(arch)
        cost = flops.count(layout, widths)
        assert net.space.macs(arch) == cost.macs
        assert (cost.macs, cost.params) == _measured_macs_and_params(build_plain(layout, widths), layout), spec


# --- validation -------------------------------------------------------------------------------------------


def test_check_widths():
    layout = build_layout("resnet20")
    layout.check_widths(layout.base_widths())
    layout.check_widths([7] * 19)  # any positive width, not only candidates
    for widths in ([16] * 18, [16] * 20, [16] * 18 + [0], [-16] + [16] * 18, [16.5] + [16] * 18, []):
        with pytest.raises(InputError):
            layout.check_widths(widths)
    with pytest.raises(InputError):
        build_plain(layout, [16] * 18)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "resnet32"},
        {"model": "ResNet20"},
        {"model": "resnet20", "widths": []},
        {"model": "resnet20", "widths": [16, 8]},
        {"model": "resnet20", "widths": [8, 8, 16]},
        {"model": "resnet20", "widths": [0, 8]},
        {"model": "resnet20", "widths": [-4, 8]},
        {"model": "resnet20", "widths": [4, 16], "meta": 8},
        {"model": "resnet20", "meta": "max", "widths": [4, 16], "granularity": "nope"},
        {"model": "resnet18", "multipliers": []},
        {"model": "resnet18", "multipliers": [0.5, -1.0]},
        {"model": "mobilenetv2", "multipliers": [0.5, 1.0], "meta": 10},
    ],
)
def test_build_layout_rejects_bad_input(kwargs):
    with pytest.raises(InputError):
        build_layout(**kwargs)


def test_meta_width_equal_to_largest_candidate_is_accepted():
    layout = build_layout("resnet20", widths=[4, 16], meta=16)
    assert all(d.meta_width == 16 for d in layout.decisions)


def test_independent_scheme_needs_meta_at_least_sum_of_widths():
    scheme = get_scheme("independent")
    with pytest.raises(InputError):
        scheme.make([4, 8, 16], 27)
    scheme.make([4, 8, 16], 28)
    layout = build_layout("resnet20", widths=[4, 16], meta="max")
    with pytest.raises(InputError):
        Supernet(SearchSpace(layout, scheme))
