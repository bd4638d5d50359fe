"""What the recording, evaluation and finish phases of a search see: a :class:`SearchView` (what they read) and
its :class:`Recorder` (where they write), never the whole session (its optimiser, data stream, process group or
divergence guard); the finish also reads the :class:`RunFacts` its summary states."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..aps.transition import Mover, phase_position
from ..config import Config, SearchConfig
from ..runs.records import RecordWriter
from ..space.search_space import SearchSpace
from ..truth.scoring import Truth
from .accuracy import ArchScorer
from .clock import PhaseClock
from .controller import Controller
from .supernet import Supernet


@dataclass(frozen=True)
class Recorder:
    """Writes rows into the run's records at one point of the search (``step``, ``epoch``)."""

    writer: RecordWriter
    step: int
    epoch: int

    def scalars(self, values: Mapping[str, float]) -> None:
        """One ``scalars`` row per name."""
        self.writer.add("scalars", [{"step": self.step, "epoch": self.epoch, "name": name, "value": float(value)}
                                    for name, value in values.items()])

    def rows(self, table: str, rows: list[dict], step: bool = True) -> None:
        """``rows`` of ``table`` with the epoch (and the step, unless ``step`` is False) in front."""
        where = {"step": self.step, "epoch": self.epoch} if step else {"epoch": self.epoch}
        self.writer.add(table, [{**where, **row} for row in rows])


@dataclass(frozen=True)
class SearchView:
    """A search at one point (the recorder's step and epoch): its settings (``search.*``), space, supernet and
    controller, the architecture scorer, the ground truth (None without one), the transforms' mover (None for a
    scheme that keeps them fixed), the evaluation and recording random streams, and the log."""

    settings: SearchConfig
    space: SearchSpace
    supernet: Supernet
    controller: Controller
    score: ArchScorer
    truth: Truth | None
    mover: Mover | None
    eval_generator: torch.Generator
    record_generator: torch.Generator
    recorder: Recorder
    steps_per_epoch: int
    log: Callable[[str], None]
    clock: PhaseClock

    @property
    def searching(self) -> bool:
        """Whether the search phase has begun (the controller samples; the transforms move)."""
        return self.recorder.epoch >= self.settings.warmup_epochs

    def position(self) -> float:
        """The share of the search phase done (:func:`sharing_lab.aps.transition.phase_position`)."""
        return phase_position(self.recorder.step, self.settings.warmup_epochs, self.settings.epochs,
                              self.steps_per_epoch)

    def flops_left(self, prefix: Sequence[int]) -> float:
        """The controller's FLOPs input for ``prefix`` (``SearchSpace.flops_left``)."""
        return self.space.flops_left(prefix, self.settings.flops_target)


@dataclass(frozen=True)
class RunFacts:
    """What the summary states of the run beyond the search itself: where it is, its configuration, the weight
    steps taken, and where it ran (:meth:`sharing_lab.compute.runtime.Runtime.describe` and the processes)."""

    run_dir: Path
    config: Config
    steps: int
    runtime: dict
    processes: int
