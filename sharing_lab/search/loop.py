"""The channel number search, top to bottom (paper Sections 2.1, 3.4 and 5.1; schedules in the notes).

Warm-up: one uniformly sampled architecture per step trains the meta-weights, P/Q fixed. Search: the
controller samples the architecture of each weight step and is updated by REINFORCE on a held-out batch
(reward acc·(F/F_target)^β above the target); a moving scheme's transforms also take their step
(:mod:`sharing_lab.aps.transition`). Every ``eval_every`` epochs, sampled architectures are scored on the
validation split, the records are flushed and a checkpoint is written. At the end, beam search ranks the top-N
architectures and the chosen one is exported. The test split is only ever used for reporting.

    search = open_search(config, run_dir)       # sharing_lab.search.session (sharing_lab.search.launch makes run_dir)
    run(search)                                 # = for each epoch: train_epoch, record_epoch, probes,
                                                #   evaluate, checkpoint; then finish

On a GPU the inner loop reads nothing back from the device except the controller's reward (one wait per search
step: REINFORCE needs it on the host); the controller runs on the CPU. Several processes (torchrun) split every
batch between them; see :mod:`sharing_lab.compute.distributed`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm import tqdm

from ..aps.transition import phase_position
from ..compute.training import train_step
from .accuracy import batch_statistics
from .checkpointing import checkpoint, resume
from .controller import reward
from .evaluation import evaluate
from .finish import finish
from .recording import EpochTotals, record_epoch
from .session import Search


def train_epoch(search: Search) -> EpochTotals:
    """One pass over the training split: a weight step per batch on this step's architecture and, in the search
    phase, a controller step and the transforms' move; probes at their cadence; the divergence guard around it.
    Returns the epoch's totals."""
    cfg, state, guard, clock = search.config, search.state, search.guard, search.clock
    searching = search.in_search_phase()
    totals = EpochTotals()
    sums = torch.zeros(2, dtype=torch.float64, device=search.device)  # loss × images, correct: read at the end
    batches = search.data.batches("train", cfg.data.batch_size, generator=state.generators["data"],
                                  device=search.device, shard=(search.group.rank, search.group.world_size))
    guard.start_epoch()
    state.model.train()  # evaluation switches to eval mode between epochs only
    for x, y in _one_ahead(batches):
        clock.lap("data")
        try:
            arch, reward_arch, sample = decide(search, searching)
        except RuntimeError:  # torch.multinomial refuses NaN probabilities
            guard.check_controller()
            raise
        clock.lap("controller")
        loss, logits = train_step(state.model, state.optimizer, x, y, search.runtime, arch, guard.check_loss)
        guard.after_step(loss)
        state.scheduler.step()
        sums[0] += loss * y.numel()
        sums[1] += (logits.argmax(1) == y).sum()
        totals.seen += y.numel()
        totals.macs += search.space.macs(arch)
        totals.steps += 1
        clock.lap("weight step")
        if searching:
            correct = reward_forward(search, reward_arch)
            clock.lap("reward forward")
            if search.mover is not None and state.step % cfg.sharing.transition_every == 0:  # before the reward is read
                position = phase_position(state.step + 1, cfg.search.warmup_epochs, cfg.search.epochs,
                                          state.steps_per_epoch)
                totals.add_move(search.mover.step(position))
                clock.lap("transition")
            value, entropy = controller_step(search, reward_arch, sample, correct)
            totals.reward += value
            totals.entropy += entropy
            clock.lap("controller")
        state.step += 1
        if search.group.is_main:
            for probe in state.probes:
                if probe.due(state.step):
                    probe.run(search.probe_view())
                    clock.lap("probes")
    sums = search.group.sum(sums).cpu()
    totals.seen *= search.group.world_size
    totals.loss, totals.correct = float(sums[0]), int(sums[1])
    guard.end_epoch(totals.loss)
    clock.lap("weight step")
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


def _one_ahead(batches):
    """``batches`` with the next batch made (its copies and augmentation issued) before the current one is handed
    out, so a device works on it while the host waits for the reward; the batches and their order are unchanged
    (:meth:`sharing_lab.data.bundle.Dataset.batches` draws all its randomness up front)."""
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


def run(search: Search, stop_requested: Callable[[], bool] = lambda: False) -> dict:
    """Run (or resume) the search to the end, then beam search and export; returns the summary (every rank)."""
    resume(search)
    cfg, state, group, clock = search.config.search, search.state, search.group, search.clock
    clock.lap("checkpoints")
    epochs = tqdm(range(state.epoch, cfg.epochs), initial=state.epoch, total=cfg.epochs, desc="search",
                  unit="epoch", disable=not search.progress)
    for _ in epochs:
        totals = train_epoch(search)
        if group.is_main:
            record_epoch(search.view(), totals, state.optimizer.param_groups[0]["lr"], state.reinforce.baseline)
            clock.lap("records")
            for probe in state.probes:
                probe.end_of_epoch(search.probe_view())
            clock.lap("probes")
        last = state.epoch + 1 == cfg.epochs
        evaluating = search.evaluating()
        if evaluating:
            group.sync_buffers(search.supernet)
            if group.is_main:
                evaluate(search.view())
            group.barrier()
            clock.lap("evaluation")
        state.epoch += 1
        if evaluating:
            checkpoint(search)
            clock.lap("checkpoints")
        if group.any(stop_requested()) and not last:
            checkpoint(search)
            raise KeyboardInterrupt
    return group.broadcast_object(finish(search.view(), search.facts()) if group.is_main else None)
