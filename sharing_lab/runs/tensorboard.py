"""TensorBoard event files of a run's records, so ``tensorboard --logdir runs/`` shows a sweep. Parquet stays the
record of truth; the events mirror it.

What is written, each value at its record's ``step`` (float32, as TensorBoard stores scalars):

- every ``scalars`` row under its own name (``train_loss``, ``val_acc_mean``, ``phi``, ``expected_width.0``, …);
- every ``layers`` row as ``layers/<metric>/<layer>`` for Φ (``phi``), Φ of the authors' code (``phi_code``),
  gradient alignment (``cos_align``) and coupled-gradient norm (``coupled_norm``), layer index two digits;
- every ``probs`` row as ``probs/<layer>/<width>``: the controller's decision probabilities.

Live (``--set logging.tensorboard=true``): :class:`EventSink` receives each part as the records are flushed
(every evaluation, and at the end) and writes it into ``RUN/tensorboard/``. A kill between a flush and the
checkpoint after it can repeat that part's events when the run is resumed (the Parquet parts are not repeated).
Afterwards (``sharing-lab tensorboard RUN…``): :func:`export_run` writes a run's whole tables.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError
from ..extras import require
from .records import read_run_table

LAYER_METRICS = ("phi", "phi_code", "cos_align", "coupled_norm")
TABLES = ("scalars", "layers", "probs")


def _number(value) -> float | None:
    """``value`` as a float, or None when it is missing (None, NaN, pandas NA)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def events(table: str, rows: Iterable[dict]) -> Iterator[tuple[str, float, int]]:
    """``(tag, value, step)`` of every value of ``rows`` of ``table`` that goes into the events (see the module's
    docstring); missing values (None, NaN) are left out."""
    for row in rows:
        step = int(row["step"])
        if table == "scalars":
            value = _number(row.get("value"))
            if value is not None:
                yield str(row["name"]), value, step
        elif table == "layers":
            for metric in LAYER_METRICS:
                value = _number(row.get(metric))
                if value is not None:
                    yield f"layers/{metric}/{int(row['layer']):02d}", value, step
        elif table == "probs":
            value = _number(row.get("prob"))
            if value is not None:
                yield f"probs/{int(row['layer']):02d}/{int(row['width'])}", value, step


def _summary_writer():
    return require("torch.utils.tensorboard", "TensorBoard logging").SummaryWriter


class EventSink:
    """Writes record rows as TensorBoard scalars into ``logdir`` (one event file per process); a sink of
    :class:`sharing_lab.runs.records.RecordWriter`, called with each flushed part."""

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        self.writer = _summary_writer()(log_dir=str(self.logdir), flush_secs=3600)
        self.count = 0

    def write(self, table: str, rows: list[dict]) -> None:
        """Add the events of ``rows`` of ``table`` and flush them to disk (tables without events are ignored)."""
        if table not in TABLES:
            return
        for tag, value, step in events(table, rows):
            self.writer.add_scalar(tag, value, step)
            self.count += 1
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def event_files(logdir: Path) -> list[Path]:
    """The TensorBoard event files directly in ``logdir``."""
    return sorted(logdir.glob("events.out.tfevents.*")) if logdir.is_dir() else []


def export_run(run_dir: str | Path, logdir: str | Path) -> int:
    """Write the events of a run's ``scalars``, ``layers`` and ``probs`` tables into ``logdir``; refuses a
    ``logdir`` that already holds event files (nothing is overwritten). Returns the number of events."""
    logdir = Path(logdir)
    if event_files(logdir):
        raise InputError(f"{logdir} already holds TensorBoard event files (written live, or exported before); "
                         "remove them or export elsewhere with --out DIR")
    frames = {table: read_run_table(run_dir, table) for table in TABLES}  # every record checked before a write
    made = not logdir.exists()
    sink = EventSink(logdir)
    try:
        for table, frame in frames.items():
            if len(frame):
                sink.write(table, frame.to_dict("records"))
        sink.close()
    except BaseException:  # a full disk: leave no partial event file, nor the folder this call made
        sink.close()
        for path in event_files(logdir):
            path.unlink(missing_ok=True)
        if made:
            shutil.rmtree(logdir, ignore_errors=True)
        raise
    return sink.count
