"""Analysis recipes: the sets of runs each figure needs (paper Section 5.2), embedded or at paper scale, and
sweeps of one's own from a TOML file (:func:`load_sweep`).

A recipe is a list of jobs; a job is one search (:func:`sharing_lab.run_search`: name + ``key=value``
overrides over a base configuration) optionally followed by retraining its top-N from scratch. Jobs run where
the executor says (:mod:`sharing_lab.executors`: worker processes here, SLURM through submitit, or Ray), each
in its own process with its own torch threads. Finished runs are not submitted again and stopped ones are
resumed, so an interrupted, killed or preempted recipe can simply be submitted again.
"""

from __future__ import annotations

import itertools
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .config import parse_override
from .errors import InputError
from .executors import ExecutorConfig

# Embedded (digits, CPU): every recipe runs the default search, the budget in the paper's proportions
# (README, "Budget"; sharing-lab budget): a third warm-up, Φ 80% of the way to independent (in log Φ) at 60% of
# the search phase while the weight lr is at its peak, lr ×0.1 there and again 7 epochs later.
EMBEDDED_TARGET = 3.8e4  # MACs, about half of the widest architecture of the embedded space (75,240)
PAPER_TARGET = 2.05e7  # the paper's ≈50% ResNet-20 target
SCHEMES = ("ordinal", "independent", "transitionary")
SEEDS = (0, 1, 2, 3, 4)  # the claims need at least five seeds per arm (sharing_lab.claims.MIN_SEEDS)
# The paper's constant rate, calibrated by replay (sharing-lab budget --calibrate: 1.4e-4 puts Φ where the
# default Φ schedule does, 80% of the way at 60% of the search phase), and a too small and a too large one (×4).
TAU_EMBEDDED = 1.4e-4
TAUS_EMBEDDED = (3.5e-5, TAU_EMBEDDED, 5.6e-4)
RATE = "sharing.phi_schedule=none"
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
    return _embedded() if scale == "embedded" else _paper()


def _embedded() -> dict[str, Recipe]:
    """Five seeds of every arm the claims compare (sharing_lab.claims), all on the default budget: O, I, T at
    the calibrated constant τ and T under the default Φ schedule; T at τ/4 and 4τ; O, I, T(τ) under a FLOPs
    target; and one seed of the overlap levels between O and I for Figure 3."""
    rate = (RATE, f"sharing.tau={TAU_EMBEDDED}")
    oit = Recipe("oit", ("fig4", "fig5", "gt", "rank"))
    for seed in SEEDS:
        for scheme in SCHEMES:
            extra = rate if scheme == "transitionary" else ()
            oit.jobs.append(Job(f"oit-{scheme}-s{seed}", (f"sharing.scheme={scheme}", *extra, f"seed={seed}")))
        oit.jobs.append(Job(f"oit-scheduled-s{seed}", ("sharing.scheme=transitionary", f"seed={seed}")))
    tau = Recipe("tau", ("fig6", "fig7"))
    for seed in SEEDS:
        for value in TAUS_EMBEDDED:
            if value != TAU_EMBEDDED:  # the middle rate is oit's transitionary arm
                tau.jobs.append(Job(f"tau-{value:g}-s{seed}", ("sharing.scheme=transitionary", RATE,
                                                                f"sharing.tau={value}", f"seed={seed}")))
    topn = Recipe("topn", ("fig8",))
    for seed in SEEDS:
        for scheme in SCHEMES:
            extra = rate if scheme == "transitionary" else ()
            topn.jobs.append(Job(f"topn-{scheme}-target-s{seed}", (f"sharing.scheme={scheme}", *extra,
                                                                     f"search.flops_target={EMBEDDED_TARGET}",
                                                                     f"seed={seed}")))
    overlap = Recipe("overlap", ("fig3",))
    for alpha in (0.25, 0.5, 0.75):  # α = 0 and 1 are oit's independent and ordinal arms
        overlap.jobs.append(Job(f"overlap-{_slug(str(alpha))}", (f"sharing.scheme=overlap:{alpha}",)))
    return {r.name: r for r in (oit, tau, topn, overlap)}


def _paper() -> dict[str, Recipe]:
    """The same comparisons on CIFAR-10 ResNet-20 (the cifar10-resnet20 preset; a GPU), three seeds of O/I/T."""
    config = "cifar10-resnet20"
    oit = Recipe("oit", ("fig4", "fig5"))
    for scheme in SCHEMES:
        for seed in (0, 1, 2):
            oit.jobs.append(Job(f"oit-{scheme}-s{seed}", (f"sharing.scheme={scheme}", f"seed={seed}"), config=config))
    overlap = Recipe("overlap", ("fig3",))
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        overlap.jobs.append(Job(f"overlap-{_slug(str(alpha))}", (f"sharing.scheme=overlap:{alpha}",), config=config))
    overlap.jobs.append(Job("overlap-transitionary", ("sharing.scheme=transitionary",), config=config))
    tau = Recipe("tau", ("fig6", "fig7"))
    for value in TAUS_PAPER:
        tau.jobs.append(Job(f"tau-{value:g}", ("sharing.scheme=transitionary", RATE, f"sharing.tau={value}"),
                            config=config))
    topn = Recipe("topn", ("fig8", "rank"))
    for scheme in SCHEMES:
        for constrained in (False, True):
            extra = [f"search.flops_target={PAPER_TARGET}"] if constrained else []
            label = "target" if constrained else "free"
            topn.jobs.append(Job(f"topn-{scheme}-{label}", (f"sharing.scheme={scheme}", *extra), retrain_top=8,
                                 config=config))
    return {r.name: r for r in (oit, overlap, tau, topn)}


def job_done(job: Job, out: Path) -> bool:
    """Whether ``job`` has nothing left to do: its search finished (``summary.json``) and its retraining too."""
    from . import rundir

    run_dir = out / job.name
    return (run_dir / rundir.SUMMARY).exists() and (not job.retrain_top or (run_dir / "retrain.done").exists())


def run_job(job: Job, out: Path, extra: list[str], threads: int) -> tuple[str, int]:
    """Run one job's search (resuming a stopped one, skipping a finished one) and its retraining, in this
    process, logging to ``<out>/<name>.log``; returns (name, 0) or (name, 1) with the error in the log. A resume
    repeats none of the overrides but those of the ``logging`` section (they change nothing in training)."""
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
                logging = tuple(text for text in extra if text.strip().startswith("logging."))
                run_search(job.config, out=out, name=job.name,
                           overrides=logging if resume else (*job.overrides, *extra), resume=resume, log=log)
            if job.retrain_top and not (run_dir / "retrain.done").exists():
                retrain_top(run_dir, job.retrain_top, log=log)
                (run_dir / "retrain.done").write_text("done\n")
        except Exception:  # the job failed; its log says why, the other jobs go on
            log(traceback.format_exc())
            return job.name, 1
    return job.name, 0


def load_sweep(path: str | Path) -> Recipe:
    """A recipe from a TOML file's ``[sweep]`` table: ``name`` (default: the file's stem), ``config`` (a preset or
    TOML file, relative to the sweep file, for every run), ``set`` (overrides for every run), ``retrain_top``, and
    the runs as ``[sweep.grid]`` (key = list of values: one run per combination, named NAME-VALUE-VALUE…) and/or
    ``[[sweep.runs]]`` tables (``name``, ``set``)."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text()).get("sweep")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read sweep file {path}: {error}") from None
    if not isinstance(table, dict):
        raise InputError(f"sweep file {path} has no [sweep] table")
    known = {"name", "config", "set", "retrain_top", "grid", "runs"}
    if set(table) - known:
        raise InputError(f"sweep file {path}: unknown key {sorted(set(table) - known)[0]!r}; known: "
                         f"{', '.join(sorted(known))}")
    name, common = str(table.get("name", path.stem)), table.get("set", [])
    config = table.get("config")
    if config is not None and (path.parent / str(config)).is_file():
        config = str(path.parent / str(config))
    grid, runs = table.get("grid", {}), table.get("runs", [])
    if not isinstance(common, list) or not isinstance(grid, dict) or not isinstance(runs, list):
        raise InputError(f"sweep file {path}: set must be a list, grid a table and runs a list of tables")
    recipe = Recipe(name, ())
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    for combination in itertools.product(*values) if grid else ():
        label = "-".join(_slug(str(v)) for v in combination)
        sets = [f"{key}={_toml(value)}" for key, value in zip(grid, combination)]
        recipe.jobs.append(Job(f"{name}-{label}", (*map(str, common), *sets), int(table.get("retrain_top", 0)),
                               config))
    for run in runs:
        if not isinstance(run, dict) or "name" not in run:
            raise InputError(f"sweep file {path}: every [[sweep.runs]] needs a name")
        recipe.jobs.append(Job(str(run["name"]), (*map(str, common), *map(str, run.get("set", []))),
                               int(run.get("retrain_top", table.get("retrain_top", 0))), config))
    if not recipe.jobs:
        raise InputError(f"sweep file {path} defines no runs ([sweep.grid] or [[sweep.runs]])")
    for job in recipe.jobs:
        for text in job.overrides:
            parse_override(text)
    return recipe


def _toml(value) -> str:
    """A grid value as a ``--set`` TOML value."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    return repr(value)


def executor_table(path: str | Path) -> dict:
    """The ``[executor]`` table of a TOML file (a sweep file or ``--executor-config``; empty when it has none)."""
    try:
        table = tomllib.loads(Path(path).read_text()).get("executor", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read {path} as TOML: {error}") from None
    if not isinstance(table, dict):
        raise InputError(f"{path}: executor must be a table ([executor])")
    return table


def select_jobs(names: list[str], scale: str) -> list[Job]:
    """The jobs of the named recipes (``all``: every built-in one) and sweep files (a name ending in .toml)."""
    table = recipes(scale)
    jobs: list[Job] = []
    for name in names:
        if name.endswith(".toml"):
            if not Path(name).is_file():
                raise InputError(f"sweep file {name} does not exist")
            jobs.extend(load_sweep(name).jobs)
        elif name == "all":
            jobs.extend(job for recipe in table.values() for job in recipe.jobs)
        elif name in table:
            jobs.extend(table[name].jobs)
        else:
            raise InputError(f"unknown recipe {name!r}; known: {', '.join(table)}, all, or a sweep file (.toml)")
    from .rundir import check_name

    seen: set[str] = set()
    for job in jobs:
        check_name(job.name, "recipe job name")
        if job.name in seen:
            raise InputError(f"two jobs of the recipe are named {job.name!r}")
        seen.add(job.name)
    return jobs


def run_recipe(names: list[str], scale: str, out: Path, extra: list[str], settings: ExecutorConfig | None = None,
               log=print) -> dict[str, int]:
    """Run the named recipes' jobs on the executor ``settings`` (default: one local worker); finished jobs are
    skipped (status 0) without being submitted. Returns {job name: exit status}
    (:func:`sharing_lab.executors.execute`)."""
    from .executors import execute

    settings = settings or ExecutorConfig()
    for text in extra:
        parse_override(text)
    todo = select_jobs(names, scale)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for job in todo:
        if job_done(job, out):
            log(f"skip {job.name} (finished)")
            results[job.name] = 0
    results.update(execute([job for job in todo if job.name not in results], out, extra, settings, log))
    return {job.name: results[job.name] for job in todo}
