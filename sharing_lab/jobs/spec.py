"""What a recipe is: a named list of jobs, each a search (a name, ``key=value`` overrides over a base
configuration) optionally followed by retraining its top-N from scratch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Job:
    name: str
    overrides: tuple[str, ...]
    retrain_top: int = 0
    config: str | None = None


@dataclass
class Recipe:
    name: str
    figures: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)


def slug(text: str) -> str:
    """``text`` (a value) as part of a job name: no colons, dots as p, minus signs as m."""
    return text.replace(":", "").replace(".", "p").replace("-", "m")
