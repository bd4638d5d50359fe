"""Figures 3–8 of the paper, the Theorem 3.1 checks and ranking quality, drawn from run records (DESIGN §6).

``FIGURES[name](runset)`` returns a :class:`matplotlib.figure.Figure` or raises :class:`MissingRuns` naming
the runs it lacks. :func:`plot` writes one figure as PNG and PDF; :func:`plot_all` writes every figure the runs
can feed and says why the others were skipped.

    from . import RunSet, FIGURES
    runs = RunSet.from_paths(["runs/"])
    runs.meta                    # one row per run: scheme, tau, flops_target, seed, ...
    fig = FIGURES["fig4"](runs)  # a Figure; display it in a notebook
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from matplotlib.figure import Figure

from . import fig3, fig4, fig5, fig6, fig7, fig8, gt, rank, theorem
from .runs import MissingRuns, Run, RunSet, find_run_dirs
from .style import save

FIGURES: dict[str, Callable[[RunSet], Figure]] = {
    "fig3": fig3.figure,
    "fig4": fig4.figure,
    "fig5": fig5.figure,
    "fig6": fig6.figure,
    "fig7": fig7.figure,
    "fig8": fig8.figure,
    "theorem": theorem.figure,
    "rank": rank.figure,
    "gt": gt.figure,
}


def _runset(paths: Iterable[str | Path] | RunSet) -> RunSet:
    return paths if isinstance(paths, RunSet) else RunSet.from_paths(paths)


def _draw(name: str, runset: RunSet, out_dir: str | Path) -> list[Path]:
    if name not in FIGURES:
        raise MissingRuns(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    figure = FIGURES[name](runset)
    return save(figure, out_dir, name)


def plot(name: str, paths: Iterable[str | Path] | RunSet, out_dir: str | Path) -> list[Path]:
    """Draw figure ``name`` from the runs at or under ``paths`` into ``<out_dir>/<name>.png`` and ``.pdf``."""
    return _draw(name, _runset(paths), out_dir)


def plot_all(paths: Iterable[str | Path] | RunSet, out_dir: str | Path) -> tuple[list[Path], dict[str, str]]:
    """Every figure the runs can feed: (files written, {figure: why it was skipped})."""
    runset = _runset(paths)
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for name in FIGURES:
        try:
            written.extend(_draw(name, runset, out_dir))
        except MissingRuns as error:
            skipped[name] = str(error)
    return written, skipped


__all__ = ["FIGURES", "MissingRuns", "Run", "RunSet", "find_run_dirs", "plot", "plot_all"]
