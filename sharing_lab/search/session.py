"""A search session: a search opened on its run directory (:class:`Search`, made by :func:`open_search`).

It holds what the loop works with (the configuration, data, state, record writer, runtime, process group, the
divergence guard, the architecture scorer, the ground truth and the transforms' mover) and hands out the narrow
views the other parts see: a :class:`~sharing_lab.search.view.SearchView` for recording, evaluation and the
finish, a :class:`~sharing_lab.search.probes.base.ProbeView` for the probes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..aps.transition import Mover, transition_of
from ..compute.distributed import SINGLE, Group
from ..compute.runtime import Runtime, resolve_device, resolve_runtime
from ..config import Config, check
from ..data.protocol import Dataset, load_data
from ..runs.records import NullWriter, RecordWriter
from ..space.search_space import SearchSpace, build_space
from ..truth.scoring import Truth, load_truth
from .accuracy import ArchScorer, calibration_batches
from .clock import PhaseClock
from .guard import DivergenceGuard
from .probes.base import Probe, ProbeView
from .state import SearchState, build_state
from .supernet import Supernet
from .view import Recorder, RunFacts, SearchView


@dataclass
class Search:
    """A search opened on its run directory: configuration, data, state, records and where it runs."""

    config: Config
    run_dir: Path
    data: Dataset
    state: SearchState
    writer: RecordWriter
    runtime: Runtime
    group: Group
    guard: DivergenceGuard
    score: ArchScorer
    log: Callable[[str], None] = print
    progress: bool = False
    truth: Truth | None = None  # the space's ground truth, when it has one (sharing_lab.truth)
    mover: Mover | None = None  # how the transforms move (None: the scheme keeps them fixed)
    clock: PhaseClock = field(default_factory=PhaseClock)  # where the time goes

    @property
    def space(self) -> SearchSpace:
        return self.state.space

    @property
    def supernet(self) -> Supernet:
        return self.state.supernet

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def target(self) -> float | None:
        return self.config.search.flops_target

    def flops_left(self, prefix: Sequence[int]) -> float:
        """The controller's FLOPs input for ``prefix`` (``SearchSpace.flops_left``)."""
        return self.space.flops_left(prefix, self.target)

    def in_search_phase(self) -> bool:
        return self.state.epoch >= self.config.search.warmup_epochs

    def evaluating(self) -> bool:
        """Whether the current epoch ends with an evaluation (every ``eval_every`` epochs, and the last)."""
        settings, epoch = self.config.search, self.state.epoch
        return (epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs

    def view(self) -> SearchView:
        """What recording, evaluation and the finish read now, and the recorder at this step and epoch."""
        state = self.state
        return SearchView(self.config.search, self.space, state.supernet, state.controller, self.score, self.truth,
                          self.mover, state.generators["eval"], state.generators["record"],
                          Recorder(self.writer, state.step, state.epoch), state.steps_per_epoch, self.log, self.clock)

    def facts(self) -> RunFacts:
        """What the summary states of the run beyond the search itself."""
        return RunFacts(self.run_dir, self.config, self.state.step, self.runtime.describe(), self.group.world_size)

    def probe_view(self) -> ProbeView:
        """What a probe sees now: the space, the supernet, the first training images, the writer, step, epoch."""
        data, device, state = self.data, self.device, self.state

        def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            return data.batch("train", torch.arange(min(n, data.split_size("train"))), device=device)

        return ProbeView(self.space, state.supernet, batch, self.writer, state.step, state.epoch, self.evaluating())


def open_search(config: Config, run_dir: str | Path, log: Callable[[str], None] = print, progress: bool = False,
                probes: list[Probe] | None = None, group: Group = SINGLE) -> Search:
    """Load the data and build the search of ``config`` writing into ``run_dir`` (which must exist for rank 0).

    ``group`` places this process in a multi-process search (its device is the group's); only rank 0 logs,
    records and checkpoints.
    """
    check(config)
    clock = PhaseClock()
    if not group.is_main:
        log, progress = (lambda message: None), False
    device = group.device if group.active else resolve_device(config.device)
    data_cfg = config.data
    group.local_size(data_cfg.batch_size, "data.batch_size")  # refuses a batch the ranks cannot split evenly
    group.local_size(data_cfg.reward_batch_size, "data.reward_batch_size")
    data = load_data(data_cfg.name, data_cfg.dir, config.seed, data_cfg.image_size, data_cfg.workers,
                     data_cfg.train_images)
    runtime = resolve_runtime(device, config.runtime.precision, config.runtime.memory_format, data.image_size)
    space = build_space(config, data.num_classes, data.in_channels, data.image_size)
    runtime = runtime.with_threads(config.runtime.threads, space.macs(space.largest()) * data_cfg.batch_size)
    state = build_state(config, space, data.num_batches("train", data_cfg.batch_size), runtime, group, probes)
    run_dir = Path(run_dir)
    writer = (RecordWriter if group.is_main else NullWriter)(run_dir, run_dir.name)
    calibration = (calibration_batches(data, data_cfg.calibration_images, data_cfg.eval_batch_size, device,
                                       runtime) if group.is_main else [])
    score = ArchScorer(state.supernet, data, runtime, calibration, data_cfg.eval_batch_size, data_cfg.eval_images,
                       config.search.bn_evaluation)
    transition = transition_of(config.sharing, space.scheme)
    mover = Mover(state.supernet, transition) if transition is not None else None
    guard = DivergenceGuard(state, run_dir, group, device, data.num_classes, config.search.lr, log)
    search = Search(config, run_dir, data, state, writer, runtime, group, guard, score, log, progress,
                    load_truth(config, space), mover, clock)
    clock.lap("start")
    return search
