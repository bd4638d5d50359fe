"""Planning seeds to a decision (``sharing-lab claims --plan RUNS…``): per undecided claim, the seeds per arm that
would decide it and the recipe command that adds exactly those runs to the existing sweep.

A claim's arms are recipe arms (:func:`sharing_lab.runs.sweeps.arm_of` of their run names). Recipes name the runs
of seed k the same whatever the number of seeds, so ``sharing-lab recipe R --seeds N --arm A …`` keeps the
finished runs of seeds below N and adds the others (resumable, on every executor). The number N is the cheaper of
the two decisions at the observed effect (showing it, or showing equivalence within ±δ), at 80% power and at α/m,
Holm's first step (:class:`sharing_lab.analysis.verdicts.Claim`); where the spread is unknown (fewer than two
seeds, or an arm of equal values) it is a pilot of :data:`MIN_SEEDS` seeds, or twice the seeds there are.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ..analysis.verdicts import MIN_SEEDS, Claim
from ..runs.sweeps import arm_of
from .recipes import MAX_SEEDS, recipes


@dataclass(frozen=True)
class Step:
    """What one claim needs: ``seeds`` per arm (None: nothing to add, or beyond :data:`MAX_SEEDS`), the recipe
    ``command`` that adds them (None where no built-in recipe made the runs) and why (``note``)."""

    claim: str
    verdict: str
    n: int
    seeds: int | None
    arms: tuple[str, ...]
    command: str | None
    note: str


def _seeds(claim: Claim) -> tuple[int | None, str]:
    """Seeds per arm that would decide ``claim``, and how they were chosen."""
    if claim.n < 2 or (claim.seeds_at_effect is None and claim.seeds_to_equivalence is None):
        if claim.value is None:
            return MIN_SEEDS, f"not testable yet: a pilot of {MIN_SEEDS} seeds per arm"
        seeds = MIN_SEEDS if claim.n < MIN_SEEDS else 2 * claim.n
        return seeds, f"the spread between seeds is unknown: {seeds} seeds per arm to measure it"
    options = {"to show the observed effect": claim.seeds_at_effect,
               "to show equivalence within the margin": claim.seeds_to_equivalence}
    why, seeds = min(((why, s) for why, s in options.items() if s is not None), key=lambda item: item[1])
    if seeds > MAX_SEEDS:
        return None, f"more than {MAX_SEEDS} seeds per arm at the observed effect: not decidable by seeds"
    return max(seeds, MIN_SEEDS), f"{seeds} seeds per arm {why} (80% power at Holm's first step)"


def plan(claims: list[Claim], out: str | Path, scale: str = "embedded") -> list[Step]:
    """A :class:`Step` per claim of ``claims``, with recipe commands writing to ``out`` (the sweep's directory)."""
    arm_recipe = {arm_of(job.name): name for name, recipe in recipes(scale).items() for job in recipe.jobs}
    steps = []
    for claim in claims:
        arms = tuple(sorted({arm_of(run) for runs in claim.arms.values() for run in runs}))
        if claim.decided:
            steps.append(Step(claim.id, claim.verdict, claim.n, None, arms, None, "decided"))
            continue
        seeds, note = _seeds(claim)
        command = None
        if seeds is not None and seeds <= claim.n:
            seeds, note = None, f"{note}; the arms have them (the limit is the effect, not the seeds)"
        elif seeds is not None and arms and all(arm in arm_recipe for arm in arms):
            names = sorted({arm_recipe[arm] for arm in arms})
            words = ["sharing-lab", "recipe", *names, "--seeds", str(seeds)]
            words += [word for arm in arms for word in ("--arm", arm)] + ["--out", str(out)]
            if scale != "embedded":
                words += ["--scale", scale]
            command = shlex.join(words)
        elif seeds is not None:
            note = f"{note}; no built-in recipe makes these runs: add seeds up to {seeds - 1} to them by hand"
        steps.append(Step(claim.id, claim.verdict, claim.n, seeds, arms, command, note))
    return steps
