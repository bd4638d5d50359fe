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
from ..space.search_space import build_space
from ..truth.table import TruthSpace, metadata, read_table_file, recipe, resolve_space, table_path, write_table_file
from .retrain import train_from_scratch


def _train_row(space: TruthSpace, arch: tuple[int, ...], seed: int, threads: int | None) -> dict:
    """Train one architecture of ``space`` with ``seed`` from scratch (in a worker process when building with
    several jobs) and return its table row."""
    config = space.config(seed)
    data = load_data(config.data.name, config.data.dir, seed, config.data.image_size, config.data.workers)
    search_space = build_space(config, data.num_classes, data.in_channels, data.image_size)
    widths = search_space.widths_of(arch)
    start = time.perf_counter()
    with torch_threads(threads):
        val_acc, test_acc = train_from_scratch(search_space.layout, widths, config, data,
                                               resolve_device(config.device))
    cost = search_space.cost(arch)
    return {"widths": ",".join(map(str, widths)), "seed": seed, "macs": cost.macs, "params": cost.params,
            "val_acc": val_acc, "test_acc": test_acc, "train_s": time.perf_counter() - start}


def build(space: str | TruthSpace, out: str | Path | None = None, progress: bool = True,
          log: Callable[[str], None] = print, limit: int | None = None, jobs: int = 1) -> Path:
    """Train every architecture of ``space`` for every seed and write the table to ``out`` (default: the
    package's table). Resumable: rows already in ``out`` (same space and recipe) are kept and skipped; the file
    is rewritten after every finished row. ``limit`` stops after that many new rows (a build in pieces);
    ``jobs`` > 1 trains that many architectures at once in worker processes of one torch thread each (the
    small networks are bound by per-op overhead, so one thread per process loses nothing)."""
    space = resolve_space(space)
    path = Path(out) if out is not None else table_path(space.name)
    rows, wall_s = [], 0.0
    if path.exists():
        frame, meta = read_table_file(path, space)
        if meta.get("recipe") != recipe(space):
            raise InputError(f"{path} was built with another training recipe; remove it or build elsewhere (--out)")
        rows, wall_s = frame.to_dict("records"), float(meta.get("wall_s", 0.0))
    done = {(row["widths"], int(row["seed"])) for row in rows}
    base = space.config()
    shape = _data_shape(base)
    search_space = build_space(base, *shape)
    todo = [(arch, seed) for seed in space.seeds for arch in search_space.enumerate()
            if (",".join(map(str, search_space.widths_of(arch))), seed) not in done]
    if limit is not None:
        todo = todo[:limit]
    log(f"{space.name}: {len(done)} rows done, {len(todo)} to train ({search_space.size} architectures x "
        f"{len(space.seeds)} seeds, {jobs} job{'s' if jobs > 1 else ''})")
    bar = tqdm(total=len(todo), desc=f"groundtruth {space.name}", unit="net", disable=not progress)
    started = time.perf_counter()

    def finished(row: dict) -> None:
        rows.append(row)
        bar.update()
        write_table_file(path, rows, metadata(space, wall_s + time.perf_counter() - started))

    if jobs <= 1:
        for arch, seed in todo:
            finished(_train_row(space, arch, seed, None))
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_train_row, space, arch, seed, 1) for arch, seed in todo]
            for future in as_completed(futures):
                finished(future.result())
    bar.close()
    return path


def _data_shape(config: Config) -> tuple[int, int, int]:
    data = load_data(config.data.name, config.data.dir, config.seed, config.data.image_size, config.data.workers)
    return data.num_classes, data.in_channels, data.image_size
