"""Analysis recipes: the sets of runs each figure needs (paper Section 5.2), embedded or at paper scale.

A recipe is a list of jobs; a job is one search (:func:`sharing_lab.run_search`: name + ``key=value``
overrides over a base configuration) optionally followed by retraining its top-N from scratch. Jobs run in
worker processes (spawned, so each has its own torch threads), a few at a time, so a recipe's runs can use
several cores or GPUs. Finished runs are skipped and stopped ones resumed, so an interrupted recipe can simply
be started again.
"""

from __future__ import annotations

import multiprocessing
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

# Embedded (digits, CPU) base settings. The O/I/T comparison runs longer than the default search so that
# independent sharing, the hard case (DESIGN §3), trains too; see the README's calibration section.
EMBEDDED_OIT = ["search.epochs=100", "search.warmup_epochs=40"]
EMBEDDED_SHORT = ["search.epochs=60", "search.warmup_epochs=20"]
EMBEDDED_TARGET = 3.8e4  # MACs, about half of the widest architecture of the embedded space (75,240)
PAPER_TARGET = 2.05e7  # the paper's ≈50% ResNet-20 target
SCHEMES = ("ordinal", "independent", "transitionary")
# Around the default 5e-5. Fraction of the way from ordinal to independent Φ at the end of the 40 search epochs
# (data-free replay of Eq. 5): 2e-4 0.998 (0.84 after a quarter), 1e-4 0.965, 5e-5 0.83, 3e-5 0.47, 2e-5 0.04.
TAUS_EMBEDDED = (2e-4, 1e-4, 5e-5, 2e-5)
TAUS_PAPER = (1e-6, 1e-7, 1e-8, 1e-9)


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


def _slug(text: str) -> str:
    return text.replace(":", "").replace(".", "p").replace("-", "m")


def recipes(scale: str = "embedded") -> dict[str, Recipe]:
    """Every recipe at ``scale`` (``embedded``: digits on a CPU; ``paper``: CIFAR-10 ResNet-20 on a GPU)."""
    if scale not in ("embedded", "paper"):
        raise InputError(f"unknown scale {scale!r}; known: embedded, paper")
    embedded = scale == "embedded"
    config = None if embedded else "cifar10-resnet20"
    long, short = (EMBEDDED_OIT, EMBEDDED_SHORT) if embedded else ([], [])
    target = EMBEDDED_TARGET if embedded else PAPER_TARGET
    taus = TAUS_EMBEDDED if embedded else TAUS_PAPER
    oit = Recipe("oit", ("fig4", "fig5"))
    for scheme in SCHEMES:
        for seed in (0, 1, 2):
            oit.jobs.append(Job(f"oit-{scheme}-s{seed}", (*long, f"sharing.scheme={scheme}", f"seed={seed}"),
                                config=config))
    overlap = Recipe("overlap", ("fig3",))
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        overlap.jobs.append(Job(f"overlap-{_slug(str(alpha))}", (*short, f"sharing.scheme=overlap:{alpha}"),
                                config=config))
    overlap.jobs.append(Job("overlap-transitionary", (*short, "sharing.scheme=transitionary"), config=config))
    tau = Recipe("tau", ("fig6", "fig7"))
    for value in taus:
        tau.jobs.append(Job(f"tau-{value:g}", (*short, "sharing.scheme=transitionary", f"sharing.tau={value}"),
                            config=config))
    topn = Recipe("topn", ("fig8", "rank"))
    for scheme in SCHEMES:
        for constrained in (False, True):
            extra = [f"search.flops_target={target}"] if constrained else []
            label = "target" if constrained else "free"
            topn.jobs.append(Job(f"topn-{scheme}-{label}", (*short, f"sharing.scheme={scheme}", *extra),
                                 retrain_top=4 if embedded else 8, config=config))
    table = {r.name: r for r in (oit, overlap, tau, topn)}
    return table


def run_job(job: Job, out: Path, extra: list[str], threads: int) -> tuple[str, int]:
    """Run one job's search (resuming a stopped one, skipping a finished one) and its retraining, in this
    process, logging to ``<out>/<name>.log``; returns (name, 0) or (name, 1) with the error in the log."""
    import torch

    from . import rundir
    from .launch import run_search
    from .retrain import retrain_top

    torch.set_num_threads(max(threads, 2))  # one thread crashes torch 2.13's CPU build (DESIGN §3)
    run_dir = out / job.name
    with open(out / f"{job.name}.log", "a") as handle:
        def log(message: str) -> None:
            handle.write(message + "\n")
            handle.flush()

        try:
            if not (run_dir / rundir.SUMMARY).exists():
                resume = run_dir if (run_dir / rundir.CONFIG).exists() else None
                run_search(job.config, out=out, name=job.name, overrides=() if resume else (*job.overrides, *extra),
                           resume=resume, log=log)
            if job.retrain_top and not (run_dir / "retrain.done").exists():
                retrain_top(run_dir, job.retrain_top, log=log)
                (run_dir / "retrain.done").write_text("done\n")
        except Exception:  # the job failed; its log says why, the other jobs go on
            log(traceback.format_exc())
            return job.name, 1
    return job.name, 0


def run_recipe(names: list[str], scale: str, out: Path, jobs: int, extra: list[str], threads: int, log) -> dict:
    """Run the named recipes' jobs, ``jobs`` at a time; returns {job name: exit status}."""
    table = recipes(scale)
    unknown = [n for n in names if n not in table and n != "all"]
    if unknown:
        raise InputError(f"unknown recipe {unknown[0]!r}; known: {', '.join(table)}, all")
    selected = list(table) if "all" in names else names
    out.mkdir(parents=True, exist_ok=True)
    todo = [job for name in selected for job in table[name].jobs]
    results = {}
    with ProcessPoolExecutor(max_workers=max(jobs, 1), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = []
        for job in todo:
            log(f"start {job.name}")
            futures.append(pool.submit(run_job, job, out, extra, threads))
        for future in futures:
            name, status = future.result()
            log(f"{'done ' if status == 0 else 'FAILED'} {name}")
            results[name] = status
    return results
