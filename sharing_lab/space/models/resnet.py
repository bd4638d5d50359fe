"""The layout of a ResNet of basic blocks (two 3×3 convs per block), CIFAR- or ImageNet-style."""

from __future__ import annotations

from collections.abc import Sequence

from ..layout import Block, Channels, ConvSpec, Layout, Request, Slot


def resnet_layout(model: str, request: Request, stage_widths: Sequence[int], per_stage: int, stem_kernel: int,
                  stem_stride: int, stem_pool: bool) -> Layout:
    """Stem (conv ``stem_kernel``, stride ``stem_stride``, optional 3×3/2 max-pool), ``per_stage`` basic blocks
    per stage (stride 2 at the first block of every stage after the first), global pool, classifier."""
    slots = [Slot("stem", 1, -1, stage_widths[0], "stem")]
    plan = []
    for stage, width in enumerate(stage_widths, start=1):
        for index in range(per_stage):
            block = len(plan)
            plan.append(2 if stage > 1 and index == 0 else 1)
            slots.append(Slot("inner", stage, block, width, f"stage{stage}.block{index}.conv1"))
            slots.append(Slot("output", stage, block, width, f"stage{stage}.block{index}.conv2"))
    slot_decision, decisions = request.assign(slots)
    stem = ConvSpec("stem", Channels(fixed=request.in_channels), Channels(slot_decision[0]), stem_kernel,
                    stem_stride, request.image_size)
    size = stem.out_size
    if stem_pool:
        size = (size + 2 - 3) // 2 + 1
    blocks, previous = [], Channels(slot_decision[0])
    for index, stride in enumerate(plan):
        inner, output = Channels(slot_decision[1 + 2 * index]), Channels(slot_decision[2 + 2 * index])
        conv1 = ConvSpec(slots[1 + 2 * index].name, previous, inner, 3, stride, size)
        conv2 = ConvSpec(slots[2 + 2 * index].name, inner, output, 3, 1, conv1.out_size, act=False)
        blocks.append(Block(slots[2 + 2 * index].name.rsplit(".", 1)[0], (conv1, conv2), True, True))
        previous, size = output, conv2.out_size
    return Layout(model, request.granularity, decisions, stem, stem_pool, tuple(blocks), None, previous,
                  request.num_classes, request.in_channels, request.image_size, "relu")
