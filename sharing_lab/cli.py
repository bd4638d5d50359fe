"""The ``sharing-lab`` command line (DESIGN §4). Bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from .cli_budget import COMMANDS as BUDGET_COMMANDS
from .cli_sweeps import COMMANDS as SWEEP_COMMANDS
from .cli_tools import COMMANDS
from .console import fail, log, progress
from .errors import InputError, describe_os_error, describe_out_of_memory, is_out_of_memory

if TYPE_CHECKING:
    from .loop import Search


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sharing-lab")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
              help="Import MODULE (a module name or a .py file) first: its models, datasets, schemes, probes.")
def cli(plugins) -> None:
    """Affine parameter sharing (APS) for neural channel number search."""
    from .plugins import load_entry_points, load_plugin

    load_entry_points()
    for plugin in plugins:
        load_plugin(plugin)


@cli.command("run-search")
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
    import os
    import signal

    from . import rundir
    from .distributed import close_group
    from .launch import Request, start, write_summary_figure
    from .loop import run

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
        rundir.release(search_dir)
    if quiet:
        return
    figure = write_summary_figure(search_dir, log=log)
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
    from pathlib import Path

    from . import rundir
    from .loop import open_search

    config, _ = rundir.read_config(run_dir)
    if not rundir.checkpoint_files(Path(run_dir)):
        raise InputError(f"run {run_dir} has no checkpoint yet")
    search = open_search(config, Path(run_dir), log=log)
    if rundir.restore(search.state, Path(run_dir), config, log) is None:
        raise InputError(f"run {run_dir} has no checkpoint yet")
    return search


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--top", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def beam(run_dir, top, as_json) -> None:
    """The top-N architectures of a run by the controller's sequence likelihood."""
    from .controller import beam_search

    search = _load_search(run_dir)
    rows = []
    for rank, (arch, log_prob) in enumerate(beam_search(search.state.controller, top, search.flops_left)):
        widths = search.space.widths_of(arch)
        rows.append({"rank": rank, "widths": list(widths), "macs": search.space.macs(arch), "log_prob": log_prob})
    if as_json:
        click.echo(json.dumps({"run": str(run_dir), "top": rows}))
        return
    for row in rows:
        click.echo(f"{row['rank']:>3}  log p {row['log_prob']:9.3f}  {row['macs'] / 1e6:9.3f}M MACs  "
                   f"{','.join(map(str, row['widths']))}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--rank", type=click.IntRange(min=0), help="Export the beam row of this rank instead of the pick.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write here (with --rank the default is RUN_DIR/arch-rank-K.json; arch.json is never rewritten).")
def export(run_dir, rank, out_file) -> None:
    """Write a run's chosen architecture (or its beam row of ``--rank``) as JSON for the plain-network builder.

    The file keeps every field of the run's ``arch.json`` (the ``data`` block among them) and replaces the
    architecture's own: widths, MACs, FLOPs, parameters, accuracies, log-probability and rank.
    """
    from pathlib import Path

    from .export import export_payload, load_export
    from .fileio import atomic_write_json
    from .records import read_table
    from .rundir import EXPORT, read_config

    read_config(run_dir)
    layout, widths, payload = load_export(run_dir)
    if rank is not None:
        beams = read_table(run_dir, "archs").query("source == 'beam'")
        if "rank" not in beams or rank not in set(beams["rank"]):
            raise InputError(f"run {run_dir} has no beam row of rank {rank}")
        row = beams[beams["rank"] == rank].iloc[-1]
        widths = [int(w) for w in row["widths"].split(",")]
        scores = {key: float(row[key]) for key in ("acc", "test_acc", "log_prob")
                  if key in row and row[key] == row[key]}  # NaN (a column the row lacks) is left out
        kept = {k: v for k, v in payload.items() if k not in ("acc", "test_acc", "log_prob", "rank")}
        payload = {**kept, **export_payload(layout, widths, run=Path(run_dir).name, **scores, rank=rank)}
    if out_file is None and rank is None:  # the run's own arch.json already holds the pick: nothing to write
        target = Path(run_dir) / EXPORT
    else:
        target = Path(out_file) if out_file else Path(run_dir) / f"arch-rank-{rank}.json"
        if target.exists():  # the run's arch.json included
            raise InputError(f"{target} already exists")
        atomic_write_json(target, payload)
    click.echo(f"{target}: {payload['model']} widths {','.join(map(str, widths))}, {payload['macs']:,} MACs")


@cli.command("retrain")
@click.argument("source", type=click.Path())
@click.option("--top", type=click.IntRange(min=1), help="Retrain the top-N beam architectures of a run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (retrain.*, runtime.*, device).")
@click.option("--out", default="runs", show_default=True, help="Where a new run is made for an ARCH_JSON source.")
@click.option("--name", help="Run name for an ARCH_JSON source.")
def retrain_command(source, top, overrides, out, name) -> None:
    """Train a searched architecture (RUN_DIR or ARCH_JSON) from scratch; record into the run's tables."""
    import contextlib
    from pathlib import Path

    from . import rundir
    from .retrain import retrain_source

    into_run = Path(source).is_dir() and (Path(source) / rundir.CONFIG).is_file()
    with rundir.locked(source) if into_run else contextlib.nullcontext():  # a second writer is refused
        run_dir = retrain_source(source, top, list(overrides), out, name, log=log, progress=progress())
    click.echo(f"records: {run_dir}/{{retrain,retrain_curves}}/*.parquet")


for _command in (*COMMANDS, *SWEEP_COMMANDS, *BUDGET_COMMANDS):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the click group, turning bad input, OS errors and memory exhaustion into one line and
    exit status 2."""
    try:
        code = cli.main(args=argv, prog_name="sharing-lab", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help())
        sys.exit(0)
    except click.ClickException as error:
        fail(error.format_message())
    except click.exceptions.Abort:
        fail("aborted", 130)
    except InputError as error:
        fail(str(error))
    except OSError as error:  # read-only directory, full disk, name too long: one line naming the path
        fail(describe_os_error(error))
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        fail(describe_out_of_memory(error))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
