"""Analysis recipes: the sets of runs each figure needs (paper Section 5.2), embedded or at paper scale, and
running them (:func:`run_recipe`) with sweeps of one's own (:mod:`sharing_lab.jobs.sweep_file`).

A recipe is a list of jobs (:mod:`sharing_lab.jobs.job`: one search, optionally followed by retraining its top-N).
Every job's configuration is resolved before the first one starts; the jobs run where the executor says
(:mod:`sharing_lab.jobs.executors`: worker processes here, SLURM through submitit, or Ray), each in its own process
with its own torch threads. Finished runs are not submitted again and stopped ones are resumed, so an
interrupted, killed or preempted recipe can simply be submitted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import resolve
from ..errors import InputError
from ..runs.rundir import check_name
from ..runs.sweeps import arm_of
from ..truth.table import SPACES
from .executors import ExecutorConfig, execute
from .job import JobRunner, job_done
from .spec import Job, Recipe, slug
from .sweep_file import load_sweep

# Embedded (digits, CPU): every recipe runs the default search, the budget in the paper's proportions
# (docs/explanation/measurements.md, "Budget"; sharing-lab budget): a third warm-up, Φ 80% of the way to
# independent (in log Φ) at 60% of the search phase while the weight lr is at its peak, lr ×0.1 there and again 7
# epochs later.
EMBEDDED_TARGET = 3.8e4  # MACs, about half of the widest architecture of the embedded space (75,240)
PAPER_TARGET = 2.05e7  # the paper's ≈50% ResNet-20 target
SCHEMES = ("ordinal", "independent", "transitionary")
SEEDS = (0, 1, 2, 3, 4)  # the claims need at least five seeds per arm (sharing_lab.analysis.verdicts.MIN_SEEDS)
# The paper's constant rate, calibrated by replay (sharing-lab budget --calibrate: 1.4e-4 puts Φ where the
# default Φ schedule does, 80% of the way at 60% of the search phase), and a too small and a too large one (×4).
TAU_EMBEDDED = 1.4e-4
TAUS_EMBEDDED = (3.5e-5, TAU_EMBEDDED, 5.6e-4)
TAUS_PAPER = (1e-6, 1e-7, 1e-8, 1e-9)
# Fashion-MNIST (the fashion-mnist preset; the ground-truth space fashion-mnist-resnet20-x124): the embedded arms on
# that space, its constant rate calibrated the same way (sharing-lab budget --config fashion-mnist --calibrate), the
# space's own target (52% of its widest architecture's 538,160 MACs; TruthSpace.target says why).
FASHION_CONFIG = "fashion-mnist"
TAU_FASHION = 1.2e-5
TAUS_FASHION = (TAU_FASHION / 4, TAU_FASHION, TAU_FASHION * 4)
FASHION_TARGET = SPACES["fashion-mnist-resnet20-x124"].target
SCALES = ("embedded", "fashion-mnist", "paper")


MAX_SEEDS = 1000


def recipes(scale: str = "embedded", seeds: int | None = None) -> dict[str, Recipe]:
    """Every recipe at ``scale`` (``embedded``: digits on a CPU; ``fashion-mnist``: the same arms on the
    Fashion-MNIST preset; ``paper``: CIFAR-10 ResNet-20 on a GPU), with seeds 0…``seeds``−1 in every arm that is
    repeated over seeds (default: :data:`SEEDS`, three at paper scale). Seeds only add jobs: the job of seed k is
    named and configured the same whatever ``seeds`` is, so a recipe with more seeds resumes the one with fewer (its
    finished runs are kept)."""
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
        raise InputError(f"seeds must be between 1 and {MAX_SEEDS}, got {seeds}")
    if scale != "paper":
        chosen = tuple(range(seeds)) if seeds else SEEDS
        if scale == "fashion-mnist":
            return _embedded(chosen, FASHION_CONFIG, TAU_FASHION, TAUS_FASHION, FASHION_TARGET)
        return _embedded(chosen)
    return _paper(tuple(range(seeds or 3)))


def _embedded(seeds: tuple[int, ...], config: str | None = None, tau: float = TAU_EMBEDDED,
              taus: tuple[float, ...] = TAUS_EMBEDDED, target: float = EMBEDDED_TARGET) -> dict[str, Recipe]:
    """Every arm the claims compare (sharing_lab.analysis.claims) over ``seeds``, all on the default budget of the
    preset ``config`` (None: the embedded default): O, I, T at the calibrated constant ``tau`` and T under the
    default Φ schedule; T at the other ``taus`` (τ/4 and 4τ); O, I, T(τ) under the FLOPs ``target``; the overlap
    levels strictly between O and I (α = 0.25, 0.5), and α = 0.75 (Figure 3) at seed 0 only: in the embedded space
    it is ordinal (its Φ is O's)."""
    rate = (f"sharing.transition={tau}",)
    oit = Recipe("oit", ("fig4", "fig5", "gt", "rank"))
    for seed in seeds:
        for scheme in SCHEMES:
            extra = rate if scheme == "transitionary" else ()
            oit.jobs.append(Job(f"oit-{scheme}-s{seed}", (f"sharing.scheme={scheme}", *extra, f"seed={seed}"),
                                config=config))
        oit.jobs.append(Job(f"oit-scheduled-s{seed}", ("sharing.scheme=transitionary", f"seed={seed}"), config=config))
    rates = Recipe("tau", ("fig6", "fig7"))
    for seed in seeds:
        for value in taus:
            if value != tau:  # the middle rate is oit's transitionary arm
                rates.jobs.append(Job(f"tau-{value:g}-s{seed}", ("sharing.scheme=transitionary",
                                                                  f"sharing.transition={value}", f"seed={seed}"),
                                      config=config))
    topn = Recipe("topn", ("fig8",))
    for seed in seeds:
        for scheme in SCHEMES:
            extra = rate if scheme == "transitionary" else ()
            topn.jobs.append(Job(f"topn-{scheme}-target-s{seed}", (f"sharing.scheme={scheme}", *extra,
                                                                     f"search.flops_target={target}",
                                                                     f"seed={seed}"), config=config))
    overlap = Recipe("overlap", ("fig3",))
    for seed in seeds:
        for alpha in (0.25, 0.5, 0.75):  # α = 0 and 1 are oit's independent and ordinal arms
            if alpha != 0.75 or seed == 0:
                overlap.jobs.append(Job(f"overlap-{slug(str(alpha))}-s{seed}",
                                        (f"sharing.scheme=overlap:{alpha}", f"seed={seed}"), config=config))
    return {r.name: r for r in (oit, rates, topn, overlap)}


def _paper(seeds: tuple[int, ...]) -> dict[str, Recipe]:
    """The same comparisons on CIFAR-10 ResNet-20 (the cifar10-resnet20 preset; a GPU), ``seeds`` of O/I/T."""
    config = "cifar10-resnet20"
    oit = Recipe("oit", ("fig4", "fig5"))
    for scheme in SCHEMES:
        for seed in seeds:
            oit.jobs.append(Job(f"oit-{scheme}-s{seed}", (f"sharing.scheme={scheme}", f"seed={seed}"), config=config))
    overlap = Recipe("overlap", ("fig3",))
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        overlap.jobs.append(Job(f"overlap-{slug(str(alpha))}", (f"sharing.scheme=overlap:{alpha}",), config=config))
    overlap.jobs.append(Job("overlap-transitionary", ("sharing.scheme=transitionary",), config=config))
    tau = Recipe("tau", ("fig6", "fig7"))
    for value in TAUS_PAPER:
        tau.jobs.append(Job(f"tau-{value:g}", ("sharing.scheme=transitionary", f"sharing.transition={value}"),
                            config=config))
    topn = Recipe("topn", ("fig8", "rank"))
    for scheme in SCHEMES:
        for constrained in (False, True):
            extra = [f"search.flops_target={PAPER_TARGET}"] if constrained else []
            label = "target" if constrained else "free"
            topn.jobs.append(Job(f"topn-{scheme}-{label}", (f"sharing.scheme={scheme}", *extra), retrain_top=8,
                                 config=config))
    return {r.name: r for r in (oit, overlap, tau, topn)}


def select_jobs(names: list[str], scale: str, seeds: int | None = None, arms: Sequence[str] = ()) -> list[Job]:
    """The jobs of the named recipes (``all``: every built-in one; ``seeds`` as for :func:`recipes`) and sweep
    files (a name ending in .toml); with ``arms``, only the jobs of those arms (:func:`arm_of`)."""
    table = recipes(scale, seeds)
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
    seen: set[str] = set()
    for job in jobs:
        check_name(job.name, "recipe job name")
        if job.name in seen:
            raise InputError(f"two jobs of the recipe are named {job.name!r}")
        seen.add(job.name)
    if arms:
        known = sorted({arm_of(job.name) for job in jobs})
        unknown = [arm for arm in arms if arm not in known]
        if unknown:
            raise InputError(f"no arm {', '.join(map(repr, unknown))} in these recipes; their arms: {', '.join(known)}")
        jobs = [job for job in jobs if arm_of(job.name) in arms]
    return jobs


def run_recipe(names: list[str], scale: str, out: Path, extra: list[str], settings: ExecutorConfig | None = None,
               log=print, seeds: int | None = None, arms: Sequence[str] = ()) -> dict[str, int]:
    """Run the named recipes' jobs (``seeds``, ``arms``: :func:`select_jobs`) on the executor ``settings``
    (default: one local worker). Every job's configuration is resolved first (a job that cannot run refuses the
    whole recipe, before anything starts); finished jobs are skipped (status 0) without being submitted. Returns
    {job name: exit status} (:func:`sharing_lab.jobs.executors.execute`)."""
    settings = settings or ExecutorConfig()
    todo = select_jobs(names, scale, seeds, arms)
    for job in todo:
        try:
            resolve(job.config, (*job.overrides, *extra))
        except InputError as error:
            raise InputError(f"job {job.name}: {error}") from None
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for job in todo:
        if job_done(job, out):
            log(f"skip {job.name} (finished)")
            results[job.name] = 0
    left = [job for job in todo if job.name not in results]
    results.update(execute(left, JobRunner(str(out), tuple(extra), settings.threads), out, settings, log))
    return {job.name: results[job.name] for job in todo}
