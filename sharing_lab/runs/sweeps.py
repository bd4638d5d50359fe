"""A sweep: a directory of run directories (a recipe's ``--out``). Finding its runs, one table of all of them
with the configuration columns that vary across the sweep (:func:`read_table`, which reads one run's table too),
and each run's state and key results (``sharing-lab runs SWEEP_DIR``).

A run's state comes from what its directory holds: ``finished`` (``summary.json``), ``running`` (a process
holds ``run.lock``), ``diverged`` (``diverged.json``: training stopped, resumable at lower rates), else
``stopped`` (killed, preempted, stopped by a signal or failed: ``--resume`` or submitting the recipe again
continues it from its last checkpoint).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..config import flat
from ..errors import InputError
from ..fileio import read_json
from . import rundir
from .locking import lock_holder
from .records import read_run_table

STATES = ("finished", "running", "stopped", "diverged")
SEED_SUFFIX = re.compile(r"-s(\d+)$")


def arm_of(run_name: str) -> str:
    """The arm a run of a sweep belongs to: its name without the ``-s<seed>`` suffix that recipes give the runs
    repeated over seeds (``oit-ordinal-s3`` → ``oit-ordinal``)."""
    return SEED_SUFFIX.sub("", run_name)


def find_run_dirs(paths: Iterable[str | Path], max_depth: int = 3) -> list[Path]:
    """Run directories at or under ``paths``: a directory with ``config.json`` is a run; others are searched
    down to ``max_depth`` levels (hidden directories skipped). A path that does not exist is an error."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path} does not exist")
        _walk(path, 0, max_depth, found)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _walk(path: Path, depth: int, max_depth: int, found: list[Path]) -> None:
    if (path / rundir.CONFIG).is_file():
        found.append(path)
        return
    if depth >= max_depth or not path.is_dir():
        return
    for child in sorted(path.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            _walk(child, depth + 1, max_depth, found)


def _plain(value):
    """A configuration value as a table cell: lists comma-joined (as the ``widths`` columns), None as None."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value


def _configs(run_dirs: list[Path]) -> list[dict]:
    return [{k: _plain(v) for k, v in flat(rundir.read_config(run_dir)[0]).items()} for run_dir in run_dirs]


def _varying_keys(configs: list[dict]) -> list[str]:
    keys = list(configs[0]) if configs else []
    return [key for key in keys if len({repr(config.get(key)) for config in configs}) > 1]


def varying_config(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per run (``run``: its name, in the order given) and one column per configuration key
    (``section.field``, as ``--set`` spells it) whose value is not the same in every run; lists are
    comma-joined strings."""
    configs = _configs(run_dirs)
    keys = _varying_keys(configs)
    names = [str(rundir.read_config(run_dir)[1].get("run", run_dir.name)) for run_dir in run_dirs]
    return pd.DataFrame([{"run": name, **{key: config[key] for key in keys}} for name, config in
                         zip(names, configs)], columns=["run", *keys])


def read_table(run_dir: str | Path, name: str) -> pd.DataFrame:
    """The table ``name`` of a run as one pandas DataFrame (the union of its parts, in part order). Given a
    directory of runs (a sweep: no ``config.json`` of its own), the union of its runs' tables with the
    configuration columns that vary across the sweep (``sharing.scheme``, ``seed``, ``sharing.transition``,
    ``search.flops_target``, …; :func:`read_sweep_table`)."""
    if Path(run_dir).is_dir() and not (Path(run_dir) / rundir.CONFIG).is_file():
        return read_sweep_table(run_dir, name)
    return read_run_table(run_dir, name)


def read_sweep_table(path: str | Path, name: str) -> pd.DataFrame:
    """The table ``name`` of every run under ``path`` as one DataFrame (runs in directory order), with the
    configuration columns that vary across them (:func:`varying_config`) right after ``run``."""
    runs = find_run_dirs([path])
    if not runs:
        return read_run_table(path, name)
    configs = _configs(runs)
    keys = _varying_keys(configs)
    frames = []
    for run_dir, config in zip(runs, configs):
        frame = read_run_table(run_dir, name)
        for position, key in enumerate(keys, start=1):
            if key not in frame:
                frame.insert(min(position, len(frame.columns)), key, config[key] if len(frame) else None)
        frames.append(frame)
    kept = [frame for frame in frames if len(frame)]
    return pd.concat(kept, ignore_index=True) if kept else frames[0]


def run_state(run_dir: Path) -> str:
    """``finished``, ``running``, ``diverged`` or ``stopped`` (see the module's docstring)."""
    if (run_dir / rundir.SUMMARY).exists():
        return "finished"
    if lock_holder(run_dir) is not None:
        return "running"
    if rundir.diverged_info(run_dir) is not None:
        return "diverged"
    return "stopped"


def _last(scalars: pd.DataFrame, name: str) -> float | None:
    values = scalars.loc[scalars["name"] == name, "value"] if len(scalars) else []
    return float(values.iloc[-1]) if len(values) else None


def describe_run(run_dir: Path, varying: dict | None = None) -> dict:
    """A run's state and key results: epochs recorded of those configured, the last validation accuracies and
    Φ, and for a finished run the exported architecture (widths, MACs, val and test accuracy) and its
    ground-truth rank and regret when the space has a ground truth; ``config``: the ``varying`` keys' values."""
    config, payload = rundir.read_config(run_dir)
    scalars = read_run_table(run_dir, "scalars")
    epochs = int(pd.to_numeric(scalars["epoch"]).max()) + 1 if len(scalars) else 0
    row = {"run": str(payload.get("run", run_dir.name)), "path": str(run_dir), "state": run_state(run_dir),
           "epochs_done": epochs, "epochs": config.search.epochs, "scheme": config.sharing.scheme,
           "seed": config.seed, "val_acc_mean": _last(scalars, "val_acc_mean"),
           "val_acc_max": _last(scalars, "val_acc_max"), "phi": _last(scalars, "phi"), "config": varying or {}}
    if row["state"] == "finished":
        summary = read_json(run_dir / rundir.SUMMARY, "run summary")
        if not isinstance(summary, dict):
            raise InputError(f"{run_dir / rundir.SUMMARY} is corrupt: a JSON object expected, got "
                             f"{type(summary).__name__}")
        exported = summary.get("exported", {})
        exported = exported if isinstance(exported, dict) else {}
        row.update(epochs_done=summary.get("epochs", epochs), widths=_widths(exported.get("widths")),
                   macs=exported.get("macs"), acc=exported.get("acc"), test_acc=exported.get("test_acc"),
                   phi=summary.get("final_phi", row["phi"]))
        truth = summary.get("groundtruth")
        if truth:
            row.update(gt_rank=truth.get("rank"), gt_regret=truth.get("regret_points"))
    elif row["state"] == "diverged":
        row["diverged"] = (rundir.diverged_info(run_dir) or {}).get("message")
    elif row["state"] == "running":
        row["pid"] = lock_holder(run_dir)
    return {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in row.items()}


def _widths(value) -> str | None:
    return ",".join(map(str, value)) if isinstance(value, list) else value


def list_runs(path: str | Path) -> list[dict]:
    """:func:`describe_run` of every run under ``path`` (a sweep directory or one run)."""
    runs = find_run_dirs([path])
    if not runs:
        raise InputError(f"no runs (directories with {rundir.CONFIG}) under {path}")
    varying = varying_config(runs).drop(columns="run")
    return [describe_run(run_dir, {key: _cell(value) for key, value in varying.iloc[index].items()})
            for index, run_dir in enumerate(runs)]


def _cell(value):
    """A pandas cell as a JSON value (numpy scalars as Python numbers, NaN as None)."""
    if hasattr(value, "item"):
        value = value.item()
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
