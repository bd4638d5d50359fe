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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..registry import MODELS

GRANULARITIES = ("conv", "block", "stage", "residual")


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
        """Refuse (as bad input) anything but one positive int per decision."""
        if len(widths) != self.num_decisions:
            raise InputError(
                f"{self.model} ({self.granularity} granularity) has {self.num_decisions} decisions, "
                f"got {len(widths)} widths"
            )
        for decision, width in zip(self.decisions, widths):
            if int(width) != width or width <= 0:
                raise InputError(f"width of {decision.name} must be a positive integer, got {width}")


# --- building layouts -------------------------------------------------------------------------------------


@dataclass
class Slot:
    """A conv output channel count of a base model before decisions are assigned."""

    kind: str  # 'stem', 'inner' or 'output'
    stage: int
    block: int
    base_width: int
    name: str


def _slot_key(slot: Slot, index: int, granularity: str) -> tuple:
    if granularity == "conv" or (granularity == "residual" and slot.kind != "output"):
        return ("own", index)
    if granularity == "residual":
        return ("stage-output", slot.stage)
    if granularity == "block":
        return ("own", index) if slot.kind == "stem" else ("block", slot.block, slot.base_width)
    return ("stage", slot.stage, slot.base_width)


def _decision_name(key: tuple, slot: Slot) -> str:
    if key[0] == "stage":
        return f"stage{slot.stage}"
    if key[0] == "stage-output":
        return f"stage{slot.stage}.out"
    if key[0] == "block":
        return slot.name.rsplit(".", 1)[0]
    return slot.name


@dataclass(frozen=True)
class Request:
    """What a model builder is asked for: the candidates, the granularity and the data's shape."""

    granularity: str
    widths: tuple[int, ...] | None
    multipliers: tuple[float, ...] | None
    meta: str | int
    num_classes: int
    in_channels: int
    image_size: int

    def candidates_for(self, base_width: int) -> tuple[int, ...]:
        if self.widths is not None:
            return self.widths
        return tuple(int(round(m * base_width)) for m in self.multipliers)

    def meta_width(self, candidates: Sequence[int]) -> int:
        if self.meta == "sum":
            return sum(candidates)
        if self.meta == "max":
            return max(candidates)
        return int(self.meta)

    def assign(self, slots: Sequence[Slot]) -> tuple[list[int], tuple[Decision, ...]]:
        """The decision of every slot under this granularity, and the decisions (in first-use order)."""
        keys: dict[tuple, int] = {}
        slot_decision: list[int] = []
        decisions: list[Decision] = []
        for index, slot in enumerate(slots):
            key = _slot_key(slot, index, self.granularity)
            if key not in keys:
                keys[key] = len(decisions)
                candidates = self.candidates_for(slot.base_width)
                meta = self.meta_width(candidates)
                if meta < max(candidates):
                    raise InputError(f"meta width {meta} of {_decision_name(key, slot)} is smaller than its largest "
                                     f"candidate {max(candidates)}")
                decisions.append(Decision(_decision_name(key, slot), slot.base_width, candidates, meta))
            slot_decision.append(keys[key])
        return slot_decision, tuple(decisions)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its defaults and ``build(request) -> Layout``.

    ``widths`` (CIFAR convention: the same candidates in every decision) or ``multipliers`` (ImageNet
    convention: candidates = multiplier × base width) is the default candidate set.
    """

    name: str
    build: Callable[[Request], Layout]
    granularity: str
    image_size: int
    num_classes: int
    widths: tuple[int, ...] | None = None
    multipliers: tuple[float, ...] | None = None


def model_names() -> list[str]:
    """Names of the registered models."""
    return MODELS.names()


def model_spec(model: str) -> ModelSpec:
    """The registered :class:`ModelSpec` of ``model`` (unknown names are bad input)."""
    return MODELS.get(model)()


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

    Unset arguments take the model's defaults (:class:`ModelSpec`): CIFAR models {16, 32, 64, 96}, 32×32,
    10 classes; ImageNet models {0.5, 0.75, 1, 1.25} × base width, 224×224, 1000 classes. ``meta`` is the meta
    width per decision: ``"sum"`` (Σ c_a, default, fits every scheme), ``"max"`` or an int.
    """
    spec = model_spec(model)
    granularity = granularity or spec.granularity
    if granularity not in GRANULARITIES:
        raise InputError(f"unknown granularity {granularity!r}; known: {', '.join(GRANULARITIES)}")
    if widths is None and multipliers is None:
        widths, multipliers = spec.widths, spec.multipliers
    if widths is not None:
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise InputError("candidate widths must not be empty")
        if any(w <= 0 for w in widths):
            raise InputError(f"candidate widths must be positive, got {list(widths)}")
        if list(widths) != sorted(set(widths)):
            raise InputError(f"candidate widths must be strictly increasing, got {list(widths)}")
        multipliers = None
    elif not multipliers or any(m <= 0 for m in multipliers):
        raise InputError(f"width multipliers must be positive, got {list(multipliers or ())}")
    else:
        multipliers = tuple(float(m) for m in multipliers)
    for what, value in (("num_classes", num_classes), ("image_size", image_size), ("in_channels", in_channels)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{what} must be a positive integer, got {value!r}")
    request = Request(granularity, widths, multipliers, meta, num_classes or spec.num_classes, in_channels,
                      image_size or spec.image_size)
    return spec.build(request)
