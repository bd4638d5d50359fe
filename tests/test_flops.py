"""Closed-form MACs and parameters against the published base models and torch's FlopCounterMode."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sharing_lab.registry import MODELS
from sharing_lab.space import flops
from sharing_lab.space.layout import build_layout
from sharing_lab.space.plain import build_plain


def _measured(layout, widths) -> tuple[int, int]:
    """(MACs, parameters) of the plain network, measured by torch on a batch of one."""
    net = build_plain(layout, widths).eval()
    x = torch.zeros(1, layout.in_channels, layout.image_size, layout.image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2, sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    "model, expected",
    [("resnet20", 40_813_184), ("resnet56", 125_747_840), ("resnet18", 1_814_073_344)],
)
def test_base_model_macs(model, expected):
    layout = build_layout(model)
    cost = flops.count(layout, layout.base_widths())
    assert cost.macs == expected
    assert cost.flops == 2 * expected
    assert flops.count_macs(layout, layout.base_widths()) == expected


def test_base_mobilenetv2_macs():
    layout = build_layout("mobilenetv2")
    macs = flops.count(layout, layout.base_widths()).macs
    assert abs(macs - 300.8e6) / 300.8e6 < 0.01


def test_base_model_params():
    # The standard parameter counts of these models (conv + BN affine + classifier with bias).
    assert flops.count(build_layout("resnet18"), build_layout("resnet18").base_widths()).params == 11_689_512
    assert flops.count(build_layout("mobilenetv2"), build_layout("mobilenetv2").base_widths()).params == 3_504_872
    assert flops.count(build_layout("resnet20"), build_layout("resnet20").base_widths()).params == 272_474


@pytest.mark.parametrize("model", MODELS.names())
def test_base_model_matches_flop_counter_at_full_resolution(model):
    layout = build_layout(model)
    cost = flops.count(layout, layout.base_widths())
    assert (cost.macs, cost.params) == _measured(layout, layout.base_widths())


def _random_widths(layout, seed) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice(d.candidates) for d in layout.decisions]


@pytest.mark.parametrize(
    "model, granularity, image_size",
    [
        ("resnet20", None, None),
        ("resnet20", "block", None),
        ("resnet20", "stage", None),
        ("resnet20", "residual", None),
        ("resnet56", None, None),
        ("resnet18", None, 64),
        ("resnet18", "conv", 64),
        ("mobilenetv2", None, 64),
        ("mobilenetv2", "block", 64),
    ],
)
def test_random_widths_match_flop_counter(model, granularity, image_size):
    layout = build_layout(model, granularity=granularity, image_size=image_size)
    configurations = [_random_widths(layout, seed) for seed in range(3)]
    assert len({tuple(w) for w in configurations}) == 3
    for widths in configurations:
        cost = flops.count(layout, widths)
        assert (cost.macs, cost.params) == _measured(layout, widths), widths


@pytest.mark.parametrize(
    "model, kwargs",
    [
        ("resnet20", {"granularity": "residual", "image_size": 30, "num_classes": 7, "in_channels": 1}),
        ("resnet18", {"image_size": 200}),  # odd feature maps (25, 13, 7): ceil-mode sizes of strided convs
        ("mobilenetv2", {"image_size": 50, "granularity": "conv"}),
    ],
)
def test_widths_outside_the_candidates_and_odd_sizes_match_flop_counter(model, kwargs):
    # The closed form is for any width configuration, not only candidates (e.g. an exported architecture).
    layout = build_layout(model, **kwargs)
    rng = random.Random(11)
    widths = [rng.randint(1, 2 * d.base_width) for d in layout.decisions]
    cost = flops.count(layout, widths)
    assert (cost.macs, cost.params) == _measured(layout, widths)


def test_identity_shortcuts_save_projection_macs():
    # Residual granularity: equal widths in a stage mean identity shortcuts; a change costs a 1×1 projection.
    layout = build_layout("resnet20", granularity="residual")
    base = list(layout.base_widths())
    stem = layout.stem.outputs.decision
    stage1 = layout.blocks[0].outputs.decision
    assert stem != stage1
    wider_stem = base.copy()
    wider_stem[stem] = 32
    projection = 16 * 32 * 32 * 32  # c_in · c_out · H · W of stage 1's first block
    stem_conv = (32 - 16) * 3 * 9 * 32 * 32
    first_conv = (32 - 16) * 16 * 9 * 32 * 32
    assert flops.count_macs(layout, wider_stem) - flops.count_macs(layout, base) == projection + stem_conv + first_conv


@pytest.mark.parametrize("model", MODELS.names())
def test_macs_range(model):
    layout = build_layout(model)
    low, high = flops.macs_range(layout)
    smallest = [min(d.candidates) for d in layout.decisions]
    largest = [max(d.candidates) for d in layout.decisions]
    assert low == flops.count_macs(layout, smallest)
    assert high == flops.count_macs(layout, largest)
    assert low < flops.count_macs(layout, layout.base_widths()) <= high  # a benchmark's base may be its widest
    for seed in range(5):
        assert low <= flops.count_macs(layout, _random_widths(layout, seed)) <= high


def test_macs_range_of_the_paper_resnet20_space():
    low, high = flops.macs_range(build_layout("resnet20", widths=[16, 32, 64, 96]))
    assert low == 19_103_904
    assert high == 674_464_704


def test_macs_grow_with_width_and_resolution():
    layout = build_layout("resnet18", image_size=64)
    assert flops.count_macs(build_layout("resnet18"), layout.base_widths()) > flops.count_macs(
        layout, layout.base_widths()
    )
    widths = list(layout.base_widths())
    before = flops.count_macs(layout, widths)
    widths[5] += 16
    assert flops.count_macs(layout, widths) > before
