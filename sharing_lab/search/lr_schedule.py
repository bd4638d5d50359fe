"""The weight learning-rate schedule of a search (``search.lr_schedule``): cosine to 0 over the whole run, or the
paper's steps of ×0.1 at ``search.lr_milestones`` (Section 5.1)."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import Config


def lr_factor(config: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """The weight learning-rate schedule as a factor of ``search.lr`` per step: cosine to 0, or ×0.1 steps."""
    cfg = config.search

    def factor(step: int) -> float:
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step / (cfg.epochs * steps_per_epoch), 1.0)))
        epoch = step // steps_per_epoch
        return 0.1 ** sum(epoch >= m for m in cfg.lr_milestones)

    return factor
