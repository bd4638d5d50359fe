"""One training step of a network on one batch: the search's weight step, retraining's and the benchmarks'."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from .runtime import Runtime


def train_step(model: Callable, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               runtime: Runtime, arch: Sequence[int] | None = None,
               before_backward: Callable[[torch.Tensor], None] | None = None,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (a supernet with ``arch``, or a plain network, or a population), ``loss_fn`` (cross-entropy; a
    population's sum of its members' losses), backward and optimiser step.

    ``before_backward(loss)`` may inspect the loss (e.g. refuse a non-finite one) before any weight changes.
    Returns the detached loss and logits, on the device (nothing is read back).
    """
    with runtime.autocast():
        inputs = runtime.input(x)
        logits = model(inputs, arch) if arch is not None else model(inputs)
        loss = loss_fn(logits, y)
    if before_backward is not None:
        before_backward(loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


@torch.no_grad()
def recompute_bn_statistics(norms: Sequence[torch.nn.modules.batchnorm._BatchNorm],
                            forward: Callable[[torch.Tensor], object], batches: Iterable[torch.Tensor]) -> None:
    """Recompute the running statistics of ``norms`` as exact averages over ``batches`` (momentum None), running
    ``forward`` on each batch; their momentum and train/eval mode are restored after."""
    saved = [(bn.momentum, bn.training) for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for batch in batches:
        forward(batch)
    for bn, (momentum, training) in zip(norms, saved):
        bn.momentum = momentum
        bn.train(training)
