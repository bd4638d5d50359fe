"""Export of a searched architecture as framework-free JSON, and loading it back as a plain network.

The file holds the model name, the layout parameters needed to rebuild it (granularity, classes, input
channels and resolution) and one width per decision, with its MACs and parameters. The authors' code has no
such file (users paste widths by hand; see the notes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from ..config import MAX_WIDTH
from ..errors import InputError
from ..fileio import atomic_write_json, read_json
from ..runs.rundir import EXPORT
from ..space.flops import count
from ..space.layout import Layout, build_layout
from ..space.plain import PlainNet, build_plain

FORMAT = "sharing-lab/arch-v1"


def choose(rows: list[dict], target: float | None) -> dict:
    """The paper's pick among the top-N (Section 5.3): the one closest to the FLOPs target, else the likeliest."""
    if target is None:
        return max(rows, key=lambda row: row["log_prob"])
    return min(rows, key=lambda row: (abs(row["macs"] - target), -row["log_prob"]))


def write_export(run_dir: Path, layout: Layout, row: dict, data: dict | None = None) -> Path:
    """Write ``arch.json`` for the architecture of an ``archs`` row (``data``: the dataset it was searched on)."""
    widths = [int(w) for w in row["widths"].split(",")]
    path = Path(run_dir) / EXPORT
    extra = {k: row[k] for k in ("acc", "test_acc", "log_prob", "rank") if k in row}
    if data is not None:
        extra["data"] = data
    atomic_write_json(path, export_payload(layout, widths, run=Path(run_dir).name, **extra))
    return path


def export_payload(layout: Layout, widths: Sequence[int], **extra) -> dict:
    cost = count(layout, widths)
    return {
        "format": FORMAT, "model": layout.model, "granularity": layout.granularity,
        "decisions": [d.name for d in layout.decisions], "widths": list(widths),
        "num_classes": layout.num_classes, "in_channels": layout.in_channels, "image_size": layout.image_size,
        "macs": cost.macs, "flops": cost.flops, "params": cost.params, **extra,
    }


def _integral(value: object) -> bool:
    """Whether a JSON value is a whole number (3 or 3.0; not true, 3.5, NaN or Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or (math.isfinite(value) and value == int(value))


def load_export(path: str | Path) -> tuple[Layout, list[int], dict]:
    """Read an exported architecture (a file, or a run directory holding ``arch.json``); its widths must be
    whole numbers (``Infinity``, NaN or 4.5 are refused)."""
    path = Path(path)
    if path.is_dir():
        path = path / EXPORT
    if not path.is_file():
        raise InputError(f"no exported architecture at {path}")
    payload = read_json(path, "exported architecture")
    if not isinstance(payload, dict):
        raise InputError(f"{path} is not an exported architecture: a JSON object expected")
    try:
        layout = build_layout(payload["model"], payload["granularity"], num_classes=payload["num_classes"],
                              in_channels=payload["in_channels"], image_size=payload["image_size"])
        widths = payload["widths"]
        if not isinstance(widths, list) or not all(_integral(w) for w in widths):
            raise ValueError(f"widths must be a list of integers, got {widths!r}")
        widths = [int(w) for w in widths]
        if any(w > MAX_WIDTH for w in widths):
            raise ValueError(f"widths must be at most {MAX_WIDTH:,} channels, got {max(widths):,}")
        layout.check_widths(widths)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, OverflowError) as error:
        raise InputError(f"{path} is not an exported architecture: {error}") from None
    return layout, widths, payload


def build_exported(path: str | Path) -> PlainNet:
    """The plain network of an exported architecture, freshly initialised (for retraining from scratch)."""
    layout, widths, _ = load_export(path)
    return build_plain(layout, widths)
