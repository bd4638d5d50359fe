"""Starting or resuming a search run: the processes, the run directory and its lock (DESIGN §4).

``sharing-lab run-search`` calls :func:`start` and :func:`sharing_lab.search.loop.run`; :func:`run_request` does
both in one process (what :func:`sharing_lab.jobs.job.run_search`, the library's entry point, runs). With several
processes (torchrun), rank 0 resolves the run directory and every rank learns the outcome, so a refusal ends every
rank with the same one line (printed once) and nothing is written twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ..compute.distributed import Group, close_group, init_group
from ..compute.runtime import resolve_device, run_settings
from ..config import Config
from ..errors import InputError
from ..runs import rundir
from ..runs.locking import lock, release
from ..runs.tensorboard import EventSink
from .loop import run
from .probes.base import Probe
from .request import Request, resolve
from .session import Search, open_search


def start(request: Request, ranks: tuple[int, int, int] = (0, 1, 0), log: Callable[[str], None] = print,
          progress: bool = False, probes: list[Probe] | None = None) -> tuple[Search, Group, bool]:
    """Join the process group (``ranks`` = rank, world size, local rank), resolve the run and open its
    :class:`~sharing_lab.search.session.Search`; returns it with the group and whether the run directory is new (it is
    removed again if the search cannot start). Rank 0 holds the run directory's lock
    (:func:`sharing_lab.runs.locking.lock`) from here on: give it back with :func:`sharing_lab.runs.locking.release`
    (or let the process end)."""
    config, run_dir = resolve(request)
    group, device = init_group(*ranks, config.device)
    try:
        group.local_size(config.data.batch_size, "data.batch_size")  # before anything is made on disk
        group.local_size(config.data.reward_batch_size, "data.reward_batch_size")
        outcome = None
        if group.is_main:
            try:
                outcome = ("ok", str(_make_run_dir(request, config, run_dir, group, device)))
            except InputError as error:
                outcome = ("error", str(error))
        status, value = group.broadcast_object(outcome)
        if status == "error":
            raise InputError(value)
        created = run_dir is None
        run_dir = Path(value)
        try:
            search = open_search(config, run_dir, log=log, progress=progress, probes=probes, group=group)
            if config.logging.tensorboard and group.is_main:  # TensorBoard events mirror each flushed part
                search.writer.sinks.append(EventSink(run_dir / rundir.TENSORBOARD))
        except BaseException:
            if group.is_main:
                release(run_dir)
            if created and group.is_main:
                shutil.rmtree(run_dir, ignore_errors=True)  # only the directory this call just made
            raise
    except BaseException:
        close_group(group)
        raise
    return search, group, created


def _make_run_dir(request: Request, config: Config, run_dir: Path | None, group: Group, device: str) -> Path:
    """The run directory, made (new run) or as given (resume), locked by this process."""
    if run_dir is None:
        extra = {"seed": config.seed, "device": str(resolve_device(device)),
                 "bn_evaluation": config.search.bn_evaluation, "processes": group.world_size}
        run_dir = rundir.create(request.out, request.name or rundir.default_name(config), config, extra)
    lock(run_dir)
    if request.resume and (run_dir / rundir.SUMMARY).exists():  # finished while this process waited to lock it
        release(run_dir)
        raise InputError(f"run {run_dir} has already finished")
    return run_dir


def run_request(request: Request, log: Callable[[str], None] = print, progress: bool = False,
                probes: list[Probe] | None = None) -> Path:
    """Run (or resume) the search of ``request`` to its end in this process and return its run directory."""
    search, group, _ = start(request, log=log, progress=progress, probes=probes)
    try:
        with run_settings(search.runtime):
            run(search)
    finally:
        search.writer.close()
        close_group(group)
        release(search.run_dir)
    return search.run_dir
