"""Building a ground-truth table (``sharing-lab groundtruth build SPACE``): every architecture of a space trained from
scratch for every seed (:func:`sharing_lab.analysis.retrain.train_from_scratch`), written in the format of
:mod:`sharing_lab.truth.table`. Resumable: the file is rewritten atomically after every row, so an interrupted build
keeps what finished and continues; a build can also stop after a number of rows (a build in pieces)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from ..compute.runtime import resolve_device, torch_threads
from ..config import Config
from ..data.protocol import load_data
from ..errors import InputError
from ..space.population import member_chunks
from ..space.search_space import build_space
from ..truth.table import (
    TruthSpace,
    metadata,
    read_table_file,
    recipe,
    recipe_of,
    resolve_space,
    table_path,
    write_table_file,
)
from .retrain import train_from_scratch, train_population


def _train_rows(space: TruthSpace, archs: list[tuple[int, ...]], seed: int, threads: int | None,
                population: bool) -> list[dict]:
    """Train architectures of ``space`` with ``seed`` from scratch, as one population or one at a time (in a
    worker process when building with several jobs), and return their table rows."""
    config = space.config(seed)
    data = load_data(config.data.name, config.data.dir, seed, config.data.image_size, config.data.workers,
                     config.data.train_images)
    search_space = build_space(config, data.num_classes, data.in_channels, data.image_size)
    widths = [search_space.widths_of(arch) for arch in archs]
    device = resolve_device(config.device)
    start = time.perf_counter()
    with torch_threads(threads):
        if population:
            scores = train_population(search_space.layout, widths, config, data, device)
        else:
            scores = [train_from_scratch(search_space.layout, w, config, data, device) for w in widths]
    seconds = (time.perf_counter() - start) / len(archs)  # a population's wall time, shared by its members
    rows = []
    for arch, arch_widths, (val_acc, test_acc) in zip(archs, widths, scores):
        cost = search_space.cost(arch)
        rows.append({"widths": ",".join(map(str, arch_widths)), "seed": seed, "macs": cost.macs,
                     "params": cost.params, "val_acc": val_acc, "test_acc": test_acc, "train_s": seconds})
    return rows


def _units(todo: list[tuple[tuple[int, ...], int]], population: bool, size: int) -> list[tuple[int, list]]:
    """The work of a build: (seed, architectures) per population of at most ``size`` members (in seed order),
    or one architecture per unit when ``population`` is off."""
    if not population:
        return [(seed, [arch]) for arch, seed in todo]
    by_seed: dict[int, list[tuple[int, ...]]] = {}
    for arch, seed in todo:
        by_seed.setdefault(seed, []).append(arch)
    return [(seed, archs[start:start + size]) for seed, archs in by_seed.items()
            for start in range(0, len(archs), size)]


def build(space: str | TruthSpace, out: str | Path | None = None, progress: bool = True,
          log: Callable[[str], None] = print, limit: int | None = None, jobs: int = 1, population: bool = True,
          max_gb: float = 1.0) -> Path:
    """Train every architecture of ``space`` for every seed and write the table to ``out`` (default: the
    package's table). Resumable: rows already in ``out`` (same space and recipe) are kept and skipped; the file
    is rewritten after every finished unit. ``limit`` stops after that many new rows (a build in pieces).

    ``population`` (the default): the architectures of a seed are trained as one population
    (:func:`sharing_lab.analysis.retrain.train_population`; at most ``max_gb`` of activations each, so a large
    space is split), on the same batches, which pairs their comparisons; otherwise one at a time. ``jobs`` > 1
    runs that many units at once in worker processes of one torch thread each (at these sizes one thread per
    process loses nothing)."""
    space = resolve_space(space)
    path = Path(out) if out is not None else table_path(space.name)
    rows, wall_s = [], 0.0
    if path.exists():
        frame, meta = read_table_file(path, space)
        if recipe_of(meta) != recipe(space, population):
            found = (recipe_of(meta) or {}).get("training")
            built_alone = found == "one at a time" and population
            hint = " (it was built one at a time: add --one-at-a-time)" if built_alone else ""
            raise InputError(f"{path} was built with another training recipe{hint}; remove it or build elsewhere "
                             "(--out)")
        rows, wall_s = frame.to_dict("records"), float(meta.get("wall_s", 0.0))
    done = {(row["widths"], int(row["seed"])) for row in rows}
    base = space.config()
    shape = data_shape(base)
    search_space = build_space(base, *shape)
    todo = [(arch, seed) for seed in space.seeds for arch in search_space.enumerate()
            if (",".join(map(str, search_space.widths_of(arch))), seed) not in done]
    if limit is not None:
        todo = todo[:limit]
    every = [search_space.widths_of(arch) for arch in search_space.enumerate()]
    size = member_chunks(search_space.layout, every, base.retrain.batch_size, max_gb * 2**30)[0].stop
    units = _units(todo, population, size)
    how = f"populations of up to {size}" if population else "one network at a time"
    log(f"{space.name}: {len(done)} rows done, {len(todo)} to train ({search_space.size} architectures x "
        f"{len(space.seeds)} seeds; {how}, {jobs} job{'s' if jobs > 1 else ''})")
    bar = tqdm(total=len(todo), desc=f"groundtruth {space.name}", unit="net", disable=not progress)
    started = time.perf_counter()

    def finished(new: list[dict]) -> None:
        rows.extend(new)
        bar.update(len(new))
        write_table_file(path, rows, metadata(space, wall_s + time.perf_counter() - started, population))

    if jobs <= 1:
        for seed, archs in units:
            finished(_train_rows(space, archs, seed, None, population))
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_train_rows, space, archs, seed, 1, population) for seed, archs in units]
            for future in as_completed(futures):
                finished(future.result())
    bar.close()
    return path


def data_shape(config: Config) -> tuple[int, int, int]:
    """(classes, channels, image size) of ``config``'s data, which the search space is built for."""
    data = load_data(config.data.name, config.data.dir, config.seed, config.data.image_size, config.data.workers,
                     config.data.train_images)
    return data.num_classes, data.in_channels, data.image_size
