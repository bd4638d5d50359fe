"""Starting or resuming a search run: the configuration, the run directory and the processes (DESIGN §4).

This is what ``sharing-lab run-search`` does once the command line is parsed. With several processes
(torchrun), rank 0 resolves the run directory and every rank learns the outcome, so a refusal ends every rank
with the same one line (printed once) and nothing is written twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import config as cfgmod
from . import rundir
from .distributed import Group, close_group, init_group
from .errors import InputError
from .evaluate import BN_EVALUATION
from .runtime import resolve_device
from .search import Search


@dataclass(frozen=True)
class Request:
    """A ``run-search`` invocation: a new run (``config_file``/``overrides``/``out``/``name``) or ``resume``."""

    config_file: str | None = None
    overrides: tuple[str, ...] = ()
    out: str = "runs"
    name: str | None = None
    resume: str | None = None


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
    config = cfgmod.load_toml(request.config_file) if request.config_file else cfgmod.Config()
    config = cfgmod.apply_overrides(config, overrides)
    cfgmod.check(config)
    return config, None


def start(request: Request, ranks: tuple[int, int, int] = (0, 1, 0), log: Callable[[str], None] = print,
          progress: bool = False) -> tuple[Search, Group, bool]:
    """Join the process group (``ranks`` = rank, world size, local rank), resolve the run and build its
    :class:`Search`; returns it with the group and whether the run directory is new (and may be removed if
    the search cannot start)."""
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
            search = Search(config, run_dir, log=log, progress=progress, group=group)
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
    extra = {"seed": config.seed, "device": str(resolve_device(device)), "bn_evaluation": BN_EVALUATION,
             "processes": group.world_size}
    return rundir.create(request.out, request.name or rundir.default_name(config), config, extra)
