"""The state of a search: everything a search changes as it runs, built from plain values without I/O.

:func:`build_state` makes, for a search space (:func:`sharing_lab.space.search_space.build_space`), the supernet,
its optimiser and schedule, the controller and its REINFORCE, the random generators and the probes.
:class:`SearchState` owns the one ``state_dict`` a checkpoint holds. Every random draw of a search comes from its
own generators: the global torch generator is neither read nor set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..compute.distributed import SINGLE, Group
from ..compute.runtime import Runtime
from ..config import Config
from ..errors import InputError
from ..space.search_space import SearchSpace
from .controller import Controller, Reinforce
from .lr_schedule import lr_factor
from .probes.base import Probe, default_probes
from .supernet import Supernet

GENERATORS = ("data", "sample", "reward", "eval", "record")  # one stream each, seeded seed·1000 + position


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
