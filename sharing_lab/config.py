"""Typed, frozen run configuration: defaults, TOML files, ``--set key=value`` overrides, JSON round trip.

The defaults are the embedded search (digits, CPU, transitionary sharing), calibrated as recorded in the
calibration section of ``docs/explanation/measurements.md`` and ``../shared/notes/digits-calibration.md``.
Paper-scale presets ship in the package (``sharing_lab/presets/*.toml``, registered in
:data:`sharing_lab.registry.PRESETS`): a bare name is a preset (``--config cifar10-resnet20``), a path (it
contains a separator or ends in ``.toml``) a file.
:func:`resolve` is the one way to turn a source and ``--set`` overrides into a checked configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InputError
from .fileio import check_depth
from .limits import AT_LEAST, AT_MOST, CHOICES, FLOAT32_MAX, MAX_WIDTH, SEED_BITS
from .overrides import coerce, parse_override
from .registry import PRESETS, register_preset


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet20"
    widths: tuple[int, ...] | None = (1, 2, 3, 4)  # candidates of every decision; the embedded ground-truth space
    multipliers: tuple[float, ...] | None = None  # or candidates = multiplier × base width (ImageNet convention)
    granularity: str | None = "stage"  # conv, block, stage, residual; None = the model's default
    meta: str | int = "sum"  # meta width per decision: "sum" of candidates, "max", or an integer
    bn: str = "per_candidate"


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    dir: str | None = None
    image_size: int | None = None
    train_images: int | None = None  # a fixed stratified subset of the training split (None: all of it)
    batch_size: int = 32
    reward_batch_size: int = 128  # held-out images per controller reward (notes: 256 on CIFAR)
    eval_batch_size: int = 512
    calibration_images: int = 512  # training images per BN recalibration of an evaluated architecture
    eval_images: int | None = None  # validation images per evaluated architecture (None: the whole split)
    workers: int = 4  # DataLoader workers (ImageNet only)


@dataclass(frozen=True)
class SearchConfig:
    epochs: int = 45
    warmup_epochs: int = 15  # a third of the search, the paper's share (200 of 600)
    flops_target: float | None = None  # MACs; None = unconstrained
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    # The paper's step schedule (×0.1 at half and three quarters of the run, there 300 and 450 of 600), here with
    # the first step where the Φ schedule ends: the meta-weights learn at the peak rate while the transforms move.
    lr_schedule: str = "step"  # step or cosine (per step, to 0)
    lr_milestones: tuple[int, ...] = (33, 40)  # epochs of ×0.1 for the step schedule
    controller_lr: float = 1.6e-4
    controller_hidden: int = 100
    entropy_weight: float = 4e-3
    baseline_decay: float = 0.99
    reward_beta: float = -0.1
    eval_every: int = 5  # epochs between evaluations (and checkpoints)
    eval_archs: int = 20
    beam_top: int = 8
    prob_samples: int = 32  # controller trajectories averaged for the recorded per-layer probabilities
    bn_evaluation: str = "recalibrated"  # BN statistics of an evaluated architecture: recalibrated or batch
    gt_every: int = 3  # with a ground truth: score the whole space every that many evaluations and at the end
    gt_archs: int = 1024  # a larger space is scored on a fixed sample of this many (its 5 best within the target in)


@dataclass(frozen=True)
class SharingConfig:
    scheme: str = "transitionary"
    # How a moving scheme's transforms move after warm-up (sharing_lab.aps.transition): a number is the constant
    # transition rate τ of Eq. 5 (the paper's APS-T; sharing-lab budget --calibrate finds one); "cosine" or "linear"
    # is a Φ schedule (beyond the paper, sharing_lab.aps.phi_schedule): every layer's Φ follows a target in log Φ to
    # phi_fraction of the way from its ordinal start to its independent minimum at phi_at of the search phase.
    transition: str | float = "cosine"
    transition_every: int = 1  # steps between moves during the search phase
    phi_fraction: float = 0.8
    phi_at: float = 0.6


@dataclass(frozen=True)
class ProbeConfig:
    enabled: bool = True
    names: tuple[str, ...] = ("sharing",)  # registered probes to run (sharing-lab list)
    every_steps: int = 0  # > 0: every that many steps; 0: at epoch ends (below) and at every evaluation
    every_epochs: int = 5
    align_archs: int = 4  # K sampled architectures for gradient alignment (Eq. 3)
    probe_batch: int = 64


@dataclass(frozen=True)
class RetrainConfig:
    epochs: int = 20  # the embedded ground truth's recipe (sharing_lab.truth.table)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    batch_size: int = 32


@dataclass(frozen=True)
class RuntimeConfig:
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16
    memory_format: str = "auto"  # auto (channels_last on CUDA), contiguous, channels_last
    compile: bool = False  # torch.compile the retrained plain network (the supernet's shapes change every step)
    max_supernet_gb: float = 8.0  # refuse a search whose supernet is predicted to need more (sharing_lab.search.launch)
    # torch threads of the training loop; None: one on a CPU when a step is small (the embedded scale, where the
    # cost is per operator and other threads only wait), else every core. Populations of architectures (the
    # evaluations) use every core either way.
    threads: int | None = None


@dataclass(frozen=True)
class LoggingConfig:
    """Where a run's records are mirrored besides Parquet (the record of truth); changes nothing in training."""

    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard/, written at every flush of the records


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# Keys of earlier versions and what replaced them (a --set or TOML file that still names them is told how).
RENAMED = {
    "sharing.tau": "a constant rate is now sharing.transition = τ (e.g. --set sharing.transition=1e-4); "
                   "the default, sharing.transition = \"cosine\", is a Φ schedule",
    "sharing.phi_schedule": "the Φ schedule is now sharing.transition = \"cosine\" or \"linear\" (a number "
                            "there is a constant rate τ instead)",
}


def _apply(config: Config, key: str, value: Any) -> Config:
    if key in RENAMED:
        raise InputError(f"unknown config key {key!r}: {RENAMED[key]}")
    parts = key.split(".")
    if len(parts) == 1:
        if parts[0] in SECTIONS or parts[0] not in _hints(Config):
            raise InputError(f"unknown config key {key!r}")
        return dataclasses.replace(config, **{key: coerce(value, _hints(Config)[key], key)})
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise InputError(f"unknown config key {key!r}")
    section_name, field_name = parts
    section = getattr(config, section_name)
    hints = _hints(type(section))
    if field_name not in hints:
        raise InputError(f"unknown config key {key!r}; {section_name} has: {', '.join(hints)}")
    updated = dataclasses.replace(section, **{field_name: coerce(value, hints[field_name], key)})
    return dataclasses.replace(config, **{section_name: updated})


def _flatten(mapping: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def from_mapping(mapping: dict, base: Config | None = None) -> Config:
    """Apply a nested mapping (TOML or JSON shape) over ``base`` (defaults if None); unknown keys are errors."""
    config = base or Config()
    for key, value in _flatten(mapping):
        config = _apply(config, key, value)
    return config


def _shipped_presets() -> None:
    """Register the presets shipped in the package (``sharing_lab/presets/*.toml``); each is described by the first
    line of its leading comment."""
    for entry in (resources.files("sharing_lab") / "presets").iterdir():
        if not entry.name.endswith(".toml"):
            continue
        text = entry.read_text()

        def preset(text: str = text) -> str:
            return text

        first = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
        preset.__doc__ = first
        register_preset(entry.name[: -len(".toml")])(preset)


_shipped_presets()


def preset_names() -> list[str]:
    """Names of the registered configuration presets (:data:`sharing_lab.registry.PRESETS`)."""
    return PRESETS.names()


def is_path(source: str | Path) -> bool:
    """Whether a ``--config`` value names a file (it contains a path separator or ends in ``.toml``) rather than
    a preset (a bare name)."""
    text = str(source)
    return isinstance(source, Path) or text.endswith(".toml") or "/" in text or (os.sep in text) or bool(
        os.altsep and os.altsep in text)


def load_toml(source: str | Path, base: Config | None = None) -> Config:
    """A TOML configuration file (:func:`is_path`) or a registered preset (a bare name), over ``base``."""
    if is_path(source):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist")
        try:
            text = path.read_text()
        except UnicodeDecodeError as error:
            raise InputError(f"config file {path} is not valid TOML: {error}") from None
    elif str(source) in PRESETS:
        text = PRESETS.get(str(source))()
    else:
        raise InputError(f"unknown preset {str(source)!r} (presets: {', '.join(preset_names())}); a file is named "
                         "by a path: ./NAME or NAME.toml")
    check_depth(text, f"config file {source}")
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"config file {source} is not valid TOML: {error}") from None
    if not isinstance(mapping, dict):
        raise InputError(f"config file {source} is not a TOML table")
    return from_mapping(mapping, base)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """``config`` with the ``key=value`` overrides applied in order (:func:`parse_override`); not checked."""
    for text in overrides:
        config = _apply(config, *parse_override(text))
    return config


def resolve(source: Config | str | Path | None = None, overrides: Sequence[str] = (),
            base: Config | None = None) -> Config:
    """The checked configuration of ``source`` with ``overrides``: the one way a run, a resume, ``budget``,
    ``retrain`` and a recipe's job turn what they were given into a :class:`Config`.

    ``source``: a :class:`Config`, a TOML file or preset name (:func:`load_toml`, read over ``base``), or None for
    ``base`` (the defaults when None); ``overrides``: ``key=value`` strings as ``--set`` takes them. Refuses what
    :func:`check` refuses."""
    if isinstance(source, Config):
        config = source
    elif source is None or str(source) == "":
        config = base or Config()
    else:
        config = load_toml(source, base)
    config = apply_overrides(config, overrides)
    check(config)
    return config


def to_dict(config: Config) -> dict:
    """Nested plain dict (tuples as lists), as saved in ``config.json``."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(mapping: dict) -> Config:
    """Inverse of :func:`to_dict`."""
    return from_mapping(mapping, Config())


# Keys a resume may change, only when the run diverged (sharing_lab.search.loop.diverged): the rates that make a step
# explode. Everything else a resume must repeat or leave out.
RESUME_CHANGEABLE = ("search.lr", "search.controller_lr", "sharing.transition")
# Sections that change nothing in training: a resume may always change them (sharing_lab.search.launch.resolve).
RESUME_FREE = ("logging",)
SCHEDULES = ("linear", "cosine")  # the shapes of a Φ schedule (sharing_lab.aps.phi_schedule)
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def check(config: Config) -> None:
    """Refuse values that fit their types but cannot run (checked before a run directory is made): numbers below
    their minimum, unknown choices, any non-finite float (NaN or ±inf: no option of the configuration means
    anything by one; ``search.flops_target`` is unconstrained when unset), devices other than auto, cpu, cuda and
    cuda:N, and an inconsistent schedule."""
    flat = dict(_flatten(to_dict(config)))
    for key, value in flat.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise InputError(f"{key} must be a finite number, got {value}")
        if any(isinstance(v, float) and abs(v) > FLOAT32_MAX for v in values):
            raise InputError(f"{key} = {value} overflows float32, the precision training computes in")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**SEED_BITS:
        raise InputError(f"seed must be an integer in 0..2**{SEED_BITS} - 1, got {config.seed}")
    if not isinstance(config.device, str) or not _DEVICE.fullmatch(config.device):
        raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    if config.runtime.max_supernet_gb <= 0:
        raise InputError(f"runtime.max_supernet_gb must be positive, got {config.runtime.max_supernet_gb}")
    for key, low in AT_LEAST.items():
        value = flat[key]
        if value is not None and value < low:
            raise InputError(f"{key} must be at least {low}, got {value}")
    for key, high in AT_MOST.items():
        value = flat[key]
        if value is not None and value > high:
            raise InputError(f"{key} must be at most {high:,}, got {value:,}")
    widths = [w for w in (config.model.widths or ()) if isinstance(w, int)]
    if any(w > MAX_WIDTH for w in widths):
        raise InputError(f"model.widths must be at most {MAX_WIDTH:,} channels, got {max(widths):,}")
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise InputError(f"{key} must be one of {', '.join(map(str, choices))}, got {flat[key]!r}")
    for key in ("sharing.phi_fraction", "sharing.phi_at"):
        if not 0.0 < flat[key] <= 1.0:
            raise InputError(f"{key} must be in (0, 1], got {flat[key]}")
    transition = config.sharing.transition
    if isinstance(transition, str) and transition not in SCHEDULES:
        raise InputError(f"sharing.transition must be a rate τ >= 0 or a Φ schedule ({', '.join(SCHEDULES)}), "
                         f"got {transition!r}")
    if isinstance(transition, float) and transition < 0:
        raise InputError(f"sharing.transition (a constant rate τ) must be at least 0, got {transition:g}")
    if config.search.warmup_epochs > config.search.epochs:
        raise InputError(f"search.warmup_epochs ({config.search.warmup_epochs}) exceeds search.epochs "
                         f"({config.search.epochs})")
    for section in ("search", "retrain"):
        if getattr(config, section).nesterov and getattr(config, section).momentum <= 0:
            raise InputError(f"{section}.nesterov needs a positive {section}.momentum, got "
                             f"{getattr(config, section).momentum}")
    if not 0.0 <= config.search.baseline_decay < 1.0:
        raise InputError(f"search.baseline_decay must be in [0, 1), got {config.search.baseline_decay}")
    meta = config.model.meta
    if not (meta in ("sum", "max") or (isinstance(meta, int) and meta > 0) or (isinstance(meta, str)
                                                                             and meta.isdigit())):
        raise InputError(f"model.meta must be 'sum', 'max' or a positive integer, got {meta!r}")


def flat(config: Config | dict) -> dict[str, Any]:
    """Every key of ``config`` (a :class:`Config` or its :func:`to_dict` form, e.g. a checkpoint's) as
    ``section.field`` → value (tuples as lists), as ``--set`` spells them."""
    return dict(_flatten(to_dict(config) if isinstance(config, Config) else config))


def _same(a: Any, b: Any) -> bool:
    """Equality of configuration values, with NaN equal to NaN (also inside lists)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(a: Config | dict, b: Config | dict) -> list[str]:
    """Keys (``section.field``) whose values differ between two configurations (a :class:`Config` or its
    :func:`to_dict` form), NaN being equal to NaN; keys only one side has count as different."""
    flat_a, flat_b = (dict(_flatten(to_dict(c) if isinstance(c, Config) else c)) for c in (a, b))
    keys = list(flat_a) + [key for key in flat_b if key not in flat_a]
    missing = object()
    return [key for key in keys if not _same(flat_a.get(key, missing), flat_b.get(key, missing))]


def training_differences(a: Config | dict, b: Config | dict) -> list[str]:
    """:func:`differences` without the keys of the :data:`RESUME_FREE` sections (they do not change training)."""
    return [key for key in differences(a, b) if key.partition(".")[0] not in RESUME_FREE]
