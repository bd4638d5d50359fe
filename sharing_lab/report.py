"""What a search writes down: per-epoch scalars and decision probabilities, evaluations of sampled
architectures, and the final beam search, export and summary (DESIGN §5; paper Section 5.3 for the pick).

Functions of a running :class:`sharing_lab.loop.Search`; only rank 0 records. Evaluated architectures get their
BatchNorm statistics recalibrated on fixed training images (``search.bn_evaluation = "recalibrated"``) or use
batch statistics of the evaluation batches (``"batch"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from . import rundir
from .controller import beam_search
from .evaluate import accuracy, batch_statistics, evaluate_arch
from .export import choose, write_export
from .fileio import atomic_write_json
from .scoring import score_space

if TYPE_CHECKING:
    from .loop import Search


def add_scalars(search: Search, values: dict[str, float]) -> None:
    state = search.state
    search.writer.add("scalars", [{"step": state.step, "epoch": state.epoch, "name": k, "value": float(v)}
                                  for k, v in values.items()])


def record_epoch(search: Search, totals: dict) -> None:
    """The epoch's training loss and accuracy, sampled MACs, learning rate, Φ, controller statistics, steps per
    epoch, and the decision probabilities with each decision's expected width."""
    if not search.group.is_main:
        return
    state = search.state
    steps = max(totals["steps"], 1)
    values = {
        "train_loss": totals["loss"] / max(totals["seen"], 1),
        "train_acc": totals["correct"] / max(totals["seen"], 1),
        "macs_sampled": totals["macs"] / steps,
        "lr": state.optimizer.param_groups[0]["lr"],
        "phi": float(sum(state.supernet.phi_per_layer())),
    }
    if search.in_search_phase():
        values.update(reward=totals["reward"] / steps, baseline=state.reinforce.baseline,
                      entropy=totals["entropy"] / steps)
        if search.schedule is not None and totals.get("tau") is not None:
            # the realised step sizes: the median over layers of each layer's mean τ_l in the epoch, and the targets
            values["tau"] = float((totals["tau"] / totals["moves"]).median())
            position = (state.epoch + 1 - search.config.search.warmup_epochs) / max(
                search.config.search.epochs - search.config.search.warmup_epochs, 1)
            values["phi_target"] = float(search.schedule.targets(position).sum())
        elif search.space.scheme.transition:
            values["tau"] = search.config.sharing.tau
    values["steps_per_epoch"] = state.steps_per_epoch
    add_scalars(search, values)
    rows = probability_rows(search)
    search.writer.add("probs", rows)
    expected: dict[str, float] = {}
    for row in rows:
        key = f"expected_width.{row['layer']}"
        expected[key] = expected.get(key, 0.0) + row["width"] * row["prob"]
    add_scalars(search, expected)


@torch.no_grad()
def probability_rows(search: Search) -> list[dict]:
    """Per decision × candidate probability: the mean softmax over ``prob_samples`` trajectories."""
    state = search.state
    samples = [state.controller.sample(search.flops_left, state.generators["record"])
               for _ in range(search.config.search.prob_samples)]
    rows = []
    for layer, decision in enumerate(search.space.decisions):
        mean = torch.stack([s.probs[layer] for s in samples]).mean(0).cpu()
        for choice, width in enumerate(decision.candidates):
            rows.append({"step": state.step, "epoch": state.epoch, "layer": layer, "choice": choice,
                         "width": width, "prob": float(mean[choice])})
    return rows


def score(search: Search, arch: Sequence[int], split: str = "val") -> float:
    """Accuracy of ``arch`` in the supernet on ``split`` (BN statistics as ``search.bn_evaluation`` says)."""
    cfg = search.config.data
    if search.config.search.bn_evaluation == "batch":
        batches = search.data.batches(split, cfg.eval_batch_size, shuffle=False, drop_last=False,
                                      device=search.device, augment=False)
        with batch_statistics(search.supernet):
            return accuracy(search.supernet, batches, arch, search.runtime, limit=cfg.eval_images)
    return evaluate_arch(search.supernet, arch, search.calibration, search.data, split, cfg.eval_batch_size,
                         search.device, cfg.eval_images, search.runtime)


def arch_row(search: Search, arch: Sequence[int], source: str, acc: float, log_prob: float | None = None,
             **extra) -> dict:
    """One ``archs`` row (DESIGN §5) for architecture ``arch``."""
    if log_prob is None:
        log_prob = search.state.controller.log_prob(arch, search.flops_left)
    cost = search.space.cost(arch)
    return {"epoch": search.state.epoch, "source": source, "widths": ",".join(map(str, search.space.widths_of(arch))),
            "macs": cost.macs, "log_prob": float(log_prob), "acc": float(acc), "params": cost.params, **extra}


def evaluate(search: Search) -> None:
    """Score ``eval_archs`` sampled architectures and the widest on the validation split (rank 0; the others
    wait): uniform samples in warm-up, the controller's in the search phase. On a space with a ground truth,
    every ``gt_every``-th evaluation (and the last) scores the whole space too (:mod:`sharing_lab.scoring`)."""
    search.group.sync_buffers(search.supernet)
    if search.group.is_main:
        scored = _score_space(search) if _space_due(search) else {}
        _score_samples(search, scored)
    search.group.barrier()


def _space_due(search: Search) -> bool:
    if search.truth is None:
        return False
    cfg = search.config.search
    index = (search.state.epoch + 1) // cfg.eval_every  # 1, 2, … for the evaluations at eval_every multiples
    return search.state.epoch + 1 == cfg.epochs or index % cfg.gt_every == 0


def _score_space(search: Search) -> dict[tuple[int, ...], float]:
    """Whole-space scores: the ``space`` rows and the ``gt_*`` scalars; returns the accuracies by arch."""
    state, accuracies = search.state, {}

    def accuracy_of(arch: tuple[int, ...]) -> float:
        accuracies[arch] = score(search, arch)
        return accuracies[arch]

    rows, scalars = score_space(search.space, search.truth, state.controller, search.flops_left, accuracy_of)
    search.writer.add("space", [{"step": state.step, "epoch": state.epoch, **row} for row in rows])
    add_scalars(search, scalars)
    return accuracies


def _score_samples(search: Search, scored: dict[tuple[int, ...], float]) -> None:
    cfg, state = search.config.search, search.state

    def accuracy(arch: tuple[int, ...]) -> float:  # an architecture scored whole-space is not scored again
        return scored[arch] if arch in scored else score(search, arch)

    rows, accs = [], []
    for _ in range(cfg.eval_archs):
        if search.in_search_phase():
            arch = state.controller.sample(search.flops_left, state.generators["eval"], arch_only=True).arch
        else:
            arch = search.space.sample_uniform(state.generators["eval"])
        acc = accuracy(arch)
        accs.append(acc)
        rows.append(arch_row(search, arch, "sample", acc))
    widest = accuracy(search.space.largest())
    search.writer.add("archs", rows)
    add_scalars(search, {"val_acc_mean": sum(accs) / len(accs), "val_acc_max": max(accs),
                         "val_acc_widest": widest})
    phase = "search" if search.in_search_phase() else "warm-up"
    search.log(f"epoch {state.epoch + 1}/{cfg.epochs} ({phase}): val acc mean {sum(accs) / len(accs):.3f} "
               f"max {max(accs):.3f} widest {widest:.3f}, phi {sum(state.supernet.phi_per_layer()):.4g}")


def finish(search: Search) -> dict:
    """Beam search for the top-N, score them, export the chosen one, write ``summary.json`` (rank 0; every
    rank returns the summary)."""
    summary = _finish(search) if search.group.is_main else None
    return search.group.broadcast_object(summary)


def budget_summary(search: Search) -> dict:
    """The search's ratios beside the paper's (:func:`sharing_lab.replay.budget`, without a replay) and where Φ
    ended: the movable layers' Φ against their ordinal start and independent minimum, and the share of the way
    in log Φ."""
    from .phi_schedule import layer_bounds, log_progress
    from .replay import budget

    state = search.state
    ratios = budget(search.config, search.space, state.steps_per_epoch, None)
    start, floor = layer_bounds(state.supernet)
    phi = state.supernet.movable_phi()
    moving = bool(state.supernet.movable_layers())
    ratios.update(phi_start=float(start.sum()), phi_floor=float(floor.sum()), phi_end=phi,
                  progress_end=log_progress(phi, float(start.sum()), float(floor.sum())) if moving else None)
    return ratios


def _finish(search: Search) -> dict:
    cfg, state = search.config.search, search.state
    top = beam_search(state.controller, cfg.beam_top, search.flops_left)
    rows = [arch_row(search, arch, "beam", score(search, arch), log_prob=log_prob, rank=rank,
                     test_acc=score(search, arch, "test")) for rank, (arch, log_prob) in enumerate(top)]
    truth = search.truth
    if truth is not None:
        for row in rows:
            row.update(gt_rank=truth.rank(row["widths"]), gt_acc=truth.accuracy(row["widths"]),
                       gt_regret=truth.regret(row["widths"]))
    search.writer.add("archs", rows)
    chosen = choose(rows, search.target)
    if truth is not None:
        add_scalars(search, {"gt_regret": chosen["gt_regret"], "gt_rank": chosen["gt_rank"]})
    search.writer.flush()
    data_cfg = search.config.data
    export_path = write_export(search.run_dir, search.space.layout, chosen,
                               {"name": data_cfg.name, "dir": data_cfg.dir, "image_size": data_cfg.image_size})
    summary = {
        "run": search.run_dir.name, "epochs": cfg.epochs, "steps": state.step,
        "steps_per_epoch": state.steps_per_epoch,
        "exported": {k: chosen[k] for k in ("widths", "macs", "acc", "test_acc", "log_prob")},
        "macs_range": list(search.space.macs_range()), "flops_target": search.target,
        "final_phi": float(sum(state.supernet.phi_per_layer())), "export_path": str(export_path),
        "processes": search.group.world_size, **search.runtime.describe(),
    }
    summary["budget"] = budget_summary(search)
    if truth is not None:
        summary["groundtruth"] = {"space": truth.space.name, "rank": chosen["gt_rank"], "acc": chosen["gt_acc"],
                                  "regret_points": chosen["gt_regret"], "architectures": len(truth.table),
                                  "oracle": truth.best(1)[0], "oracle_acc": truth.accuracy(truth.best(1)[0])}
    atomic_write_json(search.run_dir / rundir.SUMMARY, summary)
    return summary
