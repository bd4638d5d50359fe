"""ImageNet MobileNetV2 (Sandler et al. 2018): inverted residuals, the standard 1.0 configuration."""

from __future__ import annotations

from ...registry import register_model
from ..layout import Block, Channels, ConvSpec, Layout, ModelSpec, Request, Slot
from .resnet_imagenet import IMAGENET_MULTIPLIERS

# (expansion t, output channels c, blocks n, first stride s) per stage.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _build(request: Request) -> Layout:
    slots = [Slot("stem", 1, -1, 32, "stem")]
    plan = []  # (stage, block, t, in_base, out_base, stride)
    in_base, block = 32, 0
    for stage, (t, c, n, s) in enumerate(SETTINGS, start=1):
        for index in range(n):
            if t != 1:
                slots.append(Slot("inner", stage, block, in_base * t, f"stage{stage}.block{index}.expand"))
            slots.append(Slot("output", stage, block, c, f"stage{stage}.block{index}.project"))
            plan.append((stage, index, t, in_base, c, s if index == 0 else 1))
            in_base, block = c, block + 1
    slot_decision, decisions = request.assign(slots)
    stem = ConvSpec("stem", Channels(fixed=request.in_channels), Channels(slot_decision[0]), 3, 2,
                    request.image_size)
    size, previous, cursor, blocks = stem.out_size, Channels(slot_decision[0]), 1, []
    for stage, index, t, in_b, out_b, stride in plan:
        convs = []
        hidden = previous
        prefix = f"stage{stage}.block{index}"
        if t != 1:
            hidden = Channels(slot_decision[cursor])
            cursor += 1
            convs.append(ConvSpec(f"{prefix}.expand", previous, hidden, 1, 1, size))
        dw = ConvSpec(f"{prefix}.depthwise", hidden, hidden, 3, stride, size, depthwise=True)
        output = Channels(slot_decision[cursor])
        cursor += 1
        project = ConvSpec(f"{prefix}.project", hidden, output, 1, 1, dw.out_size, act=False)
        convs.extend([dw, project])
        blocks.append(Block(prefix, tuple(convs), stride == 1 and in_b == out_b, False))
        previous, size = output, dw.out_size
    head = ConvSpec("head", previous, Channels(fixed=1280), 1, 1, size)
    return Layout("mobilenetv2", request.granularity, decisions, stem, False, tuple(blocks), head,
                  Channels(fixed=1280), request.num_classes, request.in_channels, request.image_size, "relu6")


@register_model("mobilenetv2")
def mobilenetv2() -> ModelSpec:
    """ImageNet MobileNetV2: expansions free, block outputs of a stage share a decision (24 decisions)."""
    return ModelSpec("mobilenetv2", _build, granularity="residual", image_size=224, num_classes=1000,
                     multipliers=IMAGENET_MULTIPLIERS)
