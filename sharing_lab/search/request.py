"""A ``run-search`` request resolved before anything is made: the configuration of a new run, or of a stopped one
being resumed, and what a resume may change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import config as cfgmod
from ..errors import InputError
from ..extras import require
from ..runs import rundir
from .memory import check_memory


@dataclass(frozen=True)
class Request:
    """A ``run-search`` invocation: a new run (``config``: a :class:`~sharing_lab.config.Config`, a TOML file or
    a preset name, or None for the defaults; ``overrides``; ``out``; ``name``) or the ``resume`` of a run directory
    (``config`` then a file or preset read over the run's own configuration)."""

    config: cfgmod.Config | str | None = None
    overrides: tuple[str, ...] = ()
    out: str = "runs"
    name: str | None = None
    resume: str | None = None


def resolve(request: Request) -> tuple[cfgmod.Config, Path | None]:
    """The run's configuration, and its directory when resuming (None for a new run). Refuses, before anything
    is made or touched: a bad run name, options that a resume may not change (only a diverged run may change
    ``config.RESUME_CHANGEABLE``), a finished run, values :func:`~sharing_lab.config.check` refuses and (new
    runs) a supernet predicted to exceed ``runtime.max_supernet_gb``."""
    if request.resume:
        run_dir = Path(request.resume)
        saved, _ = rundir.read_config(run_dir)
        # Options given with --resume may repeat the run's own settings; only a diverged run may change the rates.
        wanted = cfgmod.resolve(request.config, request.overrides, base=saved)
        changed = cfgmod.training_differences(saved, wanted)  # logging.* may change
        fixed = [key for key in changed if key not in cfgmod.RESUME_CHANGEABLE]
        if fixed:
            raise InputError(f"--resume {run_dir}: the given options change {', '.join(fixed)} "
                             "from the run's config.json; resume without them")
        if changed and rundir.diverged_info(run_dir) is None:
            raise InputError(f"--resume {run_dir}: {', '.join(changed)} may change only when resuming a run "
                             "that diverged; resume without them")
        if "sharing.transition" in changed and not all(
                isinstance(c.sharing.transition, float) for c in (saved, wanted)):
            raise InputError(f"--resume {run_dir}: sharing.transition may change from one constant rate to another "
                             "only; resume without it")
        if (run_dir / rundir.SUMMARY).exists():
            raise InputError(f"run {run_dir} has already finished")
        check_extras(wanted)  # no memory prediction: the run was started, so its supernet fitted
        return wanted, run_dir
    if request.name is not None:
        rundir.check_name(request.name)
    config = cfgmod.resolve(request.config, request.overrides)
    check_memory(config)
    check_extras(config)
    return config, None


def check_extras(config: cfgmod.Config) -> None:
    """Refuse, before anything is made, options whose optional package is not installed
    (``logging.tensorboard`` needs tensorboard: ``sharing-lab[tensorboard]``)."""
    if config.logging.tensorboard:
        require("torch.utils.tensorboard", "logging.tensorboard")
