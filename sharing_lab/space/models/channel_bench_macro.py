"""The two networks of Channel-Bench-Macro (Su et al., BCNet, CVPR 2021; ``xiusu/Channel-Bench-Macro``): a
ResNet and a MobileNet for 32×32 CIFAR-10, seven width decisions each with candidates {0.25, 0.5, 0.75, 1.0} × the
layer's maximum width (4⁷ = 16,384 architectures per space), every one trained from scratch in the benchmark.

Under the default ``residual`` granularity a decision is one of the benchmark's seven layers: the inner width of
each block, and the width of each skip line, which the stem (the first stage's skip) and the block outputs
feeding the same line share. The benchmark's architecture string is these seven decisions in order, each digit
the multiplier × 4.

- ``cbm-resnet``: stem 3×3/2 (c0); two basic blocks c0→c1→c0 and c0→c2→c0 with identity shortcuts; a block
  c0→c3 (3×3/2)→c4 *without* shortcut; two blocks c4→c5→c4 and c4→c6→c4; ReLU after every block; pool;
  classifier. Maximum widths (256, 256, 256, 512, 512, 512, 512).
- ``cbm-mobilenet``: stem 3×3/2 (c0); inverted residuals (1×1 expand, 3×3 depthwise, 1×1 project; ReLU)
  c0→c1→c0 and c0→c2→c0 with identity shortcuts, c0→c3→c4 at stride 2 without, c4→c5→c4 with; a 1×1 head
  c4→c6 with ReLU; pool; classifier. Maximum widths (128, 768, 768, 768, 256, 1536, 1024).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...registry import register_model
from ..layout import Block, Channels, ConvSpec, Layout, ModelSpec, Request, Slot

CBM_MULTIPLIERS = (0.25, 0.5, 0.75, 1.0)
RESNET_MAX = (256, 256, 256, 512, 512, 512, 512)
MOBILENET_MAX = (128, 768, 768, 768, 256, 1536, 1024)
# (input decision, inner decision, output decision, stride) of each block, indices into the seven layers
BLOCKS = ((0, 1, 0, 1), (0, 2, 0, 1), (0, 3, 4, 2), (4, 5, 4, 1))
RESNET_BLOCKS = (*BLOCKS, (4, 6, 4, 1))


def _slots(plan: Sequence[tuple[int, int, int, int]], maxima: Sequence[int], head: bool) -> list[Slot]:
    """The conv outputs in forward order; a skip line is one stage's outputs, so ``residual`` ties them."""
    slots = [Slot("output", 1, -1, maxima[0], "stem")]
    for index, (_, inner, output, _) in enumerate(plan):
        stage = 1 if output == 0 else 2
        slots.append(Slot("inner", stage, index, maxima[inner], f"block{index + 1}.conv1"))
        slots.append(Slot("output", stage, index, maxima[output], f"block{index + 1}.conv2"))
    if head:
        slots.append(Slot("inner", 2, len(plan), maxima[6], "head"))
    return slots


def _build(model: str, request: Request, maxima: Sequence[int], plan: Sequence[tuple[int, int, int, int]],
           mobile: bool) -> Layout:
    slots = _slots(plan, maxima, head=mobile)
    slot_decision, decisions = request.assign(slots)
    stem = ConvSpec("stem", Channels(fixed=request.in_channels), Channels(slot_decision[0]), 3, 2,
                    request.image_size)
    size, previous, blocks = stem.out_size, Channels(slot_decision[0]), []
    for index, (_, _, _, stride) in enumerate(plan):
        inner = Channels(slot_decision[1 + 2 * index])
        output = Channels(slot_decision[2 + 2 * index])
        name = f"block{index + 1}"
        shortcut = stride == 1  # the benchmark's stride-2 block has no shortcut at all
        if mobile:
            expand = ConvSpec(f"{name}.expand", previous, inner, 1, 1, size)
            depthwise = ConvSpec(f"{name}.depthwise", inner, inner, 3, stride, size, depthwise=True)
            project = ConvSpec(f"{name}.project", inner, output, 1, 1, depthwise.out_size, act=False)
            blocks.append(Block(name, (expand, depthwise, project), shortcut, False))
            size = depthwise.out_size
        else:
            conv1 = ConvSpec(f"{name}.conv1", previous, inner, 3, stride, size)
            conv2 = ConvSpec(f"{name}.conv2", inner, output, 3, 1, conv1.out_size, act=False)
            blocks.append(Block(name, (conv1, conv2), shortcut, True))
            size = conv2.out_size
        previous = output
    head, features = None, previous
    if mobile:
        features = Channels(slot_decision[-1])
        head = ConvSpec("head", previous, features, 1, 1, size)
    return Layout(model, request.granularity, decisions, stem, False, tuple(blocks), head, features,
                  request.num_classes, request.in_channels, request.image_size, "relu")


@register_model("cbm-resnet")
def cbm_resnet() -> ModelSpec:
    """Channel-Bench-Macro's ResNet space: 5 basic blocks, 7 decisions of {0.25, 0.5, 0.75, 1} × maximum."""
    return ModelSpec("cbm-resnet", lambda request: _build("cbm-resnet", request, RESNET_MAX, RESNET_BLOCKS, False),
                     granularity="residual", image_size=32, num_classes=10, multipliers=CBM_MULTIPLIERS)


@register_model("cbm-mobilenet")
def cbm_mobilenet() -> ModelSpec:
    """Channel-Bench-Macro's MobileNet space: 4 inverted residuals and a 1×1 head, 7 decisions."""
    return ModelSpec("cbm-mobilenet", lambda request: _build("cbm-mobilenet", request, MOBILENET_MAX, BLOCKS, True),
                     granularity="residual", image_size=32, num_classes=10, multipliers=CBM_MULTIPLIERS)
