"""The evaluations of a search (every ``eval_every`` epochs): sampled architectures scored on the validation split
(uniform samples in warm-up, the controller's in the search phase) and the widest one; on a space with a ground
truth, every ``gt_every``-th evaluation (and the last) scores the whole space too (:mod:`sharing_lab.truth.scoring`;
a space of more than ``gt_archs`` architectures on a fixed sample).

Each evaluated architecture gets its BatchNorm statistics recalibrated on fixed training images
(``search.bn_evaluation = "recalibrated"``) or uses batch statistics (``"batch"``): :class:`~sharing_lab.search.
accuracy.ArchScorer`. Functions of a :class:`~sharing_lab.search.view.SearchView`; rank 0 only.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..truth.scoring import score_space, scored_architectures
from .controller import exact_log_probs
from .view import SearchView


def arch_row(view: SearchView, arch: Sequence[int], source: str, acc: float, log_prob: float | None = None,
             **extra) -> dict:
    """One ``archs`` row (DESIGN §5) for architecture ``arch``, without its epoch (the recorder adds it)."""
    if log_prob is None:
        log_prob = view.controller.log_prob(arch, view.flops_left)
    cost = view.space.cost(arch)
    return {"source": source, "widths": ",".join(map(str, view.space.widths_of(arch))), "macs": cost.macs,
            "log_prob": float(log_prob), "acc": float(acc), "params": cost.params, **extra}


def evaluate(view: SearchView) -> None:
    """Score ``eval_archs`` sampled architectures and the widest, and the whole space when it is due."""
    scored = {}
    if _space_due(view):
        view.clock.lap("evaluation")
        scored = _score_space(view)
        view.clock.lap("whole-space scoring")
    _score_samples(view, scored)


def _space_due(view: SearchView) -> bool:
    if view.truth is None:
        return False
    settings, epoch = view.settings, view.recorder.epoch
    index = (epoch + 1) // settings.eval_every  # 1, 2, … for the evaluations at eval_every multiples
    return epoch + 1 == settings.epochs or index % settings.gt_every == 0


def _score_space(view: SearchView) -> dict[tuple[int, ...], float]:
    """Whole-space scores: the ``space`` rows and the ``gt_*`` scalars; returns the accuracies by arch."""
    archs = scored_architectures(view.space, view.truth, view.settings.gt_archs)
    accuracies = dict(zip(archs, view.score.many(archs)))
    log_probs = exact_log_probs(view.controller, view.flops_left)
    rows, scalars = score_space(view.space, view.truth, log_probs, accuracies.__getitem__, archs)
    view.recorder.rows("space", rows)
    view.recorder.scalars(scalars)
    return accuracies


def _score_samples(view: SearchView, scored: dict[tuple[int, ...], float]) -> None:
    settings = view.settings
    archs = []
    for _ in range(settings.eval_archs):
        if view.searching:
            archs.append(view.controller.sample(view.flops_left, view.eval_generator, arch_only=True).arch)
        else:
            archs.append(view.space.sample_uniform(view.eval_generator))
    widest = view.space.largest()
    todo = list(dict.fromkeys(arch for arch in [*archs, widest] if arch not in scored))  # each scored once
    scored = {**scored, **dict(zip(todo, view.score.many(todo)))}
    accs = [scored[arch] for arch in archs]
    rows = [arch_row(view, arch, "sample", acc) for arch, acc in zip(archs, accs)]
    widest = scored[widest]
    view.recorder.rows("archs", rows, step=False)
    view.recorder.scalars({"val_acc_mean": sum(accs) / len(accs), "val_acc_max": max(accs),
                           "val_acc_widest": widest})
    phase = "search" if view.searching else "warm-up"
    view.log(f"epoch {view.recorder.epoch + 1}/{settings.epochs} ({phase}): val acc mean {sum(accs) / len(accs):.3f} "
             f"max {max(accs):.3f} widest {widest:.3f}, phi {sum(view.supernet.phi_per_layer()):.4g}")
