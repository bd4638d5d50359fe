"""What a search writes down at each epoch's end: the epoch's training scalars, Φ, the controller's statistics, the
transition's realised step sizes, and the decision probabilities with each decision's expected width (DESIGN §5).

The loop sums an epoch into :class:`EpochTotals`; :func:`record_epoch` turns it into rows, reading the search
through its :class:`~sharing_lab.search.view.SearchView` and writing through the view's recorder (rank 0 only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .view import SearchView


@dataclass
class EpochTotals:
    """What one epoch of training sums: images seen, sampled MACs, weight steps, the controller's rewards and
    entropies, a Φ schedule's per-layer step sizes (on the device) and the number of moves; the summed loss
    (loss × images) and correct count are read at the epoch's end."""

    seen: int = 0
    macs: float = 0.0
    steps: int = 0
    reward: float = 0.0
    entropy: float = 0.0
    tau: torch.Tensor | None = None
    moves: int = 0
    loss: float = 0.0
    correct: int = 0

    def add_move(self, tau: torch.Tensor | None) -> None:
        """Count one move of the transforms with its per-layer step sizes (None at a constant rate)."""
        if tau is not None:
            self.tau = tau if self.tau is None else self.tau + tau
            self.moves += 1


def record_epoch(view: SearchView, totals: EpochTotals, lr: float, baseline: float) -> None:
    """The epoch's training loss and accuracy, sampled MACs, learning rate ``lr``, Φ, the controller's reward,
    ``baseline`` and entropy, the transition's step size τ (the constant rate, or the median over layers of each
    layer's mean τ_l under a Φ schedule, with the schedule's target), steps per epoch, and the decision
    probabilities with each decision's expected width."""
    steps = max(totals.steps, 1)
    values = {
        "train_loss": totals.loss / max(totals.seen, 1),
        "train_acc": totals.correct / max(totals.seen, 1),
        "macs_sampled": totals.macs / steps,
        "lr": lr,
        "phi": float(sum(view.supernet.phi_per_layer())),
    }
    if view.searching:
        values.update(reward=totals.reward / steps, baseline=baseline, entropy=totals.entropy / steps)
        mover = view.mover
        if mover is not None and mover.transition.rate is not None:
            values["tau"] = mover.transition.rate
        elif mover is not None and totals.tau is not None:
            values["tau"] = float((totals.tau / totals.moves).median())
            values["phi_target"] = mover.target(view.position())
    values["steps_per_epoch"] = view.steps_per_epoch
    view.recorder.scalars(values)
    rows = probability_rows(view)
    view.recorder.rows("probs", rows)
    expected: dict[str, float] = {}
    for row in rows:
        key = f"expected_width.{row['layer']}"
        expected[key] = expected.get(key, 0.0) + row["width"] * row["prob"]
    view.recorder.scalars(expected)


@torch.no_grad()
def probability_rows(view: SearchView) -> list[dict]:
    """Per decision × candidate probability: the mean softmax over ``prob_samples`` trajectories."""
    samples = [view.controller.sample(view.flops_left, view.record_generator)
               for _ in range(view.settings.prob_samples)]
    rows = []
    for layer, decision in enumerate(view.space.decisions):
        mean = torch.stack([s.probs[layer] for s in samples]).mean(0).cpu()
        for choice, width in enumerate(decision.candidates):
            rows.append({"layer": layer, "choice": choice, "width": width, "prob": float(mean[choice])})
    return rows
