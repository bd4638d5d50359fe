"""Where a search's time goes: wall time per phase, taken as laps (each lap charges the time since the previous one
to a phase), so the loop marks its pieces in one line each and every second of a run lands in exactly one phase.

Host wall time: on a GPU, work that a phase queues is charged to the phase that waits for it (the controller
step, which reads the reward), unless the clock synchronises the device at every lap (``sync=True``, what
``sharing-lab bench --phases`` does; a search does not, it would stall the queue).
"""

from __future__ import annotations

import time
from collections import Counter

import torch

# The phases in the order a search meets them (the breakdown is printed in this order).
PHASES = ("start", "data", "controller", "weight step", "reward forward", "transition", "probes", "records",
          "evaluation", "whole-space scoring", "checkpoints", "finish")


class PhaseClock:
    """Seconds per phase since :meth:`reset`, and how many laps each phase had."""

    def __init__(self, device: torch.device | None = None, sync: bool = False) -> None:
        self.sync = sync and device is not None and device.type == "cuda"
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.laps: Counter[str] = Counter()
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Charge the time since the previous lap to ``phase``."""
        if self.sync:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self.laps[phase] += 1
        self._last = now

    def breakdown(self) -> dict[str, dict[str, float]]:
        """``{phase: {"s": seconds, "share": of the total, "laps": count}}`` in :data:`PHASES` order (phases of
        one's own after them)."""
        total = sum(self.seconds.values()) or 1.0
        order = [p for p in PHASES if p in self.seconds] + sorted(set(self.seconds) - set(PHASES))
        return {phase: {"s": round(self.seconds[phase], 4), "share": round(self.seconds[phase] / total, 4),
                        "laps": self.laps[phase]} for phase in order}
