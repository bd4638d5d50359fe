"""The sweep commands of ``sharing-lab``: ``runs`` (the runs of a sweep with their state and key results) and
``tensorboard`` (event files of finished runs); :mod:`sharing_lab.cli` adds these to its group."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import InputError
from ..runs import rundir
from ..runs.sweeps import STATES, find_run_dirs, list_runs
from ..runs.tensorboard import event_files, export_run
from .console import echo_json


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@click.command("runs")
@click.argument("sweep_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def runs_command(sweep_dir, as_json) -> None:
    """The runs under SWEEP_DIR: state (finished, running, stopped, diverged), epochs, the configuration keys that
    vary across the sweep, the last validation accuracy and Φ, and the exported architecture of finished runs."""
    if not Path(sweep_dir).exists():
        raise InputError(f"{sweep_dir} does not exist")
    rows = list_runs(sweep_dir)
    counts = {state: sum(row["state"] == state for row in rows) for state in STATES}
    if as_json:
        echo_json({"sweep": str(sweep_dir), "counts": counts, "runs": rows})
        return
    keys = list(rows[0]["config"]) if rows else []
    name_width = max(len(row["run"]) for row in rows)
    header = (f"{'run':<{name_width}}  {'state':<8}  {'epochs':>7}  " + "".join(f"{key:<16} " for key in keys) +
              f"{'val max':>7}  {'phi':>10}  exported (widths, MACs, test acc)")
    click.echo(header)
    for row in rows:
        exported = (f"{row['widths']}  {row['macs']:,}  {_number(row.get('test_acc'), '.3f')}"
                    if row["state"] == "finished" else row.get("diverged") or "")
        values = "".join(f"{str(row['config'][key]):<16} " for key in keys)
        click.echo(f"{row['run']:<{name_width}}  {row['state']:<8}  {row['epochs_done']:>3}/{row['epochs']:<3}  "
                   f"{values}{_number(row['val_acc_max'], '7.3f')}  {_number(row['phi'], '10.4g')}  {exported}")
    click.echo(", ".join(f"{counts[state]} {state}" for state in STATES))


@click.command("tensorboard")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write the events of each run into OUT/<run> (default: RUN/tensorboard).")
def tensorboard_command(paths, out_dir) -> None:
    """Write TensorBoard event files of the runs at or under PATHS (scalars, per-layer Φ, alignment and
    coupled-gradient norm, decision probabilities) from their Parquet records; nothing existing is overwritten."""
    runs = find_run_dirs(paths)
    if not runs:
        raise InputError(f"no runs (directories with {rundir.CONFIG}) under {', '.join(paths)}")
    targets = [Path(out_dir) / run.name if out_dir else run / rundir.TENSORBOARD for run in runs]
    if len(set(targets)) < len(targets):
        raise InputError("two runs have the same name; export them one at a time with their own --out")
    for target in targets:  # every target is checked before anything is written
        if event_files(target):
            raise InputError(f"{target} already holds TensorBoard event files (written live, or exported "
                             "before); remove them or export elsewhere with --out DIR")
    for run, target in zip(runs, targets):
        count = export_run(run, target)
        click.echo(f"{run}: {count} events in {target}")
    logdir = out_dir or os.path.commonpath([str(Path(path).resolve()) for path in paths])
    click.echo(f"view them: tensorboard --logdir {logdir}")


COMMANDS = (runs_command, tensorboard_command)
