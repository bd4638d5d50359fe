"""Ground truth for a search space: every architecture trained from scratch (paper Section 5.3's retraining
recipe, ``config.retrain``), several seeds, evaluated on the validation and the test split (DESIGN §8).

The embedded analogue of NATS-Bench's size space: a table per space, shipped inside the package as Parquet
(``sharing_lab/truth/tables/<space>.parquet``), one row per architecture and seed (``widths`` string, ``seed`` int64,
``macs``, ``params`` int64, ``val_acc``, ``test_acc`` float64, ``train_s``), the space's definition and the
training recipe in the file's metadata. :func:`groundtruth` reads it; :mod:`sharing_lab.analysis.truth_build`
(``sharing-lab groundtruth build SPACE``) builds it. A space of one's own gets a table by adding a
:class:`TruthSpace` to :data:`SPACES` (or passing one to the build) and building it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import config as cfgmod
from ..errors import InputError
from ..fileio import atomic_write

FORMAT = 1
META_KEY = b"sharing_lab.groundtruth"
COLUMNS = {"widths": pa.string(), "seed": pa.int64(), "macs": pa.int64(), "params": pa.int64(),
           "val_acc": pa.float64(), "test_acc": pa.float64(), "train_s": pa.float64()}
KEY_FIELDS = ("model.name", "model.granularity", "model.widths", "model.multipliers", "data.name",
              "data.image_size")
# part of a space's identity only when set (the tables built before them keep their keys)
OPTIONAL_KEY_FIELDS = ("data.train_images",)
RUNTIME_RECIPE = ("precision", "memory_format", "compile")  # the runtime settings that change what training computes


@dataclass(frozen=True)
class TruthSpace:
    """A search space with (or awaiting) a ground-truth table: the configuration keys that define it."""

    name: str
    overrides: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    description: str = ""
    path: str | None = None  # where its table lives; None: inside the package (sharing_lab/tables/<name>.parquet)
    source: str | None = None  # a published benchmark the table is imported from (its file stays the user's)
    target: float | None = None  # FLOPs target (MACs) of its within-target figures; None: half the widest's

    def config(self, seed: int = 0) -> cfgmod.Config:
        return cfgmod.resolve(None, [*self.overrides, f"seed={seed}"])

    def key(self) -> dict:
        """The values that a search's configuration must share for this table to be its ground truth."""
        return dict(_space_key(self))


# ResNet-20 with one decision per stage on Fashion-MNIST 14x14 (a fixed 10,000 training images), retrained 10 epochs
FASHION_MNIST_STAGES = ("model.name=resnet20", "model.granularity=stage", "data.name=fashion-mnist",
                        "data.image_size=14", "data.train_images=10000", "retrain.epochs=10", "retrain.batch_size=128")

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
    "fashion-mnist-resnet20-x124": TruthSpace(
        "fashion-mnist-resnet20-x124",
        (*FASHION_MNIST_STAGES, "model.multipliers=[0.0625, 0.125, 0.25]"),
        seeds=tuple(range(20)),
        # 52% of the widest's 538,160 MACs: at exactly half the largest architecture within it (2,8,8) is also the
        # best, so a search could meet it by taking the most MACs; at 2.8e5 2,4,16 and 4,4,8 enter and it cannot
        target=2.8e5,
        description="Fashion-MNIST 14x14 (a fixed stratified 10,000 of the training images; the official 10,000 test "
                    "images), ResNet-20, one decision per stage, candidates {1, 2, 4}/16 x the base widths 16/32/64: "
                    "27 architectures, each trained 10 epochs from scratch (batch 128, SGD 0.1 Nesterov, cosine), a "
                    "seed's architectures as one population, 20 seeds (built in resumable pieces)"),
    # the first choice, stopped at six seeds: its widest candidate saturates (docs/how-to/datasets.md)
    "fashion-mnist-resnet20-x1248": TruthSpace(
        "fashion-mnist-resnet20-x1248",
        (*FASHION_MNIST_STAGES, "model.multipliers=[0.0625, 0.125, 0.25, 0.5]"),
        seeds=tuple(range(6)),
        description="Fashion-MNIST 14x14 as fashion-mnist-resnet20-x124, candidates {1, 2, 4, 8}/16 x the base "
                    "widths 16/32/64: 64 architectures, each trained 10 epochs from scratch, a seed's architectures "
                    "as one population, 6 seeds (stopped there: its top is flat, the top-two gaps of stages 2 and 3 "
                    "are 0.10 and 0.05 points)"),
    **{f"{model}-cifar10": TruthSpace(
        f"{model}-cifar10",
        (f"model.name={model}", "model.granularity=residual", "model.multipliers=[0.25, 0.5, 0.75, 1.0]",
         "data.name=cifar10", "data.image_size=none",
         "retrain.epochs=60", "retrain.batch_size=256", "retrain.nesterov=false"),
        seeds=(0, 1, 2), source="channel-bench-macro",
        description=f"Channel-Bench-Macro's {kind} space on CIFAR-10 (Su et al., BCNet, CVPR 2021): 7 decisions of "
                    "{0.25, 0.5, 0.75, 1} x the layer's maximum width, 16,384 architectures, each trained 60 epochs "
                    "from scratch, 3 seeds; imported from the user's copy of the benchmark's file")
       for model, kind in (("cbm-resnet", "ResNet"), ("cbm-mobilenet", "MobileNet"))},
}


@functools.cache
def _space_key(space: TruthSpace) -> tuple:
    return tuple(_key(space.config()).items())


def _key(config: cfgmod.Config) -> dict:
    values = cfgmod.flat(config)
    key = {field: values[field] for field in KEY_FIELDS}
    if key["model.multipliers"] is not None:  # multipliers take precedence: the widths are unused
        key["model.widths"] = None
    key.update({field: values[field] for field in OPTIONAL_KEY_FIELDS if values[field] is not None})
    return key


def space_for(config: cfgmod.Config) -> TruthSpace | None:
    """The registered ground-truth space whose definition ``config`` shares, if any."""
    key = _key(config)
    return next((space for space in SPACES.values() if space.key() == key), None)


IMPORTED_DIR = "sharing-lab-groundtruth"  # where an imported table lives inside the data directory


def table_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where the table of the space ``name`` lives: its ``path``, the package's ``tables/`` folder, or, for a
    table imported from a published benchmark, ``<data_dir>/sharing-lab-groundtruth/`` (the user's copy of the
    benchmark is not ours to ship)."""
    space = SPACES.get(name)
    if space is not None and space.path is not None:
        return Path(space.path)
    if space is not None and space.source is not None:
        if data_dir is None:
            raise InputError(f"the ground truth of {name!r} is imported into the data directory: name it "
                             "(data.dir, or --data-dir)")
        return Path(data_dir) / IMPORTED_DIR / f"{name}.parquet"
    return Path(str(resources.files("sharing_lab.truth") / "tables" / f"{name}.parquet"))


def table_present(space: TruthSpace, data_dir: str | Path | None) -> bool:
    """Whether the table of ``space`` exists (an imported one in ``data_dir``; False without a data directory)."""
    if space.source is not None and space.path is None and data_dir is None:
        return False
    return table_path(space.name, data_dir).is_file()


def recipe(space: TruthSpace, population: bool = True) -> dict:
    """The training recipe a table of ``space`` is built with (its metadata's ``recipe``): the retraining
    settings, the runtime settings that change what training computes, and how the networks were trained
    (``training``: the architectures of a seed as one population, on the same batches, or one at a time; a table
    of format 1 without the key was built one at a time)."""
    config = space.config()
    runtime = asdict(config.runtime)
    return {"retrain": asdict(config.retrain), "runtime": {name: runtime[name] for name in RUNTIME_RECIPE},
            "training": "population per seed" if population else "one at a time"}


def recipe_of(meta: dict) -> dict | None:
    """The recipe a table's metadata states (a table of format 1 without ``training`` was built one at a time)."""
    found = meta.get("recipe")
    return {"training": "one at a time", **found} if isinstance(found, dict) else found


def metadata(space: TruthSpace, wall_s: float, population: bool = True) -> dict:
    """The metadata a table of ``space`` carries: format, space, definition, seeds, recipe, wall time."""
    return {"format": FORMAT, "space": space.name, "description": space.description, "key": space.key(),
            "seeds": list(space.seeds), "recipe": recipe(space, population), "wall_s": wall_s}


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


def groundtruth(space: str | TruthSpace, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The ground-truth table of ``space`` (a name in :data:`SPACES` or a :class:`TruthSpace`) as shipped
    in the package (or imported into ``data_dir``): one row per architecture and seed."""
    space = resolve_space(space)
    path = table_path(space.name, data_dir)
    if not path.is_file():
        how = (f"import it with: sharing-lab groundtruth import {space.source} FILE --space {space.name} --data-dir "
               f"DIR" if space.source is not None else f"build it with: sharing-lab groundtruth build {space.name}")
        raise InputError(f"no ground-truth table for {space.name!r} at {path}; {how}")
    return read_table_file(path, space)[0]


def resolve_space(space: str | TruthSpace) -> TruthSpace:
    """The :class:`TruthSpace` named ``space`` (or ``space`` itself)."""
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


def write_table_file(path: Path, rows: list[dict], meta: dict, extra: dict[str, pa.DataType] | None = None) -> None:
    """Write a ground-truth file (rows sorted by seed and widths, ``meta`` in its schema metadata) atomically;
    ``extra`` columns (an imported benchmark's own figures) follow the standard ones."""
    columns = {**COLUMNS, **(extra or {})}
    frame = pd.DataFrame(rows, columns=list(columns)).sort_values(["seed", "widths"], kind="stable")
    table = pa.Table.from_pandas(frame, schema=pa.schema(list(columns.items())), preserve_index=False)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
