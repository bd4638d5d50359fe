"""Run directories (DESIGN §5): ``<out>/<name>/`` with ``config.json``, checkpoints, tables, export.

The file names of a run directory are defined here and nowhere else. ``config.json`` carries a format version
(:data:`CONFIG_FORMAT`; a file without one is format 1, read the same way) and the code's git revision when
the package runs from a git checkout.
"""

from __future__ import annotations

import io
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from . import __version__
from .config import Config, from_dict, to_dict
from .errors import InputError
from .fileio import atomic_write, atomic_write_json

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
CONFIG = "config.json"
SUMMARY = "summary.json"
EXPORT = "arch.json"
CONFIG_FORMAT = 2  # 1: no "format" key (before the redesign); 2: adds "format" and "code_revision"


def code_revision() -> str | None:
    """The git revision of the package's checkout (with ``-dirty`` for uncommitted changes), or None."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        revision = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                                  capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision or None


def default_name(config: Config) -> str:
    scheme = config.sharing.scheme.replace(":", "")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{config.model.name}-{config.data.name}-{scheme}-s{config.seed}-{stamp}"


def create(out: str | Path, name: str, config: Config, extra: dict) -> Path:
    """Make a new run directory and write its ``config.json``; refuse an existing one."""
    run_dir = Path(out) / name
    if run_dir.exists():
        raise InputError(f"run directory {run_dir} already exists: use --resume {run_dir} or another --name")
    run_dir.mkdir(parents=True)
    write_config(run_dir, config, extra)
    return run_dir


def write_config(run_dir: Path, config: Config, extra: dict) -> None:
    payload = {
        "format": CONFIG_FORMAT,
        "config": to_dict(config),
        "run": run_dir.name,
        "code_revision": code_revision(),
        "versions": {
            "sharing_lab": __version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        **extra,
    }
    atomic_write_json(run_dir / CONFIG, payload)


def read_config(run_dir: str | Path) -> tuple[Config, dict]:
    """The configuration of an existing run and the whole ``config.json`` payload."""
    import json

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG})")
    try:
        payload = json.loads(path.read_text())
        version = payload.get("format", 1)
        if not isinstance(version, int) or version > CONFIG_FORMAT:
            raise InputError(f"{path} has format {version!r}; this sharing-lab reads formats 1..{CONFIG_FORMAT}")
        return from_dict(payload["config"]), payload
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{path} is corrupt: {error}") from None


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write the checkpoint atomically, keeping the previous one as a fallback."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    current = run_dir / CHECKPOINT
    if current.exists():
        current.replace(run_dir / PREVIOUS_CHECKPOINT)
    atomic_write(current, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def load_checkpoint(run_dir: Path, log=print) -> dict | None:
    """The newest readable checkpoint; a truncated or corrupt one is reported and the previous one used."""
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # torch raises several types for truncated/corrupt files
            log(f"warning: checkpoint {path} is unreadable ({type(error).__name__}); trying the previous one")
    return None
