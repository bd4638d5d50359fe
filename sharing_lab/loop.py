"""The channel number search, top to bottom (paper Sections 2.1, 3.4 and 5.1; schedules in the notes).

Warm-up: one uniformly sampled architecture per step trains the meta-weights, P/Q fixed. Search: the
controller samples the architecture of each weight step and is updated by REINFORCE on a held-out batch
(reward acc·(F/F_target)^β above the target); a moving scheme (transitionary) also takes its step on P/Q.
Every ``eval_every`` epochs, sampled architectures are scored on the validation split, the records are flushed
and a checkpoint is written. At the end, beam search ranks the top-N architectures and the chosen one is
exported. The test split is only ever used for reporting.

    search = open_search(config, run_dir)       # data, space, state, writer (sharing_lab.launch makes run_dir)
    run(search)                                 # = for each epoch: train_epoch, record_epoch, probes,
                                                #   evaluate, checkpoint; then finish

On a GPU the inner loop reads nothing back from the device except the controller's reward (one wait per search
step: REINFORCE needs it on the host); the controller runs on the CPU. Several processes (torchrun) split every
batch between them; see :mod:`sharing_lab.distributed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import rundir
from .config import RESUME_CHANGEABLE, RESUME_FREE, Config, check, differences, flat, to_dict
from .controller import reward
from .data import Dataset, load_data
from .distributed import SINGLE, Group
from .errors import InputError
from .evaluate import batch_statistics, calibration_batches
from .phi_schedule import MAX_MOVE, PhiSchedule
from .probes import Probe, ProbeView
from .records import NullWriter, RecordWriter
from .report import evaluate, finish, record_epoch
from .runtime import Runtime, resolve_device, resolve_runtime
from .schemes.base import SharingScheme
from .scoring import Truth, load_truth
from .state import SearchState, build_space, build_state
from .training import train_step


class TrainingDiverged(InputError):
    """Training diverged (loss, gradient norm or BN statistics); the last good state is the checkpoint."""


# A step's loss beyond LOSS_LIMIT × ln(classes) (≈ 2300 for 10 classes, 6900 for 1000; chance is 1 × ln(classes))
# counts as exploded: a finite loss that large only comes from runaway weights.
LOSS_LIMIT = 1e3


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
    calibration: list[torch.Tensor]
    log: Callable[[str], None] = print
    progress: bool = False
    truth: Truth | None = None  # the space's ground truth, when it has one (sharing_lab.ground_truth)
    schedule: PhiSchedule | None = None  # the Φ schedule of a moving scheme (sharing.phi_schedule), or a constant τ

    @property
    def space(self):
        return self.state.space

    @property
    def supernet(self):
        return self.state.supernet

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def target(self) -> float | None:
        return self.config.search.flops_target

    def flops_left(self, prefix: Sequence[int]) -> float:
        """The controller's FLOPs input for ``prefix`` (:meth:`sharing_lab.space.SearchSpace.flops_left`)."""
        return self.space.flops_left(prefix, self.target)

    def in_search_phase(self) -> bool:
        return self.state.epoch >= self.config.search.warmup_epochs


def open_search(config: Config, run_dir: str | Path, log: Callable[[str], None] = print, progress: bool = False,
                probes: list[Probe] | None = None, group: Group = SINGLE) -> Search:
    """Load the data and build the search of ``config`` writing into ``run_dir`` (which must exist for rank 0).

    ``group`` places this process in a multi-process search (its device is the group's); only rank 0 logs,
    records and checkpoints.
    """
    check(config)
    if not group.is_main:
        log, progress = (lambda message: None), False
    device = group.device if group.active else resolve_device(config.device)
    data_cfg = config.data
    group.local_size(data_cfg.batch_size, "data.batch_size")  # refuses a batch the ranks cannot split evenly
    group.local_size(data_cfg.reward_batch_size, "data.reward_batch_size")
    data = load_data(data_cfg.name, data_cfg.dir, config.seed, data_cfg.image_size, data_cfg.workers)
    runtime = resolve_runtime(device, config.runtime.precision, config.runtime.memory_format, data.image_size)
    space = build_space(config, data.num_classes, data.in_channels, data.image_size)
    state = build_state(config, space, data.num_batches("train", data_cfg.batch_size), runtime, group, probes)
    run_dir = Path(run_dir)
    writer = (RecordWriter if group.is_main else NullWriter)(run_dir, run_dir.name)
    calibration = (calibration_batches(data, data_cfg.calibration_images, data_cfg.eval_batch_size, device,
                                       runtime) if group.is_main else [])
    sharing = config.sharing
    # the schedule steers Eq. 5; a scheme of one's own that overrides move() keeps its move
    steers = space.scheme.transition and type(space.scheme).move is SharingScheme.move
    schedule = (PhiSchedule(state.supernet, sharing.phi_schedule, sharing.phi_fraction, sharing.phi_at)
                if sharing.phi_schedule is not None and steers else None)
    return Search(config, run_dir, data, state, writer, runtime, group, calibration, log, progress,
                  load_truth(config, space), schedule)


# --- one epoch of training ----------------------------------------------------------------------------------
def train_epoch(search: Search) -> dict[str, float]:
    """One pass over the training split: a weight step per batch on this step's architecture and, in the search
    phase, a controller step and the scheme's move of P/Q; probes at their cadence. Returns the epoch's sums."""
    cfg, state, group = search.config, search.state, search.group
    search_phase = search.in_search_phase()
    sums = torch.zeros(2, dtype=torch.float64, device=search.device)  # loss × images, correct: read at the end
    totals = {"seen": 0, "macs": 0.0, "reward": 0.0, "entropy": 0.0, "steps": 0, "tau": None, "moves": 0}
    check_every_step = search.device.type == "cpu" and not group.active  # free there; a GPU would have to wait
    batches = search.data.batches("train", cfg.data.batch_size, generator=state.generators["data"],
                                  device=search.device, shard=(group.rank, group.world_size))
    # Divergence: a non-finite or exploded loss, a non-finite global gradient norm (counted on the device, read
    # at the epoch's end; checked at every step on a single CPU), non-finite BN running statistics (epoch end).
    limit = LOSS_LIMIT * max(math.log(search.space.layout.num_classes), 1.0)
    health = torch.zeros(2, dtype=torch.float64, device=search.device)  # steps with a bad loss, a bad grad norm
    parameters = [p for param_group in state.optimizer.param_groups for p in param_group["params"]]
    total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6

    def refuse_non_finite(loss: torch.Tensor) -> None:
        if check_every_step and not (torch.isfinite(loss) and loss <= limit):
            diverged(search, f"the loss is {float(loss.detach()):.4g} at epoch {state.epoch}, step {state.step} "
                             f"(limit {limit:.4g})")

    def gradient_norm() -> torch.Tensor:
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return torch.zeros((), device=search.device)
        if total_norm is not None:
            return total_norm(grads)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))

    state.model.train()  # evaluation switches to eval mode between epochs only
    for x, y in _one_ahead(batches):
        try:
            arch, reward_arch, sample = decide(search, search_phase)
        except RuntimeError:  # torch.multinomial refuses NaN probabilities: the controller diverged
            if all(torch.isfinite(p).all() for p in state.controller.parameters()):
                raise
            diverged(search, f"the controller's weights are not finite at epoch {state.epoch}, step {state.step}")
        loss, logits = train_step(state.model, state.optimizer, x, y, search.runtime, arch, refuse_non_finite)
        norm = gradient_norm()
        health[0] += (~torch.isfinite(loss) | (loss > limit)).to(health.dtype)
        health[1] += (~torch.isfinite(norm)).to(health.dtype)
        if check_every_step and not torch.isfinite(norm):
            diverged(search, f"the gradients' global norm is {float(norm)} at epoch {state.epoch}, step {state.step}")
        state.scheduler.step()
        sums[0] += loss * y.numel()
        sums[1] += (logits.argmax(1) == y).sum()
        totals["seen"] += y.numel()
        totals["macs"] += search.space.macs(arch)
        totals["steps"] += 1
        if search_phase:
            correct = reward_forward(search, reward_arch)
            if state.step % cfg.sharing.transition_every == 0:  # issued before the reward is read (same order)
                transition(search, totals)
            value, entropy = controller_step(search, reward_arch, sample, correct)
            totals["reward"] += value
            totals["entropy"] += entropy
        state.step += 1
        if group.is_main:
            for probe in state.probes:
                if probe.due(state.step):
                    probe.run(probe_view(search))
    sums = group.sum(sums).cpu()
    totals["seen"] *= group.world_size
    totals["loss"], totals["correct"] = float(sums[0]), int(sums[1])
    bad_loss, bad_norm = (int(v) for v in group.sum(health).cpu())
    if bad_norm:  # first: a non-finite gradient makes every later loss NaN
        diverged(search, f"the gradients' global norm was not finite at {bad_norm} steps of epoch {state.epoch}")
    if not math.isfinite(totals["loss"]):
        diverged(search, f"the training loss is {totals['loss']} in epoch {state.epoch}")
    if bad_loss:
        diverged(search, f"the loss was non-finite or above {limit:.4g} at {bad_loss} steps of epoch {state.epoch}")
    statistics = [b for m in state.supernet.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                  for b in (m.running_mean, m.running_var) if b is not None]
    if statistics:
        flags = torch.stack([~torch.isfinite(b).all() for b in statistics]).sum().reshape(1).double()
        broken = int(group.sum(flags).cpu()[0])
        if broken:
            diverged(search, f"{broken} BatchNorm running statistics are not finite after epoch {state.epoch}")
    return totals


def decide(search: Search, search_phase: bool) -> tuple[tuple[int, ...], tuple[int, ...], object]:
    """This step's architecture, and in the search phase the controller's sample for the reward (rank 0
    decides both and broadcasts them). Both are drawn before the weight step; the controller does not
    change in between, so the draws are those of sampling the second one after the step."""
    state = search.state
    count, sample, decided = search.space.num_decisions, None, None
    if search.group.is_main:
        generator = state.generators["sample"]
        if search_phase:  # one batched pass; the draws of two sample() calls in a row
            first, sample = state.controller.sample_many(search.flops_left, generator, (True, False))
            decided = first.arch + sample.arch
        else:
            decided = search.space.sample_uniform(generator)
    decided = search.group.broadcast_ints(decided, 2 * count if search_phase else count)
    return decided[:count], decided[count:], sample


def transition(search: Search, totals: dict) -> None:
    """The scheme's move of P/Q for this step: Eq. 5 at the constant τ, or towards the Φ schedule's targets after
    this step; a schedule's per-layer step sizes are summed into ``totals["tau"]`` (on the device)."""
    state, cfg = search.state, search.config
    if search.schedule is None:
        state.supernet.transition(cfg.sharing.tau)
        return
    warmup = cfg.search.warmup_epochs * state.steps_per_epoch
    length = max((cfg.search.epochs - cfg.search.warmup_epochs) * state.steps_per_epoch, 1)
    targets = search.schedule.targets((state.step + 1 - warmup) / length)
    _, tau = state.supernet.track_phi(targets, MAX_MOVE)
    totals["tau"] = tau if totals["tau"] is None else totals["tau"] + tau
    totals["moves"] += 1


def _one_ahead(batches):
    """``batches`` with the next batch made (its copies and augmentation issued) before the current one is handed
    out, so a device works on it while the host waits for the reward; the batches and their order are unchanged
    (:meth:`sharing_lab.data.Dataset.batches` draws all its randomness up front)."""
    iterator = iter(batches)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current
        current = following


def reward_forward(search: Search, arch: tuple[int, ...]) -> torch.Tensor:
    """This rank's count of correct predictions of ``arch`` on a held-out batch (its share of the reward batch), a
    0-d tensor on the device, not read back (:func:`controller_step` reads it)."""
    state, group = search.state, search.group
    indices = torch.randint(search.data.split_size("val"), (search.config.data.reward_batch_size,),
                            generator=state.generators["reward"])
    x, y = search.data.batch("val", group.shard(indices), device=search.device)
    with torch.no_grad(), batch_statistics(state.supernet), search.runtime.autocast():
        return (state.supernet(search.runtime.input(x), arch).argmax(1) == y).sum()


def controller_step(search: Search, arch: tuple[int, ...], sample,
                    correct: torch.Tensor | None = None) -> tuple[float, float]:
    """Reward acc·(F/F_target)^β of ``arch`` from its correct count on the held-out batch (``correct`` from
    :func:`reward_forward`, made here when None; summed over the ranks) and, on rank 0, the REINFORCE update.
    Returns (reward, entropy of the sample) on rank 0, zeros elsewhere."""
    state, group = search.state, search.group
    size = search.config.data.reward_batch_size
    if correct is None:
        correct = reward_forward(search, arch)
    acc = float(group.sum(correct)) / size  # the step's one wait for the device
    if not group.is_main:
        return 0.0, 0.0
    value = reward(acc, search.space.macs(arch), search.target, search.config.search.reward_beta)
    state.reinforce.update(sample, value)
    return value, float(sample.entropy.detach())


def probe_view(search: Search) -> ProbeView:
    """What a probe sees now: the space, the supernet, the first training images, the writer, step, epoch."""
    data, device, state, cfg = search.data, search.device, search.state, search.config.search

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return data.batch("train", torch.arange(min(n, data.split_size("train"))), device=device)

    evaluating = (state.epoch + 1) % cfg.eval_every == 0 or state.epoch + 1 == cfg.epochs
    return ProbeView(search.space, state.supernet, batch, search.writer, state.step, state.epoch, evaluating)


def diverged(search: Search, message: str) -> None:
    """Stop a diverged search: mark the run as diverged (``diverged.json``, so a resume may change
    ``config.RESUME_CHANGEABLE``) and raise :class:`TrainingDiverged` with the command that resumes it at a lower
    learning rate. The rows of the unfinished epoch are dropped and the last checkpoint (an epoch boundary, or the
    initial state; never a state with non-finite values) is the last good state: the weights are already broken."""
    try:
        saved = rundir.load_checkpoint(search.run_dir, search.log)
    except InputError:
        saved = None
    epoch = saved["epoch"] if saved is not None else 0
    state, lr = search.state, search.config.search.lr
    if search.group.is_main:
        rundir.mark_diverged(search.run_dir, {"message": message, "epoch": state.epoch, "step": state.step,
                                              "resume_epoch": epoch})
    raise TrainingDiverged(
        f"training diverged: {message}; the last good state (epoch {epoch}) is the checkpoint in {search.run_dir}; "
        f"resume it with a lower learning rate: sharing-lab run-search --resume {search.run_dir} "
        f"--set search.lr={lr / 10:g} (search.controller_lr and sharing.tau may be changed the same way)")


# --- checkpoints and the whole run --------------------------------------------------------------------------
def checkpoint(search: Search) -> None:
    """Verify the state (every rank: no NaN or inf anywhere, else the search diverged and the previous checkpoint
    stays the last good one), flush the records and write the checkpoint (rank 0) that resuming restarts from."""
    bad = rundir.non_finite(search.state.state_dict())
    if search.group.any(bool(bad)):
        diverged(search, f"non-finite values in {', '.join(bad[:3]) or 'another rank'} at the end of epoch "
                         f"{search.state.epoch - 1}")
    search.writer.flush()
    search.state.next_part = search.writer.next_part
    if search.group.is_main:
        # the configuration rides along (plain values): a checkpoint that no longer fits config.json can say where
        rundir.save_checkpoint(search.run_dir, {**search.state.state_dict(), "config": to_dict(search.config)})


def resume(search: Search) -> bool:
    """Load the run's checkpoint if it has one and drop the records written after it; True if resumed.

    Never deletes what it cannot replace: a run with record parts but no checkpoint, or whose checkpoints are all
    unreadable, is refused (nothing touched). The rates of ``config.RESUME_CHANGEABLE`` come from the
    configuration (a diverged run's resume may change them); a change is recorded in ``config.json``."""
    state, cfg = search.state, search.config
    saved = rundir.restore(state, search.run_dir, cfg, search.log)
    if saved is None and rundir.has_records(search.run_dir):
        raise InputError(f"run {search.run_dir} has records but no checkpoint to resume them from; nothing was "
                         "changed (start a new run instead)")
    if saved is not None:
        search.writer.next_part = state.next_part
        groups, scheduler = state.optimizer.param_groups, state.scheduler
        if any(g.get("initial_lr") != cfg.search.lr for g in groups):  # only on a change: exact resumes stay exact
            scheduler.base_lrs = [cfg.search.lr for _ in groups]
            for param_group, factor in zip(groups, scheduler.lr_lambdas):
                param_group["initial_lr"], param_group["lr"] = cfg.search.lr, cfg.search.lr * factor(
                    scheduler.last_epoch)
            scheduler._last_lr = [g["lr"] for g in groups]
        for param_group in state.reinforce.optimizer.param_groups:
            if param_group["lr"] != cfg.search.controller_lr:
                param_group["lr"] = cfg.search.controller_lr
        previous = rundir.read_config(search.run_dir)[0] if (search.run_dir / rundir.CONFIG).is_file() else cfg
        changed = differences(previous, cfg)  # logging.* (RESUME_FREE) may change on any resume
        training = [key for key in changed if key.partition(".")[0] not in RESUME_FREE]
        if changed and set(training) <= set(RESUME_CHANGEABLE) and search.group.is_main:
            old, new = flat(previous), flat(cfg)
            rundir.record_resume(search.run_dir, cfg, {k: (old[k], new[k]) for k in changed}, state.epoch)
        search.log(f"resuming {search.run_dir} at epoch {state.epoch + 1}")
    search.writer.truncate()
    if saved is None and search.group.is_main:
        # the initial state: a last good state
        rundir.save_checkpoint(search.run_dir, {**state.state_dict(), "config": to_dict(cfg)})
    search.group.barrier()
    return saved is not None


def run(search: Search, stop_requested: Callable[[], bool] = lambda: False) -> dict:
    """Run (or resume) the search to the end, then beam search and export; returns the summary."""
    resume(search)
    cfg, state = search.config.search, search.state
    epochs = tqdm(range(state.epoch, cfg.epochs), initial=state.epoch, total=cfg.epochs, desc="search",
                  unit="epoch", disable=not search.progress)
    for _ in epochs:
        totals = train_epoch(search)
        record_epoch(search, totals)
        if search.group.is_main:
            for probe in state.probes:
                probe.end_of_epoch(probe_view(search))
        last = state.epoch + 1 == cfg.epochs
        evaluating = (state.epoch + 1) % cfg.eval_every == 0 or last
        if evaluating:
            evaluate(search)
        state.epoch += 1
        if evaluating:
            checkpoint(search)
        if search.group.any(stop_requested()) and not last:
            checkpoint(search)
            raise KeyboardInterrupt
    return finish(search)
