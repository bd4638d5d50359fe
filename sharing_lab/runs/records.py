"""The Parquet records of a run (DESIGN §5): one directory per table, each holding whole part files.

A part is written to a temporary name and renamed, so a finished part is always complete and a killed run
loses at most the rows not yet flushed. Parts are numbered by flush; a resumed run drops the parts written
after its checkpoint (:meth:`RecordWriter.truncate`), so no row is duplicated.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InputError
from ..fileio import atomic_write

SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    "scalars": {"step": pa.int64(), "epoch": pa.int64(), "name": pa.string(), "value": pa.float64()},
    "layers": {"step": pa.int64(), "epoch": pa.int64(), "layer": pa.int64(), "phi": pa.float64(),
               "cos_align": pa.float64(), "coupled_norm": pa.float64()},
    "probs": {"step": pa.int64(), "epoch": pa.int64(), "layer": pa.int64(), "choice": pa.int64(),
              "width": pa.int64(), "prob": pa.float64()},
    # ``source``: sample (evaluated during the search) or beam (the final top-N); retraining has its own table
    "archs": {"epoch": pa.int64(), "source": pa.string(), "widths": pa.string(), "macs": pa.int64(),
              "log_prob": pa.float64(), "acc": pa.float64()},
    "pairs": {"step": pa.int64(), "epoch": pa.int64(), "layer": pa.int64(), "a": pa.int64(), "b": pa.int64(),
              "phi_pair": pa.float64(), "cos": pa.float64()},
    # Retraining from scratch (sharing_lab.analysis.retrain): one row per retrained architecture (``epoch``: epochs
    # trained; ``rank``: its beam rank, or 0), and its per-epoch curves (``name``: train_loss, val_acc).
    "retrain": {"epoch": pa.int64(), "widths": pa.string(), "macs": pa.int64(), "params": pa.int64(),
                "log_prob": pa.float64(), "rank": pa.int64(), "val_acc": pa.float64(), "test_acc": pa.float64(),
                "seed": pa.int64()},
    "retrain_curves": {"step": pa.int64(), "epoch": pa.int64(), "widths": pa.string(), "name": pa.string(),
                       "value": pa.float64()},
    # Whole-space scoring on a space with a ground truth (sharing_lab.truth.scoring): every architecture per
    # evaluation, its supernet validation accuracy and the controller's exact probability.
    "space": {"step": pa.int64(), "epoch": pa.int64(), "widths": pa.string(), "supernet_acc": pa.float64(),
              "prob": pa.float64()},
}


# Columns some rows of a table carry; every part gets them (null where absent) so that readers which take the
# schema from one part (``pd.read_parquet(dir)``, DuckDB, polars) see every column.
OPTIONAL: dict[str, dict[str, pa.DataType]] = {
    "archs": {"rank": pa.int64(), "test_acc": pa.float64(), "params": pa.int64(), "gt_rank": pa.int64(),
              "gt_acc": pa.float64(), "gt_regret": pa.float64()},
    "layers": {"phi_code": pa.float64(), "name": pa.string()},
}


PART = re.compile(r"part-(\d+)\.parquet")
WIDTHS = r"^\d+(,\d+)*$"


def part_number(path: Path) -> int | None:
    """The number of a record part (``part-000012.parquet`` → 12); None for a file of another name (not ours)."""
    found = PART.fullmatch(path.name)
    return int(found.group(1)) if found else None


def part_files(table_dir: Path) -> list[Path]:
    """The record parts of one table folder, in part order (other files, and links, are not the run's)."""
    if not table_dir.is_dir() or table_dir.is_symlink():
        return []
    parts = [path for path in table_dir.iterdir() if part_number(path) is not None and not path.is_symlink()]
    return sorted(parts, key=part_number)


def check_part(table: pa.Table, name: str, part: Path) -> None:
    """Refuse (naming the file) a part of a known table that lacks a column of its schema, or whose integer
    columns are not whole numbers or whose ``widths`` are not comma-separated whole numbers. Checked on the Arrow
    table: a part written by the toolkit passes on its column types alone."""
    schema = SCHEMAS.get(name)
    if schema is None or table.num_rows == 0:
        return
    missing = [column for column in schema if column not in table.column_names]
    if missing:
        raise InputError(f"record file {part} lacks the column(s) {', '.join(missing)} of the {name} table")
    for column, kind in schema.items():
        found = table.schema.field(column).type
        if pa.types.is_integer(kind) and not pa.types.is_integer(found):
            numbers = pd.to_numeric(table.column(column).to_pandas(), errors="coerce")
            if numbers.isna().any() or not (numbers == numbers.round()).all():
                raise InputError(f"record file {part}: column {column} must hold whole numbers")
        elif column == "widths" and not (pa.types.is_string(found) and pc.all(
                pc.match_substring_regex(table.column(column), WIDTHS), skip_nulls=False).as_py()):
            raise InputError(f"record file {part}: column widths must hold comma-separated whole numbers")


class RecordWriter:
    """Buffers rows per table and writes them as part files ``<run>/<table>/part-<NNNNNN>.parquet``."""

    def __init__(self, run_dir: str | Path, run_name: str, next_part: int = 0) -> None:
        self.run_dir, self.run_name, self.next_part = Path(run_dir), run_name, next_part
        self.buffers: dict[str, list[dict]] = {}
        self.sinks: list = []  # objects with write(table, rows) and close(), given each part once it is written

    def add(self, table: str, rows: list[dict]) -> None:
        """Queue rows (dicts) for ``table``; any table name works, the tables of DESIGN §5 get their schema."""
        self.buffers.setdefault(table, []).extend(rows)

    def flush(self) -> int:
        """Write every non-empty buffer as one part file; returns the number of the next part."""
        for table, rows in self.buffers.items():
            if rows:
                self._write(table, rows, self.next_part)
                for sink in self.sinks:
                    sink.write(table, rows)
        self.buffers = {}
        self.next_part += 1
        return self.next_part

    def close(self) -> None:
        """Close the sinks (the records themselves need no closing: every part is a whole file)."""
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def _write(self, table: str, rows: list[dict], part: int) -> None:
        frame = pd.DataFrame(rows)
        frame.insert(0, "run", self.run_name)
        types = {**SCHEMAS.get(table, {}), **OPTIONAL.get(table, {})}
        for column in OPTIONAL.get(table, {}):
            if column not in frame:
                frame[column] = None
        fields = [pa.field("run", pa.string())]
        for column in frame.columns[1:]:
            fields.append(pa.field(column, types[column]) if column in types else None)
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        fields = [f if f is not None else arrow.schema.field(i) for i, f in enumerate(fields)]
        fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in fields]
        arrow = arrow.cast(pa.schema(fields))
        path = self.run_dir / table / f"part-{part:06d}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))

    def truncate(self) -> None:
        """Delete parts numbered ``next_part`` or later (written after the checkpoint being resumed) and the
        temporary files of writes that a kill interrupted."""
        for stale in self.run_dir.glob(".*.tmp"):
            stale.unlink()
        for table_dir in self.run_dir.iterdir():
            if table_dir.is_dir() and not table_dir.is_symlink():  # a link leads outside the run: never followed
                for stale in table_dir.glob(".*.tmp"):
                    stale.unlink()
                for part in part_files(table_dir):
                    if part_number(part) >= self.next_part:
                        part.unlink()


class NullWriter(RecordWriter):
    """Accepts rows and writes nothing: the writer of every rank but 0 in a multi-process search."""

    def add(self, table: str, rows: list[dict]) -> None:
        pass

    def flush(self) -> int:
        self.next_part += 1
        return self.next_part

    def truncate(self) -> None:
        pass


def read_run_table(run_dir: str | Path, name: str) -> pd.DataFrame:
    """The table ``name`` of one run directory: the union of its parts, in part order (empty with the schema's
    columns when it has none)."""
    table_dir = Path(run_dir) / name
    parts = part_files(table_dir)
    if not parts:
        columns = ["run", *SCHEMAS.get(name, {})]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frames = []
    for part in parts:
        try:
            table = pq.read_table(part)
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(f"record file {part} is corrupt: {error}") from None
        check_part(table, name, part)
        frames.append(table.to_pandas())
    return pd.concat(frames, ignore_index=True)


def has_records(run_dir: Path) -> bool:
    """Whether the run holds record part files (``<table>/part-*.parquet``)."""
    return any(part_number(path) is not None for path in Path(run_dir).glob("*/part-*.parquet"))
