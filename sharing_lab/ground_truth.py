"""Ground truth for a search space: every architecture trained from scratch (paper Section 5.3's retraining
recipe, ``config.retrain``), several seeds, evaluated on the validation and the test split (DESIGN §8).

The embedded analogue of NATS-Bench's size space: a table per space, shipped inside the package as Parquet
(``sharing_lab/tables/<space>.parquet``), one row per architecture and seed (``widths`` string, ``seed`` int64,
``macs``, ``params`` int64, ``val_acc``, ``test_acc`` float64, ``train_s``), the space's definition and the
training recipe in the file's metadata. :func:`groundtruth` reads it; :func:`build` (``sharing-lab groundtruth
build SPACE``) regenerates it, resumably: the file is rewritten atomically after every row, so an interrupted
build keeps what finished and continues. A space of one's own gets a table by adding a :class:`TruthSpace` to
:data:`SPACES` (or passing one to :func:`build`) and building it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from . import config as cfgmod
from .errors import InputError
from .fileio import atomic_write

FORMAT = 1
META_KEY = b"sharing_lab.groundtruth"
COLUMNS = {"widths": pa.string(), "seed": pa.int64(), "macs": pa.int64(), "params": pa.int64(),
           "val_acc": pa.float64(), "test_acc": pa.float64(), "train_s": pa.float64()}
KEY_FIELDS = ("model.name", "model.granularity", "model.widths", "model.multipliers", "data.name",
              "data.image_size")
RUNTIME_RECIPE = ("precision", "memory_format", "compile")  # the runtime settings that change what training computes


@dataclass(frozen=True)
class TruthSpace:
    """A search space with (or awaiting) a ground-truth table: the configuration keys that define it."""

    name: str
    overrides: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    description: str = ""
    path: str | None = None  # where its table lives; None: inside the package (sharing_lab/tables/<name>.parquet)

    def config(self, seed: int = 0) -> cfgmod.Config:
        return cfgmod.apply_overrides(cfgmod.Config(), [*self.overrides, f"seed={seed}"])

    def key(self) -> dict:
        """The values that a search's configuration must share for this table to be its ground truth."""
        return _key(self.config())


SPACES: dict[str, TruthSpace] = {
    "digits-resnet20-c1234": TruthSpace(
        "digits-resnet20-c1234",
        ("model.name=resnet20", "model.granularity=stage", "model.widths=[1, 2, 3, 4]", "data.name=digits",
         "data.image_size=none", "retrain.epochs=20"),  # retrain.epochs as the default, stated for the record
        # the spread grows as sqrt(seeds): 2.93x the mean standard error at 7 seeds, 4.39x at 16, 5.80x at 24
        seeds=tuple(range(24)),
        description="digits 8x8, ResNet-20, one decision per stage, candidates {1, 2, 3, 4}: 64 architectures, "
                    "each trained 20 epochs from scratch (batch 32, SGD 0.1 Nesterov, cosine), 24 seeds "
                    "(a build resumes where a table stops)"),
}


def _key(config: cfgmod.Config) -> dict:
    values = cfgmod.flat(config)
    return {field: values[field] for field in KEY_FIELDS}


def space_for(config: cfgmod.Config) -> TruthSpace | None:
    """The registered ground-truth space whose definition ``config`` shares, if any."""
    key = _key(config)
    return next((space for space in SPACES.values() if space.key() == key), None)


def table_path(name: str) -> Path:
    """Where the table of the space ``name`` lives: its ``path``, or the package's ``tables/`` folder."""
    space = SPACES.get(name)
    if space is not None and space.path is not None:
        return Path(space.path)
    return Path(str(resources.files("sharing_lab") / "tables" / f"{name}.parquet"))


def _recipe(space: TruthSpace) -> dict:
    config = space.config()
    runtime = asdict(config.runtime)
    return {"retrain": asdict(config.retrain), "runtime": {name: runtime[name] for name in RUNTIME_RECIPE}}


def _metadata(space: TruthSpace, wall_s: float) -> dict:
    return {"format": FORMAT, "space": space.name, "description": space.description, "key": space.key(),
            "seeds": list(space.seeds), "recipe": _recipe(space), "wall_s": wall_s}


def read_table_file(path: str | Path, space: TruthSpace | None = None) -> tuple[pd.DataFrame, dict]:
    """Rows and metadata of a ground-truth file; a corrupt file, or one of another space, is refused."""
    path = Path(path)
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except (OSError, pa.ArrowInvalid, KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not a readable ground-truth table ({type(error).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise InputError(f"{path}: unknown ground-truth format {found!r}")
    names = table.column_names
    missing = [c for c, kind in COLUMNS.items() if c not in names or table.schema.field(c).type != kind]
    if missing:
        raise InputError(f"{path}: ground-truth columns missing or of the wrong type: {', '.join(missing)}")
    if space is not None and (meta.get("space") != space.name or meta.get("key") != space.key()):
        raise InputError(f"{path} is the ground truth of {meta.get('space')!r}, not of {space.name!r}")
    return table.to_pandas(), meta


def groundtruth(space: str | TruthSpace) -> pd.DataFrame:
    """The ground-truth table of ``space`` (a name in :data:`SPACES` or a :class:`TruthSpace`) as shipped
    in the package: one row per architecture and seed."""
    space = _resolve(space)
    path = table_path(space.name)
    if not path.is_file():
        raise InputError(f"no ground-truth table for {space.name!r}; build it with: sharing-lab groundtruth build "
                         f"{space.name}")
    return read_table_file(path, space)[0]


def _resolve(space: str | TruthSpace) -> TruthSpace:
    if isinstance(space, TruthSpace):
        return space
    if space not in SPACES:
        raise InputError(f"unknown ground-truth space {space!r}; known: {', '.join(SPACES)}")
    return SPACES[space]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture: mean and standard error over seeds of the test and validation accuracy, the
    ground-truth rank (1 = best mean test accuracy), MACs and parameters."""
    grouped = rows.groupby("widths")
    frame = grouped.agg(macs=("macs", "first"), params=("params", "first"), seeds=("seed", "count"),
                        test_acc=("test_acc", "mean"), test_se=("test_acc", "sem"), val_acc=("val_acc", "mean"),
                        val_se=("val_acc", "sem")).reset_index()
    frame["rank"] = frame["test_acc"].rank(ascending=False, method="min").astype(int)
    return frame.sort_values("rank").reset_index(drop=True)


def spread(rows: pd.DataFrame) -> dict:
    """The spread requirement (DESIGN §8): best minus median mean test accuracy against the mean standard
    error over seeds; ranks mean something when the ratio is at least 5."""
    arch = summarise(rows)
    gap = float(arch["test_acc"].max() - arch["test_acc"].median())
    se = float(arch["test_se"].mean())
    return {"architectures": len(arch), "seeds": int(arch["seeds"].min()), "best": float(arch["test_acc"].max()),
            "median": float(arch["test_acc"].median()), "gap": gap, "mean_se": se,
            "ratio": gap / se if se > 0 else float("inf")}


def _train_row(space: TruthSpace, arch: tuple[int, ...], seed: int, threads: int | None) -> dict:
    """Train one architecture of ``space`` with ``seed`` from scratch (in a worker process when building with
    several jobs) and return its table row."""
    import torch

    from .data import load_data
    from .retrain import train_from_scratch
    from .runtime import resolve_device
    from .state import build_space

    if threads is not None:
        torch.set_num_threads(threads)
    config = space.config(seed)
    data = load_data(config.data.name, config.data.dir, seed, config.data.image_size, config.data.workers)
    search_space = build_space(config, data.num_classes, data.in_channels, data.image_size)
    widths = search_space.widths_of(arch)
    start = time.perf_counter()
    val_acc, test_acc = train_from_scratch(search_space.layout, widths, config, data, resolve_device(config.device))
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
    from .state import build_space

    space = _resolve(space)
    path = Path(out) if out is not None else table_path(space.name)
    rows, wall_s = [], 0.0
    if path.exists():
        frame, meta = read_table_file(path, space)
        if meta.get("recipe") != _recipe(space):
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
        _write(path, rows, _metadata(space, wall_s + time.perf_counter() - started))

    if jobs <= 1:
        for arch, seed in todo:
            finished(_train_row(space, arch, seed, None))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_train_row, space, arch, seed, 1) for arch, seed in todo]
            for future in as_completed(futures):
                finished(future.result())
    bar.close()
    return path


def _data_shape(config: cfgmod.Config) -> tuple[int, int, int]:
    from .data import load_data

    data = load_data(config.data.name, config.data.dir, config.seed, config.data.image_size, config.data.workers)
    return data.num_classes, data.in_channels, data.image_size


def _write(path: Path, rows: list[dict], meta: dict) -> None:
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values(["seed", "widths"], kind="stable")
    table = pa.Table.from_pandas(frame, schema=pa.schema(list(COLUMNS.items())), preserve_index=False)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
