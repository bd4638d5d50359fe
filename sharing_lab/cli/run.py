"""The run commands of ``sharing-lab``: ``run-search`` (one search, or its resume), ``beam``, ``export`` and
``retrain``."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import click

from ..analysis.retrain import retrain_source
from ..compute.distributed import close_group
from ..compute.runtime import run_settings
from ..errors import InputError
from ..fileio import atomic_write_json
from ..runs import rundir
from ..runs.checkpoints import checkpoint_files
from ..runs.locking import locked, release
from ..runs.records import read_run_table
from ..search.checkpointing import restore
from ..search.controller import beam_search
from ..search.export import export_payload, load_export
from ..search.launch import start
from ..search.loop import run
from ..search.request import Request
from ..search.session import Search, open_search
from .console import echo_json, fail, log, progress


def draw_summary(run_dir: Path) -> Path | None:
    """The finished run's summary figure (:func:`sharing_lab.plots.summary.write_or_log`)."""
    from ..plots.summary import write_or_log  # matplotlib and seaborn: 0.7 s to import, paid by runs that draw

    return write_or_log(run_dir, log)


@click.command("run-search")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML configuration file.")
@click.option("--scheme", help="Sharing scheme: ordinal, independent, overlap:<alpha>, transitionary.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (TOML value).")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--name", help="Run name (default: model-data-scheme-seed-time).")
@click.option("--seed", type=int)
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--resume", "resume_dir", type=click.Path(), help="Continue the stopped run in this directory.")
def run_search(config_file, scheme, overrides, out, name, seed, device, resume_dir) -> None:
    """Run one channel number search (default: the embedded digits search, minutes on a CPU).

    Under torchrun (``torchrun --nproc_per_node=N -m sharing_lab.cli run-search …``) the N processes run one
    search with DistributedDataParallel; ``data.batch_size`` stays the global batch.
    """
    overrides = list(overrides)
    for flag, key in ((scheme, "sharing.scheme"), (seed, "seed"), (device, "device")):
        if flag is not None and flag != "":
            overrides.append(f"{key}={flag}")
    ranks = tuple(int(os.environ.get(key, default)) for key, default in
                  (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))  # set by torchrun
    request = Request(config_file, tuple(overrides), out, name, resume_dir)
    quiet = ranks[0] != 0
    try:
        search, group, _ = start(request, ranks, log=log, progress=progress())
    except InputError as error:
        if quiet:
            sys.exit(2)  # rank 0 says why
        raise error
    stop = {"requested": False}

    def request_stop(signum, frame) -> None:
        stop["requested"] = True
        if group.is_main:
            log("stop requested: finishing the current epoch, then writing a checkpoint")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    search_dir = search.run_dir
    try:
        with run_settings(search.runtime):
            summary = run(search, stop_requested=lambda: stop["requested"])
    except KeyboardInterrupt:
        if quiet:
            sys.exit(130)
        launcher = (f"torchrun --nproc_per_node={group.world_size} -m sharing_lab.cli" if group.active
                    else "sharing-lab")
        fail(f"stopped at epoch {search.state.epoch}; resume with: {launcher} run-search --resume {search_dir}", 130)
    except (InputError, OSError, MemoryError):
        if quiet:
            sys.exit(2)
        raise
    finally:
        search.writer.close()
        close_group(group)
        release(search_dir)
    if quiet:
        return
    figure = draw_summary(search_dir)
    exported = summary["exported"]
    click.echo(f"run directory: {search_dir}")
    click.echo(f"exported architecture: {summary['export_path']} (widths {exported['widths']}, "
               f"{exported['macs'] / 1e6:.3f}M MACs, val acc {exported['acc']:.3f})")
    if "groundtruth" in summary:
        truth = summary["groundtruth"]
        click.echo(f"ground truth ({truth['space']}): exported architecture ranks {truth['rank']} of "
                   f"{truth['architectures']}, test acc {truth['acc']:.3f}, regret {truth['regret_points']:.2f} "
                   f"points against {truth['oracle']} ({truth['oracle_acc']:.3f})")
    click.echo(f"records: {search_dir}/{{scalars,probs,archs,layers,pairs,space}}/*.parquet "
               "(read with sharing_lab.read_table)")
    if figure is not None:
        click.echo(f"summary figure: {figure}")
    click.echo(f"plot it: sharing-lab plot all {search_dir.parent}")


def _load_search(run_dir: str) -> Search:
    """The search of a run directory with its newest readable checkpoint loaded (refused in one line when it has
    none, when none is readable or safe, or when it does not fit the run's config.json)."""
    config, _ = rundir.read_config(run_dir)
    if not checkpoint_files(Path(run_dir)):
        raise InputError(f"run {run_dir} has no checkpoint yet")
    search = open_search(config, Path(run_dir), log=log)
    if restore(search.state, Path(run_dir), config, log) is None:
        raise InputError(f"run {run_dir} has no checkpoint yet")
    return search


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--top", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def beam(run_dir, top, as_json) -> None:
    """The top-N architectures of a run by the controller's sequence likelihood."""
    search = _load_search(run_dir)
    rows = []
    for rank, (arch, log_prob) in enumerate(beam_search(search.state.controller, top, search.flops_left)):
        widths = search.space.widths_of(arch)
        rows.append({"rank": rank, "widths": list(widths), "macs": search.space.macs(arch), "log_prob": log_prob})
    if as_json:
        echo_json({"run": str(run_dir), "top": rows})
        return
    for row in rows:
        click.echo(f"{row['rank']:>3}  log p {row['log_prob']:9.3f}  {row['macs'] / 1e6:9.3f}M MACs  "
                   f"{','.join(map(str, row['widths']))}")


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--rank", type=click.IntRange(min=0), help="Export the beam row of this rank instead of the pick.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write here (with --rank the default is RUN_DIR/arch-rank-K.json; arch.json is never rewritten).")
def export(run_dir, rank, out_file) -> None:
    """Write a run's chosen architecture (or its beam row of ``--rank``) as JSON for the plain-network builder.

    The file keeps every field of the run's ``arch.json`` (the ``data`` block among them) and replaces the
    architecture's own: widths, MACs, FLOPs, parameters, accuracies, log-probability and rank.
    """
    rundir.read_config(run_dir)
    layout, widths, payload = load_export(run_dir)
    if rank is not None:
        beams = read_run_table(run_dir, "archs").query("source == 'beam'")
        if "rank" not in beams or rank not in set(beams["rank"]):
            raise InputError(f"run {run_dir} has no beam row of rank {rank}")
        row = beams[beams["rank"] == rank].iloc[-1]
        widths = [int(w) for w in row["widths"].split(",")]
        scores = {key: float(row[key]) for key in ("acc", "test_acc", "log_prob")
                  if key in row and row[key] == row[key]}  # NaN (a column the row lacks) is left out
        kept = {k: v for k, v in payload.items() if k not in ("acc", "test_acc", "log_prob", "rank")}
        payload = {**kept, **export_payload(layout, widths, run=Path(run_dir).name, **scores, rank=rank)}
    if out_file is None and rank is None:  # the run's own arch.json already holds the pick: nothing to write
        target = Path(run_dir) / rundir.EXPORT
    else:
        target = Path(out_file) if out_file else Path(run_dir) / f"arch-rank-{rank}.json"
        if target.exists():  # the run's arch.json included
            raise InputError(f"{target} already exists")
        atomic_write_json(target, payload)
    click.echo(f"{target}: {payload['model']} widths {','.join(map(str, widths))}, {payload['macs']:,} MACs")


@click.command("retrain")
@click.argument("source", type=click.Path())
@click.option("--top", type=click.IntRange(min=1), help="Retrain the top-N beam architectures of a run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (retrain.*, runtime.*, device).")
@click.option("--out", default="runs", show_default=True, help="Where a new run is made for an ARCH_JSON source.")
@click.option("--name", help="Run name for an ARCH_JSON source.")
def retrain_command(source, top, overrides, out, name) -> None:
    """Train a searched architecture (RUN_DIR or ARCH_JSON) from scratch; record into the run's tables."""
    into_run = Path(source).is_dir() and (Path(source) / rundir.CONFIG).is_file()
    with locked(source) if into_run else contextlib.nullcontext():  # a second writer is refused
        run_dir = retrain_source(source, top, list(overrides), out, name, log=log, progress=progress())
    click.echo(f"records: {run_dir}/{{retrain,retrain_curves}}/*.parquet")


COMMANDS = (run_search, beam, export, retrain_command)
