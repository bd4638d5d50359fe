"""Sweep files: a recipe of one's own from a TOML file's ``[sweep]`` table, and the ``[executor]`` table that says
where its runs go (``sharing-lab recipe SWEEP.toml``)."""

from __future__ import annotations

import itertools
import math
import tomllib
from pathlib import Path

from ..errors import InputError
from ..fileio import check_depth
from ..overrides import parse_override
from .spec import Job, Recipe, slug

MAX_JOBS = 10_000  # runs one sweep file may define


def _retrain_top(value: object, path: Path) -> int:
    """``retrain_top``: how many of a run's top-N architectures to retrain (a whole number, 0 to 1,000)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise InputError(f"sweep file {path}: retrain_top must be a whole number from 0 to 1000, got {value!r}")
    return value


def load_sweep(path: str | Path) -> Recipe:
    """A recipe from a TOML file's ``[sweep]`` table: ``name`` (default: the file's stem), ``config`` (a preset or
    TOML file, relative to the sweep file, for every run), ``set`` (overrides for every run), ``retrain_top``, and
    the runs as ``[sweep.grid]`` (key = list of values: one run per combination, named NAME-VALUE-VALUE…) and/or
    ``[[sweep.runs]]`` tables (``name``, ``set``)."""
    path = Path(path)
    try:
        text = path.read_text()
        check_depth(text, f"sweep file {path}")
        table = tomllib.loads(text).get("sweep")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read sweep file {path}: {error}") from None
    if not isinstance(table, dict):
        raise InputError(f"sweep file {path} has no [sweep] table")
    known = {"name", "config", "set", "retrain_top", "grid", "runs"}
    if set(table) - known:
        raise InputError(f"sweep file {path}: unknown key {sorted(set(table) - known)[0]!r}; known: "
                         f"{', '.join(sorted(known))}")
    name, common = str(table.get("name", path.stem)), table.get("set", [])
    config = table.get("config")
    if config is not None and (path.parent / str(config)).is_file():
        config = str(path.parent / str(config))
    grid, runs = table.get("grid", {}), table.get("runs", [])
    if not isinstance(common, list) or not isinstance(grid, dict) or not isinstance(runs, list):
        raise InputError(f"sweep file {path}: set must be a list, grid a table and runs a list of tables")
    recipe = Recipe(name, ())
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    count = (math.prod(len(v) for v in values) if grid else 0) + len(runs)
    if count > MAX_JOBS:
        raise InputError(f"sweep file {path} defines {count:,} runs; at most {MAX_JOBS:,} (split it into several "
                         "sweeps)")
    top = _retrain_top(table.get("retrain_top", 0), path)
    for combination in itertools.product(*values) if grid else ():
        label = "-".join(slug(str(v)) for v in combination)
        sets = [f"{key}={_toml(value)}" for key, value in zip(grid, combination)]
        recipe.jobs.append(Job(f"{name}-{label}", (*map(str, common), *sets), top, config))
    for run in runs:
        if not isinstance(run, dict) or "name" not in run:
            raise InputError(f"sweep file {path}: every [[sweep.runs]] needs a name")
        if not isinstance(run.get("set", []), list):
            raise InputError(f"sweep file {path}: run {run['name']!r}: set must be a list of key=value strings")
        recipe.jobs.append(Job(str(run["name"]), (*map(str, common), *map(str, run.get("set", []))),
                               _retrain_top(run.get("retrain_top", top), path), config))
    if not recipe.jobs:
        raise InputError(f"sweep file {path} defines no runs ([sweep.grid] or [[sweep.runs]])")
    for job in recipe.jobs:
        for text in job.overrides:
            parse_override(text)
    return recipe


def _toml(value) -> str:
    """A grid value as a ``--set`` TOML value."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    return repr(value)


def executor_table(path: str | Path) -> dict:
    """The ``[executor]`` table of a TOML file (a sweep file or ``--executor-config``; empty when it has none)."""
    try:
        text = Path(path).read_text()
        check_depth(text, f"executor file {path}")
        table = tomllib.loads(text).get("executor", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read {path} as TOML: {error}") from None
    if not isinstance(table, dict):
        raise InputError(f"{path}: executor must be a table ([executor])")
    return table
