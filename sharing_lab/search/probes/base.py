"""Probes: measurements taken while a search runs (paper Section 3.3; DESIGN §2 and §5).

A probe is an object the search loop calls at its cadence; it writes rows to the run's records. It sees a
typed :class:`ProbeView` (the space, the supernet, a fixed batch, the writer, step and epoch), never the whole
search. Probes are registered by name (:func:`sharing_lab.register_probe`) and chosen with ``probes.names``;
``probes.enabled = false`` switches them all off.

Probes never touch the training state: gradients come from ``torch.autograd.grad`` (no ``.grad`` written, no
optimiser step), BatchNorm runs on batch statistics with running statistics untouched, and random draws use
the probe's own generator (checkpointed with the run).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...config import ProbeConfig
from ...registry import PROBES
from ...runs.records import RecordWriter
from ...space.search_space import SearchSpace
from ..supernet import Supernet


@dataclass(frozen=True)
class ProbeView:
    """What a probe may read: the space and supernet, ``batch(n)`` (the first ``n`` training images,
    unaugmented, on the search's device), the record ``writer``, the step and epoch, and whether this epoch
    ends with an evaluation."""

    space: SearchSpace
    supernet: Supernet
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    writer: RecordWriter
    step: int
    epoch: int
    evaluating: bool = False


class Probe(ABC):
    """Base class. ``every_steps`` > 0 runs :meth:`run` every that many steps; 0 runs it at each epoch end
    (evaluations happen at epoch ends, so every evaluation is probed too)."""

    name = "probe"

    def __init__(self, every_steps: int = 0) -> None:
        self.every_steps = every_steps

    def due(self, step: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def end_of_epoch(self, view: ProbeView) -> None:
        if self.every_steps == 0:
            self.run(view)

    @abstractmethod
    def run(self, view: ProbeView) -> None:
        """Take the measurement and add rows to ``view.writer``."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def default_probes(config: ProbeConfig, seed: int = 0) -> list[Probe]:
    """The probes ``config.names`` of a search (none when disabled), built from the probe registry."""
    if not config.enabled:
        return []
    return [PROBES.get(name)(config=config, seed=seed) for name in config.names]
