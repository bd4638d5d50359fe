"""Where a recipe's searches run (``sharing-lab recipe --executor local|slurm|ray``).

``local``: worker processes on this machine (spawned, a few at a time). ``slurm``: one SLURM array job through
submitit (partition, time, CPUs and GPUs per job, array parallelism), requeued by submitit on timeout or
preemption. ``ray``: one Ray task per search with its CPU/GPU request, on an existing cluster or on a local one
started for the recipe. The engines schedule; :func:`execute` hands each of them the call it is given, once per
job (:class:`sharing_lab.jobs.job.JobRunner`: the job's search and retraining), and collects the exit statuses. The
run directory is the unit of state: a job that is killed, preempted or timed out leaves a run that the next
submission (or the engine's own requeue or retry) resumes from its last checkpoint; finished runs are not submitted
again (:func:`sharing_lab.jobs.recipes.run_recipe`). submitit and ray are imported only when chosen. The settings are an
:class:`ExecutorConfig` (not part of a run's :class:`sharing_lab.config.Config`: where a run goes does not change
what it computes).
"""

from __future__ import annotations

import multiprocessing
import shutil
import typing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ..errors import InputError
from ..extras import require
from ..overrides import coerce, parse_override


@dataclass(frozen=True)
class ExecutorConfig:
    """Where and how a recipe's searches run: ``sharing-lab recipe --executor``, an ``[executor]`` TOML table,
    ``--executor-set key=value``."""

    kind: str = "local"  # local (worker processes here), slurm (submitit), ray
    jobs: int = 1  # local: runs at once
    threads: int = 2  # torch threads per run (at least 2: one thread crashes torch 2.13's CPU build)
    cpus_per_job: int = 2  # slurm, ray: CPUs requested per run
    gpus_per_job: int = 0  # slurm, ray: GPUs requested per run
    retries: int = 3  # slurm: requeues on timeout or preemption; ray: restarts of a task whose worker died
    wait: bool = True  # slurm: wait for the jobs and report them (false: submit and return)
    cluster: str = "slurm"  # slurm: submitit's cluster; "local" runs the jobs here through submitit (a dry run)
    folder: str | None = None  # slurm: submitit's folder (job logs, pickles); default OUT/.submitit
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int = 240  # slurm: time limit per job, minutes
    mem_gb: float | None = None  # slurm: memory per job
    array_parallelism: int = 64  # slurm: array tasks running at once
    address: str | None = None  # ray: cluster address ("auto", "ray://HOST:10001"); None starts a local cluster
    num_cpus: int | None = None  # ray: CPUs of the local cluster it starts (None: every core)
    num_gpus: int | None = None  # ray: GPUs of the local cluster it starts (None: every GPU)


_EXECUTOR_MIN = {"jobs": 1, "threads": 2, "cpus_per_job": 1, "gpus_per_job": 0, "retries": 0, "time_min": 1,
                 "array_parallelism": 1, "num_cpus": 1, "num_gpus": 0}
EXECUTORS = ("local", "slurm", "ray")


def executor_config(mapping: dict | None = None, overrides: list[str] = (), base: ExecutorConfig | None = None
                    ) -> ExecutorConfig:
    """An :class:`ExecutorConfig`: ``base`` (defaults if None), then the ``[executor]`` table ``mapping``, then
    ``key=value`` overrides (TOML values); refuses unknown keys, wrong types and values below their minimum."""
    settings = base or ExecutorConfig()
    hints = typing.get_type_hints(ExecutorConfig)
    items = [(str(k), v) for k, v in (mapping or {}).items()] + [parse_override(text) for text in overrides]
    for key, value in items:
        if key not in hints:
            raise InputError(f"unknown executor key {key!r}; known: {', '.join(hints)}")
        settings = replace(settings, **{key: coerce(value, hints[key], f"executor.{key}")})
    if settings.kind not in EXECUTORS:
        raise InputError(f"executor must be one of {', '.join(EXECUTORS)}, got {settings.kind!r}")
    for key, low in _EXECUTOR_MIN.items():
        value = getattr(settings, key)
        if value is not None and value < low:
            raise InputError(f"executor.{key} must be at least {low}, got {value}")
    return settings


Log = Callable[[str], None]
SUBMITTED = -1  # the status of a job submitted without waiting (executor.wait = false)


class Job(Protocol):
    """What an executor knows of a job: its name (:class:`sharing_lab.jobs.job.Job` is one)."""

    name: str


Run = Callable[[Job], tuple[str, int]]  # a picklable call that runs one job: (its name, exit status)


def execute(jobs: list[Job], run: Run, out: Path, settings: ExecutorConfig, log: Log) -> dict[str, int]:
    """Call ``run`` once per job of ``jobs`` (which write into ``out``; submitit keeps its files in
    ``OUT/.submitit`` unless ``executor.folder`` says otherwise) on the executor ``settings.kind``; returns
    {job name: 0 finished, 1 failed (its log, ``OUT/NAME.log``, says why), :data:`SUBMITTED`}."""
    if not jobs:
        return {}
    engine = {"local": _local, "slurm": _slurm, "ray": _ray}[settings.kind]
    return engine(jobs, run, out, settings, log)


@dataclass(frozen=True)
class Requeueable:
    """``run`` as submitit calls it: ``checkpoint`` is what submitit calls on a timeout or preemption signal; it
    requeues the same call, which resumes the run."""

    run: Run

    def __call__(self, job: Job) -> tuple[str, int]:
        return self.run(job)

    def checkpoint(self, job: Job) -> object:  # a submitit.helpers.DelayedSubmission
        from submitit.helpers import DelayedSubmission  # submitit is optional (sharing-lab[slurm])

        return DelayedSubmission(self, job)


# --- local worker processes ------------------------------------------------------------------------------------
def _local(jobs: list[Job], run: Run, out: Path, settings: ExecutorConfig, log: Log) -> dict[str, int]:
    results = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=settings.jobs, mp_context=context) as pool:
        futures = []
        for job in jobs:
            log(f"start {job.name}")
            futures.append((job, pool.submit(run, job)))
        for job, future in futures:
            try:
                name, status = future.result()
            except BrokenProcessPool:  # a worker was killed: its run is resumed by the next submission
                name, status = job.name, 1
            log(f"{'done ' if status == 0 else 'FAILED'} {name}")
            results[name] = status
    return results


# --- SLURM through submitit ------------------------------------------------------------------------------------
def slurm_executor(out: Path, settings: ExecutorConfig) -> object:  # a submitit.AutoExecutor
    """A submitit executor for ``settings`` (``cluster = "slurm"`` needs ``sbatch``; ``"local"`` runs the jobs
    on this machine, all at once, through submitit's local executor)."""
    submitit = require("submitit", "--executor slurm")
    if settings.cluster == "slurm" and shutil.which("sbatch") is None:
        raise InputError("--executor slurm: sbatch is not on PATH (submit from a SLURM login node); to try the "
                         "sweep on this machine through submitit, add --executor-set cluster=local")
    folder = Path(settings.folder) if settings.folder else out / ".submitit"
    try:
        executor = submitit.AutoExecutor(folder=str(folder), cluster=settings.cluster,
                                         slurm_max_num_timeout=settings.retries,
                                         local_max_num_timeout=settings.retries)
    except (ValueError, RuntimeError) as error:
        raise InputError(f"--executor slurm: {error}") from None
    params = {"name": f"sharing-lab-{out.name}", "timeout_min": settings.time_min,
              "cpus_per_task": settings.cpus_per_job, "gpus_per_node": settings.gpus_per_job,
              "mem_gb": settings.mem_gb, "slurm_partition": settings.partition, "slurm_account": settings.account,
              "slurm_qos": settings.qos, "slurm_constraint": settings.constraint,
              "slurm_array_parallelism": settings.array_parallelism}
    executor.update_parameters(**{key: value for key, value in params.items() if value is not None})
    return executor


def _slurm(jobs: list[Job], run: Run, out: Path, settings: ExecutorConfig, log: Log) -> dict[str, int]:
    executor = slurm_executor(out, settings)
    submitted = executor.map_array(Requeueable(run), jobs)  # one array job: a task per search
    for job, handle in zip(jobs, submitted):
        log(f"submitted {job.name} as job {handle.job_id}")
    if not settings.wait:
        return {job.name: SUBMITTED for job in jobs}
    results = {}
    for job, handle in zip(jobs, submitted):
        try:
            name, status = handle.result()
        except Exception as error:  # noqa: BLE001 - submitit's failed/uncompleted job errors, with its log path
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            log(f"job {handle.job_id} of {job.name} ended without a result: {first}")
            name, status = job.name, 1
        log(f"{'done ' if status == 0 else 'FAILED'} {name}")
        results[name] = status
    return results


# --- Ray ------------------------------------------------------------------------------------------------------
def _ray(jobs: list[Job], run: Run, out: Path, settings: ExecutorConfig, log: Log) -> dict[str, int]:
    ray = require("ray", "--executor ray")

    started = not ray.is_initialized()
    if started:
        if settings.address is None and settings.num_cpus is not None and settings.cpus_per_job > settings.num_cpus:
            raise InputError(f"executor.cpus_per_job ({settings.cpus_per_job}) exceeds the local Ray cluster's "
                             f"num_cpus ({settings.num_cpus}): no task could be scheduled")
        options = ({"address": settings.address} if settings.address is not None else
                   {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus, "include_dashboard": False})
        try:
            ray.init(**options, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"the Ray cluster at {settings.address}" if settings.address else "a local Ray cluster"
            raise InputError(f"--executor ray: cannot start or reach {where}: {error}") from None
    results = {}
    try:
        available = ray.cluster_resources()
        for resource, wanted in (("CPU", settings.cpus_per_job), ("GPU", settings.gpus_per_job)):
            if wanted > available.get(resource, 0):
                raise InputError(f"--executor ray: each run asks for {wanted} {resource}s; the cluster has "
                                 f"{available.get(resource, 0):g}")
        remote = ray.remote(num_cpus=settings.cpus_per_job, num_gpus=settings.gpus_per_job,
                            max_retries=settings.retries)(_call)
        pending = {}
        for job in jobs:
            log(f"start {job.name}")
            pending[remote.remote(run, job)] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                name, status = ray.get(done[0])
            except ray.exceptions.RayError as error:  # the task's worker died more often than it was retried
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                log(f"task of {job.name} ended without a result: {first}")
                name, status = job.name, 1
            log(f"{'done ' if status == 0 else 'FAILED'} {name}")
            results[name] = status
    finally:
        if started:
            ray.shutdown()
    return {job.name: results[job.name] for job in jobs}


def _call(run: Run, job: Job) -> tuple[str, int]:
    """``run(job)``: a module-level function, which Ray can ship to its workers."""
    return run(job)
