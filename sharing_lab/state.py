"""The state of a search: everything a search changes as it runs, built from plain values without I/O.

:func:`build_space` turns a configuration and the data's shape into the :class:`~sharing_lab.space.SearchSpace`;
:func:`build_state` makes the supernet, its optimiser and schedule, the controller and its REINFORCE, the
random generators and the probes. :class:`SearchState` owns the one ``state_dict`` a checkpoint holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import Config
from .controller import Controller, Reinforce
from .distributed import SINGLE, Group
from .errors import InputError
from .layout import build_layout
from .probes import Probe, default_probes
from .runtime import Runtime
from .schemes import get_scheme
from .space import SearchSpace
from .supernet import Supernet

GENERATORS = ("data", "sample", "reward", "eval", "record")  # one stream each, seeded seed·1000 + position


def build_space(config: Config, num_classes: int, in_channels: int, image_size: int) -> SearchSpace:
    """The search space of ``config`` for data of this shape; refuses a meta width or FLOPs target that cannot
    work."""
    model = config.model
    meta = int(model.meta) if isinstance(model.meta, int) or model.meta.isdigit() else model.meta
    layout = build_layout(model.name, model.granularity, model.widths if model.multipliers is None else None,
                          model.multipliers, meta, num_classes=num_classes, in_channels=in_channels,
                          image_size=image_size)
    space = SearchSpace(layout, get_scheme(config.sharing.scheme))
    for decision in layout.decisions:
        needed = space.scheme.required_meta_width(decision.candidates)
        if decision.meta_width < needed:
            raise InputError(f"scheme {space.scheme.name} needs meta width >= {needed} for {decision.name} "
                             f"(candidates {list(decision.candidates)}), got {decision.meta_width}")
    target = config.search.flops_target
    if target is not None:
        smallest, _ = space.macs_range()
        if target < smallest:
            raise InputError(f"FLOPs target {target:.4g} MACs is below the smallest architecture "
                             f"({smallest:,} MACs)")
    return space


def lr_factor(config: Config, steps_per_epoch: int):
    """The weight learning-rate schedule as a factor of ``search.lr`` per step: cosine to 0, or ×0.1 steps."""
    cfg = config.search

    def factor(step: int) -> float:
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step / (cfg.epochs * steps_per_epoch), 1.0)))
        epoch = step // steps_per_epoch
        return 0.1 ** sum(epoch >= m for m in cfg.lr_milestones)

    return factor


@dataclass
class SearchState:
    """Supernet (and the module the weight step runs: DDP or the supernet), optimiser, schedule, controller,
    REINFORCE, generators, probes, and where the search is (epoch, step, next record part)."""

    space: SearchSpace
    supernet: Supernet
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    controller: Controller
    reinforce: Reinforce
    generators: dict[str, torch.Generator]
    probes: list[Probe]
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    next_part: int = 0

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch, "step": self.step, "next_part": self.next_part,
            "supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "controller": self.controller.state_dict(),
            "reinforce": self.reinforce.state_dict(),
            "generators": {name: g.get_state() for name, g in self.generators.items()},
            "torch_rng": torch.get_rng_state(),
            "probes": [probe.state_dict() for probe in self.probes],
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step, self.next_part = state["epoch"], state["step"], state["next_part"]
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.controller.load_state_dict(state["controller"])
        self.reinforce.load_state_dict(state["reinforce"])
        for name, generator_state in state["generators"].items():
            self.generators[name].set_state(generator_state)
        torch.set_rng_state(state["torch_rng"])
        for probe, probe_state in zip(self.probes, state.get("probes", [])):
            probe.load_state_dict(probe_state)


def build_state(config: Config, space: SearchSpace, steps_per_epoch: int, runtime: Runtime, group: Group = SINGLE,
                probes: list[Probe] | None = None) -> SearchState:
    """A fresh search state (epoch 0) for ``space``; ``probes`` default to ``config.probes``."""
    if steps_per_epoch < 1:
        raise InputError(f"batch size {config.data.batch_size} is larger than the training split")
    cfg = config.search
    supernet = runtime.model(Supernet(space, config.seed, config.model.bn))
    controller = Controller(space.num_candidates, cfg.controller_hidden, config.seed)
    reinforce = Reinforce(controller, cfg.controller_lr, cfg.entropy_weight, cfg.baseline_decay)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    generators = {name: torch.Generator().manual_seed(config.seed * 1000 + offset)
                  for offset, name in enumerate(GENERATORS)}
    return SearchState(space, supernet, group.wrap(supernet), optimizer, scheduler, controller, reinforce,
                       generators, default_probes(config.probes, config.seed) if probes is None else probes,
                       steps_per_epoch)
