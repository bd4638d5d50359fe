"""Model layouts: the one description of a base network that the supernet, the plain-network builder and the
closed-form FLOPs counter all read.

A layout lists the convolutions of a model block by block. Every channel count that the search decides is a
*decision*: an index into that decision's candidate widths (paper Section 2.1, a_l ∈ {1, …, A}). How convs map
to decisions is the *granularity* (DESIGN §3):

- ``conv``: every conv output is its own decision (ResNet-20: 19, ResNet-56: 55, as in the paper's CIFAR runs).
- ``block``: the convs of one residual block share a decision where their base widths agree; the stem is own.
- ``stage``: the convs of one stage with the same base width share a decision; the stem joins stage 1 when its
  base width agrees (ResNet-20: 3 decisions).
- ``residual``: block-internal widths are free; all block outputs of a stage share one decision, so identity
  shortcuts stay identities (the paper's ImageNet layouts: ResNet-18 13 decisions, MobileNetV2 24).

Residual shortcuts: a block that has a shortcut in the base model uses an identity where the input and output
widths agree at stride 1, and a 1×1 projection (conv + BN, stride s) otherwise. The supernet follows the same
rule per sampled architecture, so it evaluates exactly the network that will be retrained (the authors' code
uses 1×1 shortcuts in the supernet and identities when retraining; see the notes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MODEL_NAMES = ("resnet20", "resnet56", "resnet18", "mobilenetv2")
GRANULARITIES = ("conv", "block", "stage", "residual")
DEFAULT_GRANULARITY = {"resnet20": "conv", "resnet56": "conv", "resnet18": "residual", "mobilenetv2": "residual"}
CIFAR_DEFAULT_WIDTHS = (16, 32, 64, 96)
IMAGENET_MULTIPLIERS = (0.5, 0.75, 1.0, 1.25)


@dataclass(frozen=True)
class Decision:
    """One searched channel count: its base width (the standard model's) and its candidate widths."""

    name: str
    base_width: int
    candidates: tuple[int, ...]
    meta_width: int


@dataclass(frozen=True)
class Channels:
    """A channel count that is either a decision (``decision`` set) or fixed (image channels, classes)."""

    decision: int | None = None
    fixed: int = 0

    def width(self, widths: Sequence[int]) -> int:
        return widths[self.decision] if self.decision is not None else self.fixed


@dataclass(frozen=True)
class ConvSpec:
    """One convolution followed by BatchNorm (and the activation when ``act``)."""

    name: str
    inputs: Channels
    outputs: Channels
    kernel: int
    stride: int
    in_size: int
    depthwise: bool = False
    act: bool = True

    @property
    def out_size(self) -> int:
        return (self.in_size + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class Block:
    """A residual block (ResNet basic block or MobileNetV2 inverted residual)."""

    name: str
    convs: tuple[ConvSpec, ...]
    has_shortcut: bool
    post_act: bool

    @property
    def inputs(self) -> Channels:
        return self.convs[0].inputs

    @property
    def outputs(self) -> Channels:
        return self.convs[-1].outputs

    @property
    def stride(self) -> int:
        return max(conv.stride for conv in self.convs)

    @property
    def in_size(self) -> int:
        return self.convs[0].in_size

    def projection_needed(self, widths: Sequence[int]) -> bool:
        """Whether the shortcut is a 1×1 projection for these widths (identity otherwise)."""
        return self.has_shortcut and (self.stride != 1 or self.inputs.width(widths) != self.outputs.width(widths))

    def projection_possible(self) -> bool:
        """Whether some architecture needs a projection shortcut here."""
        same = self.inputs.decision == self.outputs.decision and self.inputs.fixed == self.outputs.fixed
        return self.has_shortcut and (self.stride != 1 or not same)


@dataclass(frozen=True)
class Layout:
    """A base model with its decisions; ``widths`` below always means one width per decision."""

    model: str
    granularity: str
    decisions: tuple[Decision, ...]
    stem: ConvSpec
    stem_pool: bool
    blocks: tuple[Block, ...]
    head: ConvSpec | None
    classifier_in: Channels
    num_classes: int
    in_channels: int
    image_size: int
    activation: str
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_decisions(self) -> int:
        return len(self.decisions)

    def base_widths(self) -> tuple[int, ...]:
        return tuple(d.base_width for d in self.decisions)

    def widths_of(self, arch: Sequence[int]) -> tuple[int, ...]:
        """Widths of an architecture given as one candidate index per decision."""
        return tuple(d.candidates[a] for d, a in zip(self.decisions, arch))

    def arch_of(self, widths: Sequence[int]) -> tuple[int, ...]:
        """Candidate indices of a width configuration (each width must be a candidate)."""
        return tuple(d.candidates.index(w) for d, w in zip(self.decisions, widths))

    def convs(self) -> list[ConvSpec]:
        """Every conv of the main path, in forward order (stem, blocks, head)."""
        convs = [self.stem]
        for block in self.blocks:
            convs.extend(block.convs)
        if self.head is not None:
            convs.append(self.head)
        return convs

    def check_widths(self, widths: Sequence[int]) -> None:
        """Raise ValueError unless ``widths`` has one positive int per decision."""
        if len(widths) != self.num_decisions:
            raise ValueError(
                f"{self.model} ({self.granularity} granularity) has {self.num_decisions} decisions, "
                f"got {len(widths)} widths"
            )
        for decision, width in zip(self.decisions, widths):
            if int(width) != width or width <= 0:
                raise ValueError(f"width of {decision.name} must be a positive integer, got {width}")


# --- building layouts -------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """A conv output channel count before decisions are assigned."""

    kind: str  # 'stem', 'inner' or 'output'
    stage: int
    block: int
    base_width: int
    name: str


def _slot_key(slot: _Slot, index: int, granularity: str) -> tuple:
    if granularity == "conv" or (granularity == "residual" and slot.kind != "output"):
        return ("own", index)
    if granularity == "residual":
        return ("stage-output", slot.stage)
    if granularity == "block":
        return ("own", index) if slot.kind == "stem" else ("block", slot.block, slot.base_width)
    return ("stage", slot.stage, slot.base_width)


def _decision_name(key: tuple, slot: _Slot) -> str:
    if key[0] == "stage":
        return f"stage{slot.stage}"
    if key[0] == "stage-output":
        return f"stage{slot.stage}.out"
    if key[0] == "block":
        return slot.name.rsplit(".", 1)[0]
    return slot.name


def _candidates_for(base_width: int, widths: Sequence[int] | None, multipliers: Sequence[float] | None) -> tuple:
    if widths is not None:
        return tuple(int(w) for w in widths)
    return tuple(int(round(m * base_width)) for m in multipliers)


def _assign_decisions(
    slots: list[_Slot],
    granularity: str,
    widths: Sequence[int] | None,
    multipliers: Sequence[float] | None,
    meta: str | int,
) -> tuple[list[int], tuple[Decision, ...]]:
    keys: dict[tuple, int] = {}
    slot_decision: list[int] = []
    decisions: list[Decision] = []
    for index, slot in enumerate(slots):
        key = _slot_key(slot, index, granularity)
        if key not in keys:
            keys[key] = len(decisions)
            candidates = _candidates_for(slot.base_width, widths, multipliers)
            name = _decision_name(key, slot)
            decisions.append(Decision(name, slot.base_width, candidates, _meta_width(candidates, meta)))
        slot_decision.append(keys[key])
    return slot_decision, tuple(decisions)


def _meta_width(candidates: Sequence[int], meta: str | int) -> int:
    if meta == "sum":
        return sum(candidates)
    if meta == "max":
        return max(candidates)
    return int(meta)


def _resnet_slots(model: str) -> tuple[list[_Slot], list[tuple[int, int, int]], dict]:
    """Slots and (stage, stride, base width) per block of the CIFAR ResNets and ImageNet ResNet-18."""
    if model in ("resnet20", "resnet56"):
        per_stage = 3 if model == "resnet20" else 9
        stage_widths, stem_width = (16, 32, 64), 16
        info = {"stem_kernel": 3, "stem_stride": 1, "stem_pool": False}
    else:
        per_stage, stage_widths, stem_width = 2, (64, 128, 256, 512), 64
        info = {"stem_kernel": 7, "stem_stride": 2, "stem_pool": True}
    slots = [_Slot("stem", 1, -1, stem_width, "stem")]
    blocks = []
    for stage, width in enumerate(stage_widths, start=1):
        for index in range(per_stage):
            block = len(blocks)
            stride = 2 if stage > 1 and index == 0 else 1
            blocks.append((stage, stride, width))
            slots.append(_Slot("inner", stage, block, width, f"stage{stage}.block{index}.conv1"))
            slots.append(_Slot("output", stage, block, width, f"stage{stage}.block{index}.conv2"))
    return slots, blocks, info


# MobileNetV2 (t, c, n, s) rows, the standard 1.0 configuration.
_MBV2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def build_layout(
    model: str,
    granularity: str | None = None,
    widths: Sequence[int] | None = None,
    multipliers: Sequence[float] | None = None,
    meta: str | int = "sum",
    num_classes: int | None = None,
    in_channels: int = 3,
    image_size: int | None = None,
) -> Layout:
    """Layout of ``model`` with candidate ``widths`` in every decision (CIFAR convention) or candidates
    ``multipliers`` × base width per decision (ImageNet convention, the paper's stage-scaled sets).

    Defaults: CIFAR models use {16, 32, 64, 96}, 32×32 input, 10 classes; ImageNet models use
    {0.5, 0.75, 1, 1.25} × base width (ResNet-18: {32, 48, 64, 80} × 2^(stage−1)), 224×224, 1000 classes.
    ``meta`` is the meta width per decision: ``"sum"`` (Σ c_a, default, fits every scheme), ``"max"`` or an int.
    """
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODEL_NAMES)}")
    granularity = granularity or DEFAULT_GRANULARITY[model]
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; known: {', '.join(GRANULARITIES)}")
    cifar = model in ("resnet20", "resnet56")
    if widths is None and multipliers is None:
        if cifar:
            widths = CIFAR_DEFAULT_WIDTHS
        else:
            multipliers = IMAGENET_MULTIPLIERS
    if widths is not None:
        widths = [int(w) for w in widths]
        if not widths:
            raise ValueError("candidate widths must not be empty")
        if any(w <= 0 for w in widths):
            raise ValueError(f"candidate widths must be positive, got {widths}")
        if widths != sorted(set(widths)):
            raise ValueError(f"candidate widths must be strictly increasing, got {widths}")
    if multipliers is not None and (not multipliers or any(m <= 0 for m in multipliers)):
        raise ValueError(f"width multipliers must be positive, got {list(multipliers)}")
    num_classes = num_classes or (10 if cifar else 1000)
    image_size = image_size or (32 if cifar else 224)
    if model == "mobilenetv2":
        return _mobilenetv2(granularity, widths, multipliers, meta, num_classes, in_channels, image_size)
    return _resnet(model, granularity, widths, multipliers, meta, num_classes, in_channels, image_size)


def _check_meta(decisions: Sequence[Decision]) -> None:
    for decision in decisions:
        if decision.meta_width < max(decision.candidates):
            raise ValueError(
                f"meta width {decision.meta_width} of {decision.name} is smaller than its largest candidate "
                f"{max(decision.candidates)}"
            )


def _resnet(model, granularity, widths, multipliers, meta, num_classes, in_channels, image_size) -> Layout:
    slots, block_info, info = _resnet_slots(model)
    slot_decision, decisions = _assign_decisions(slots, granularity, widths, multipliers, meta)
    _check_meta(decisions)
    stem = ConvSpec(
        "stem", Channels(fixed=in_channels), Channels(slot_decision[0]), info["stem_kernel"], info["stem_stride"],
        image_size,
    )
    size = stem.out_size
    if info["stem_pool"]:
        size = (size + 2 - 3) // 2 + 1
    blocks, previous = [], Channels(slot_decision[0])
    for index, (_stage, stride, _width) in enumerate(block_info):
        inner, output = Channels(slot_decision[1 + 2 * index]), Channels(slot_decision[2 + 2 * index])
        conv1 = ConvSpec(slots[1 + 2 * index].name, previous, inner, 3, stride, size)
        conv2 = ConvSpec(slots[2 + 2 * index].name, inner, output, 3, 1, conv1.out_size, act=False)
        blocks.append(Block(slots[2 + 2 * index].name.rsplit(".", 1)[0], (conv1, conv2), True, True))
        previous, size = output, conv2.out_size
    return Layout(
        model, granularity, decisions, stem, info["stem_pool"], tuple(blocks), None, previous, num_classes,
        in_channels, image_size, "relu",
    )


def _mobilenetv2(granularity, widths, multipliers, meta, num_classes, in_channels, image_size) -> Layout:
    slots = [_Slot("stem", 1, -1, 32, "stem")]
    plan = []  # (stage, block, t, in_base, out_base, stride)
    in_base, block = 32, 0
    for stage, (t, c, n, s) in enumerate(_MBV2_SETTINGS, start=1):
        for index in range(n):
            if t != 1:
                slots.append(_Slot("inner", stage, block, in_base * t, f"stage{stage}.block{index}.expand"))
            slots.append(_Slot("output", stage, block, c, f"stage{stage}.block{index}.project"))
            plan.append((stage, index, t, in_base, c, s if index == 0 else 1))
            in_base, block = c, block + 1
    slot_decision, decisions = _assign_decisions(slots, granularity, widths, multipliers, meta)
    _check_meta(decisions)
    stem = ConvSpec("stem", Channels(fixed=in_channels), Channels(slot_decision[0]), 3, 2, image_size)
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
    return Layout(
        "mobilenetv2", granularity, decisions, stem, False, tuple(blocks), head, Channels(fixed=1280), num_classes,
        in_channels, image_size, "relu6",
    )
