"""A job of a recipe: one search (name + ``key=value`` overrides over a base configuration, run as
:func:`run_search` runs it) optionally followed by retraining its top-N from scratch, in the process that
:mod:`sharing_lab.jobs.executors` gives it. A job is idempotent: a finished search is not run again and a stopped
one is resumed, so a recipe is resumed by submitting it again.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..analysis.retrain import retrain_top
from ..compute.runtime import torch_threads
from ..config import Config
from ..runs import rundir
from ..search.launch import run_request
from ..search.probes.base import Probe
from ..search.request import Request
from .spec import Job

RETRAINED = "retrain.done"  # the mark of a job whose retraining finished


def run_search(config: Config | str | Path | None = None, out: str | Path = "runs", name: str | None = None,
               overrides: tuple[str, ...] | list[str] = (), resume: str | Path | None = None,
               log: Callable[[str], None] = print, progress: bool = False,
               probes: list[Probe] | None = None) -> Path:
    """Run one search as ``sharing-lab run-search`` does (one process), draw its summary figure
    (``RUN/summary.png``) and return its run directory.

    ``config``: a :class:`~sharing_lab.config.Config`, a TOML file or preset name, or None for the embedded
    default; ``overrides`` are ``key=value`` strings as for ``--set``; ``resume`` continues a stopped run.
    """
    request = Request(config if isinstance(config, Config) or config is None else str(config), tuple(overrides),
                      str(out), name, None if resume is None else str(resume))
    run_dir = run_request(request, log=log, progress=progress, probes=probes)
    from ..plots.summary import write_or_log  # matplotlib and seaborn: 0.7 s to import, paid by runs that draw

    path = write_or_log(run_dir, log)
    if path is not None:
        log(f"summary figure: {path}")
    return run_dir


def job_done(job: Job, out: Path) -> bool:
    """Whether ``job`` has nothing left to do: its search finished (``summary.json``) and its retraining too."""
    run_dir = out / job.name
    return (run_dir / rundir.SUMMARY).exists() and (not job.retrain_top or (run_dir / RETRAINED).exists())


def run_job(job: Job, out: Path, extra: list[str], threads: int) -> tuple[str, int]:
    """Run one job's search (resuming a stopped one, skipping a finished one) and its retraining, in this
    process with ``threads`` torch threads, logging to ``<out>/<name>.log``; returns (name, 0) or (name, 1) with the
    error in the log. A resume repeats none of the overrides but those of the ``logging`` section (they change
    nothing in training)."""
    run_dir = out / job.name
    with open(out / f"{job.name}.log", "a") as handle, torch_threads(max(threads, 2)):  # 1 crashes torch 2.13
        def log(message: str) -> None:
            handle.write(message + "\n")
            handle.flush()

        try:
            if not (run_dir / rundir.SUMMARY).exists():
                resume = run_dir if (run_dir / rundir.CONFIG).exists() else None
                logging = tuple(text for text in extra if text.strip().startswith("logging."))
                run_search(job.config, out=out, name=job.name,
                           overrides=logging if resume else (*job.overrides, *extra), resume=resume, log=log)
            if job.retrain_top and not (run_dir / RETRAINED).exists():
                retrain_top(run_dir, job.retrain_top, log=log)
                (run_dir / RETRAINED).write_text("done\n")
        except Exception:  # the job failed; its log says why, the other jobs go on
            log(traceback.format_exc())
            return job.name, 1
    return job.name, 0


@dataclass(frozen=True)
class JobRunner:
    """:func:`run_job` of every job into ``out`` with the ``extra`` overrides and ``threads`` torch threads, as one
    picklable call (what an executor hands to worker processes, submitit or Ray)."""

    out: str
    extra: tuple[str, ...]
    threads: int

    def __call__(self, job: Job) -> tuple[str, int]:
        return run_job(job, Path(self.out), list(self.extra), self.threads)
