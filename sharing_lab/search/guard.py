"""The divergence guard of a search: one object the training loop calls, which stops a diverged search in one line.

A search diverges when a step's loss is non-finite or exploded, the global gradient norm is non-finite, a
BatchNorm running statistic is non-finite, or the controller's weights are. On a single CPU process every step
is checked as it happens (free there); elsewhere (a GPU would have to wait) the counts stay on the device and are
read at the epoch's end. A divergence marks the run (``diverged.json``, so a resume may change the rates of
:data:`sharing_lab.config.RESUME_CHANGEABLE`) and raises :class:`TrainingDiverged` naming the command that
resumes it; the last checkpoint (an epoch boundary, or the initial state) is the last good state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from ..compute.distributed import Group
from ..errors import InputError
from ..runs import rundir
from ..runs.checkpoints import load_checkpoint
from .state import SearchState


class TrainingDiverged(InputError):
    """Training diverged (loss, gradient norm or BN statistics); the last good state is the checkpoint."""


# A step's loss beyond LOSS_LIMIT × ln(classes) (≈ 2300 for 10 classes, 6900 for 1000; chance is 1 × ln(classes))
# counts as exploded: a finite loss that large only comes from runaway weights.
LOSS_LIMIT = 1e3


class DivergenceGuard:
    """Watches the training of ``state`` (its position, weights, controller and BatchNorms) for divergence."""

    def __init__(self, state: SearchState, run_dir: Path, group: Group, device: torch.device, num_classes: int,
                 lr: float, log: Callable[[str], None]) -> None:
        self.state, self.run_dir, self.group, self.lr, self.log = state, Path(run_dir), group, lr, log
        self.device = device
        self.every_step = False
        self.num_classes = num_classes
        self.limit = math.inf
        self.health = torch.zeros(2, dtype=torch.float64, device=device)  # steps with a bad loss, a bad grad norm
        self._total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6
        self._parameters: list[torch.Tensor] = []

    def start_epoch(self) -> None:
        self.health.zero_()
        self.every_step = self.device.type == "cpu" and not self.group.active
        self.limit = LOSS_LIMIT * max(math.log(self.num_classes), 1.0)
        self._parameters = [p for group in self.state.optimizer.param_groups for p in group["params"]]

    def check_loss(self, loss: torch.Tensor) -> None:
        """Before the backward pass (:func:`sharing_lab.compute.training.train_step`): refuse a non-finite or
        exploded loss at once where every step is checked."""
        if self.every_step and not (torch.isfinite(loss) and loss <= self.limit):
            self.diverged(f"the loss is {float(loss.detach()):.4g} at epoch {self.state.epoch}, step "
                          f"{self.state.step} (limit {self.limit:.4g})")

    def after_step(self, loss: torch.Tensor) -> None:
        """After the weight step: count a bad loss and a non-finite global gradient norm (refused at once where
        every step is checked)."""
        norm = self._gradient_norm()
        self.health[0] += (~torch.isfinite(loss) | (loss > self.limit)).to(self.health.dtype)
        self.health[1] += (~torch.isfinite(norm)).to(self.health.dtype)
        if self.every_step and not torch.isfinite(norm):
            self.diverged(f"the gradients' global norm is {float(norm)} at epoch {self.state.epoch}, step "
                          f"{self.state.step}")

    def check_controller(self) -> None:
        """After a failed draw (torch.multinomial refuses NaN probabilities): the controller diverged when its
        weights are not finite; otherwise the caller re-raises the error."""
        if not all(torch.isfinite(p).all() for p in self.state.controller.parameters()):
            rate = self.state.reinforce.optimizer.param_groups[0]["lr"]
            self.diverged(f"the controller's weights are not finite at epoch {self.state.epoch}, step "
                          f"{self.state.step}", ("search.controller_lr", rate))

    def end_epoch(self, loss_sum: float) -> None:
        """At the epoch's end (every rank): the counted steps, the epoch's summed loss and the BN statistics."""
        epoch = self.state.epoch
        bad_loss, bad_norm = (int(v) for v in self.group.sum(self.health).cpu())
        if bad_norm:  # first: a non-finite gradient makes every later loss NaN
            self.diverged(f"the gradients' global norm was not finite at {bad_norm} steps of epoch {epoch}")
        if not math.isfinite(loss_sum):
            self.diverged(f"the training loss is {loss_sum} in epoch {epoch}")
        if bad_loss:
            self.diverged(f"the loss was non-finite or above {self.limit:.4g} at {bad_loss} steps of epoch {epoch}")
        statistics = [b for m in self.state.supernet.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                      for b in (m.running_mean, m.running_var) if b is not None]
        if statistics:
            flags = torch.stack([~torch.isfinite(b).all() for b in statistics]).sum().reshape(1).double()
            broken = int(self.group.sum(flags).cpu()[0])
            if broken:
                self.diverged(f"{broken} BatchNorm running statistics are not finite after epoch {epoch}")

    def diverged(self, message: str, rate: tuple[str, float] | None = None) -> None:
        """Stop the search: mark the run as diverged and raise :class:`TrainingDiverged` with the command that
        resumes it at a lower learning rate (``rate``: the key to lower and its value; default the weights'
        search.lr). The rows of the unfinished epoch are dropped."""
        key, value = rate or ("search.lr", self.lr)
        others = ", ".join(k for k in ("search.lr", "search.controller_lr") if k != key)
        try:
            saved = load_checkpoint(self.run_dir, self.log)
        except InputError:
            saved = None
        epoch = saved["epoch"] if saved is not None else 0
        if self.group.is_main:
            rundir.mark_diverged(self.run_dir, {"message": message, "epoch": self.state.epoch,
                                                "step": self.state.step, "resume_epoch": epoch})
        raise TrainingDiverged(
            f"training diverged: {message}; the last good state (epoch {epoch}) is the checkpoint in {self.run_dir}; "
            f"resume it with a lower learning rate: sharing-lab run-search --resume {self.run_dir} "
            f"--set {key}={value / 10:g} ({others}, and sharing.transition when it is a constant rate, may be "
            "changed the same way)")

    def _gradient_norm(self) -> torch.Tensor:
        grads = [p.grad for p in self._parameters if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        if self._total_norm is not None:
            return self._total_norm(grads)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
