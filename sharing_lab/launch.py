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
from .extras import require
from .layout import Channels, Layout, build_layout
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
    """The run's configuration, and its directory when resuming (None for a new run). Refuses, before anything
    is made or touched: a bad run name, options that a resume may not change (only a diverged run may change
    ``config.RESUME_CHANGEABLE``), a finished run, values :func:`~sharing_lab.config.check` refuses and (new
    runs) a supernet predicted to exceed ``runtime.max_supernet_gb``."""
    overrides = list(request.overrides)
    if request.resume:
        run_dir = Path(request.resume)
        saved, _ = rundir.read_config(run_dir)
        # Options given with --resume may repeat the run's own settings; only a diverged run may change the rates.
        given = cfgmod.load_toml(request.config_file, base=saved) if request.config_file else saved
        wanted = cfgmod.apply_overrides(given, overrides)
        changed = cfgmod.training_differences(saved, wanted)  # logging.* may change
        fixed = [key for key in changed if key not in cfgmod.RESUME_CHANGEABLE]
        if fixed:
            raise InputError(f"--resume {run_dir}: the given options change {', '.join(fixed)} "
                             "from the run's config.json; resume without them")
        if changed and rundir.diverged_info(run_dir) is None:
            raise InputError(f"--resume {run_dir}: {', '.join(changed)} may change only when resuming a run "
                             "that diverged; resume without them")
        if (run_dir / rundir.SUMMARY).exists():
            raise InputError(f"run {run_dir} has already finished")
        cfgmod.check(wanted)  # no memory prediction: the run was started, so its supernet fitted
        check_extras(wanted)
        return wanted, run_dir
    if request.name is not None:
        rundir.check_name(request.name)
    if request.config is not None:
        config = request.config
    else:
        config = cfgmod.load_toml(request.config_file) if request.config_file else cfgmod.Config()
    config = cfgmod.apply_overrides(config, overrides)
    cfgmod.check(config)
    check_memory(config)
    check_extras(config)
    return config, None


def check_extras(config: cfgmod.Config) -> None:
    """Refuse, before anything is made, options whose optional package is not installed
    (``logging.tensorboard`` needs tensorboard: ``sharing-lab[tensorboard]``)."""
    if config.logging.tensorboard:
        require("torch.utils.tensorboard", "logging.tensorboard")


def supernet_size(layout: Layout, affine: bool = False) -> tuple[int, int]:
    """(parameters, floating buffers) of the APS supernet of ``layout``, counted without building it: per APS
    layer the meta-weight and one BN per output candidate (with weight and bias when ``affine``), per side one
    transform matrix (meta width × width) per candidate; the classifier's weight, bias and transforms."""
    decisions = layout.decisions

    def side(channels: Channels) -> tuple[int, tuple[int, ...]]:  # (meta width, candidate widths)
        if channels.decision is None:
            return channels.fixed, (channels.fixed,)
        decision = decisions[channels.decision]
        return decision.meta_width, tuple(decision.candidates)

    def transforms(meta: int, widths: tuple[int, ...]) -> int:
        return sum(meta * width for width in widths)

    params = buffers = 0
    convs = [(c.outputs, None if c.depthwise else c.inputs, c.kernel) for c in layout.convs()]
    convs += [(b.outputs, b.inputs, 1) for b in layout.blocks if b.projection_possible()]
    for outputs, inputs, kernel in convs:
        out_meta, out_widths = side(outputs)
        in_meta, in_widths = side(inputs) if inputs is not None else (1, ())
        params += out_meta * in_meta * kernel * kernel + (2 * sum(out_widths) if affine else 0)
        buffers += transforms(out_meta, out_widths) + transforms(in_meta, in_widths) + 2 * sum(out_widths)
    in_meta, in_widths = side(layout.classifier_in)
    params += layout.num_classes * in_meta + layout.num_classes
    buffers += transforms(in_meta, in_widths) + layout.num_classes ** 2
    return params, buffers


def predicted_bytes(config: cfgmod.Config) -> int:
    """Bytes the supernet of ``config`` needs on its device, predicted from the layout (float32 parameters with
    their gradients and momentum, transforms and BN statistics; activations not counted). The data's classes
    and channels are not known yet: the model's defaults stand in (they only change the stem and classifier)."""
    model = config.model
    meta = int(model.meta) if isinstance(model.meta, int) or model.meta.isdigit() else model.meta
    layout = build_layout(model.name, model.granularity, model.widths if model.multipliers is None else None,
                          model.multipliers, meta)
    params, buffers = supernet_size(layout, affine=model.bn == "per_candidate_affine")
    return 4 * (3 * params + buffers)


def check_memory(config: cfgmod.Config) -> None:
    """Refuse a search whose supernet is predicted (:func:`predicted_bytes`) to exceed
    ``runtime.max_supernet_gb``, before anything is allocated or made on disk."""
    needed, limit = predicted_bytes(config), config.runtime.max_supernet_gb
    if needed > limit * 2**30:
        raise InputError(f"the supernet of this configuration needs about {needed / 2**30:.3g} GB (parameters, "
                         f"gradients, momentum, transforms), more than runtime.max_supernet_gb = {limit:g}; use "
                         "smaller model.widths or raise runtime.max_supernet_gb")


def start(request: Request, ranks: tuple[int, int, int] = (0, 1, 0), log: Callable[[str], None] = print,
          progress: bool = False, probes: list[Probe] | None = None) -> tuple[Search, Group, bool]:
    """Join the process group (``ranks`` = rank, world size, local rank), resolve the run and open its
    :class:`~sharing_lab.loop.Search`; returns it with the group and whether the run directory is new (it is
    removed again if the search cannot start). Rank 0 holds the run directory's lock (:func:`sharing_lab.rundir.lock`)
    from here on: give it back with :func:`sharing_lab.rundir.release` (or let the process end)."""
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
                from .tensorboard import EventSink

                search.writer.sinks.append(EventSink(run_dir / rundir.TENSORBOARD))
            if search.device.type == "cuda":  # a few hundred (width, stride) shapes, each tuned once
                torch.backends.cudnn.benchmark = True
        except BaseException:
            if group.is_main:
                rundir.release(run_dir)
            if created and group.is_main:
                shutil.rmtree(run_dir, ignore_errors=True)  # only the directory this call just made
            raise
    except BaseException:
        close_group(group)
        raise
    return search, group, created


def _make_run_dir(request: Request, config: cfgmod.Config, run_dir: Path | None, group: Group, device: str) -> Path:
    """The run directory, made (new run) or as given (resume), locked by this process."""
    if run_dir is None:
        extra = {"seed": config.seed, "device": str(resolve_device(device)),
                 "bn_evaluation": config.search.bn_evaluation, "processes": group.world_size}
        run_dir = rundir.create(request.out, request.name or rundir.default_name(config), config, extra)
    rundir.lock(run_dir)
    return run_dir


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
        search.writer.close()
        close_group(group)
        rundir.release(search.run_dir)
    if group.is_main:
        path = write_summary_figure(search.run_dir, log)
        if path is not None:
            log(f"summary figure: {path}")
    return search.run_dir


def write_summary_figure(run_dir: Path, log: Callable[[str], None] = print) -> Path | None:
    """Draw the finished run's one-page summary (:mod:`sharing_lab.plots.summary`) into ``RUN/summary.png``; a
    figure that cannot be drawn is reported in one line and leaves the finished search as it is."""
    from .plots import summary

    try:
        path = summary.write(run_dir)[0]
    except Exception as error:  # noqa: BLE001 - the search is done; a plotting failure must not undo it
        log(f"the summary figure could not be drawn: {error}")
        return None
    return path
