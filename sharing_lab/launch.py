"""Starting or resuming a search run: the configuration, the run directory and the processes (DESIGN §4).

:func:`run_search` is the library's entry point (notebooks, recipes); ``sharing-lab run-search`` calls
:func:`start` and :func:`sharing_lab.loop.run`. With several processes (torchrun), rank 0 resolves the run
directory and every rank learns the outcome, so a refusal ends every rank with the same one line (printed
once) and nothing is written twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import config as cfgmod
from . import rundir
from .distributed import Group, close_group, init_group
from .errors import InputError
from .loop import Search, open_search, run
from .probes import Probe
from .runtime import resolve_device


@dataclass(frozen=True)
class Request:
    """A ``run-search`` invocation: a new run (``config_file``/``overrides``/``out``/``name``) or ``resume``.
    ``config`` (a :class:`~sharing_lab.config.Config`) may stand in for ``config_file``."""

    config_file: str | None = None
    overrides: tuple[str, ...] = ()
    out: str = "runs"
    name: str | None = None
    resume: str | None = None
    config: cfgmod.Config | None = None


def resolve(request: Request) -> tuple[cfgmod.Config, Path | None]:
    """The run's configuration, and its directory when resuming (None for a new run)."""
    overrides = list(request.overrides)
    if request.resume:
        run_dir = Path(request.resume)
        saved, _ = rundir.read_config(run_dir)
        # Options given with --resume may repeat the run's own settings, never change them.
        given = cfgmod.load_toml(request.config_file, base=saved) if request.config_file else saved
        changed = cfgmod.differences(saved, cfgmod.apply_overrides(given, overrides))
        if changed:
            raise InputError(f"--resume {run_dir}: the given options change {', '.join(changed)} "
                             "from the run's config.json; resume without them")
        if (run_dir / rundir.SUMMARY).exists():
            raise InputError(f"run {run_dir} has already finished")
        cfgmod.check(saved)
        return saved, run_dir
    if request.config is not None:
        config = request.config
    else:
        config = cfgmod.load_toml(request.config_file) if request.config_file else cfgmod.Config()
    config = cfgmod.apply_overrides(config, overrides)
    cfgmod.check(config)
    return config, None


def start(request: Request, ranks: tuple[int, int, int] = (0, 1, 0), log: Callable[[str], None] = print,
          progress: bool = False, probes: list[Probe] | None = None) -> tuple[Search, Group, bool]:
    """Join the process group (``ranks`` = rank, world size, local rank), resolve the run and open its
    :class:`~sharing_lab.loop.Search`; returns it with the group and whether the run directory is new (it is
    removed again if the search cannot start)."""
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
            if search.device.type == "cuda":  # a few hundred (width, stride) shapes, each tuned once
                torch.backends.cudnn.benchmark = True
        except BaseException:
            if created and group.is_main:
                shutil.rmtree(run_dir, ignore_errors=True)  # only the directory this call just made
            raise
    except BaseException:
        close_group(group)
        raise
    return search, group, created


def _make_run_dir(request: Request, config: cfgmod.Config, run_dir: Path | None, group: Group, device: str) -> Path:
    if run_dir is not None:
        return run_dir
    extra = {"seed": config.seed, "device": str(resolve_device(device)),
             "bn_evaluation": config.search.bn_evaluation, "processes": group.world_size}
    return rundir.create(request.out, request.name or rundir.default_name(config), config, extra)


def run_search(config: cfgmod.Config | str | Path | None = None, out: str | Path = "runs", name: str | None = None,
               overrides: tuple[str, ...] | list[str] = (), resume: str | Path | None = None,
               log: Callable[[str], None] = print, progress: bool = False,
               probes: list[Probe] | None = None) -> Path:
    """Run one search as ``sharing-lab run-search`` does (one process) and return its run directory.

    ``config``: a :class:`~sharing_lab.config.Config`, a TOML file or preset name, or None for the embedded
    default; ``overrides`` are ``key=value`` strings as for ``--set``; ``resume`` continues a stopped run.
    """
    is_config = isinstance(config, cfgmod.Config)
    request = Request(None if is_config or config is None else str(config), tuple(overrides), str(out), name,
                      None if resume is None else str(resume), config if is_config else None)
    search, group, _ = start(request, log=log, progress=progress, probes=probes)
    try:
        run(search)
    finally:
        close_group(group)
    return search.run_dir
