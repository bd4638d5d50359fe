"""Run directories (DESIGN §5): ``<out>/<name>/`` with ``config.json``, checkpoints, tables, export.

The file names of a run directory are defined here and nowhere else. ``config.json`` carries a format version
(:data:`CONFIG_FORMAT`; a file without one is format 1, read the same way) and the code's git revision when
the package runs from a git checkout.

What lives beside ``config.json`` has a module of its own: the write lock (:mod:`sharing_lab.runs.locking`), the
checkpoints (:mod:`sharing_lab.runs.checkpoints`), the records (:mod:`sharing_lab.runs.records`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ..config import RESUME_CHANGEABLE, Config, from_dict, to_dict
from ..errors import InputError, describe_os_error
from ..fileio import atomic_write_json, read_json

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
CONFIG = "config.json"
SUMMARY = "summary.json"
EXPORT = "arch.json"
LOCK = "run.lock"
TENSORBOARD = "tensorboard"  # TensorBoard event files mirroring the records (sharing_lab.runs.tensorboard)
DIVERGED = "diverged.json"  # written when training diverged; allows a resume that changes the learning rates
CONFIG_FORMAT = 5  # 1: no "format" key (before the redesign); 2: adds "format" and "code_revision"; 3: "logging";
# 4: sharing.phi_schedule; 5: sharing.transition (a rate or a Φ schedule) replaces sharing.tau and phi_schedule
MAX_NAME = 100  # characters in a run name


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_name(config: Config) -> str:
    """``model-data-scheme-sSEED-TIME``, the name of a run made without ``--name``."""
    scheme = config.sharing.scheme.replace(":", "")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{config.model.name}-{config.data.name}-{scheme}-s{config.seed}-{stamp}"


def check_name(name: str, what: str = "run name") -> str:
    """Refuse a run name that is not one plain path component: empty, hidden (leading dot, so also ``.`` and
    ``..``), with a path separator, absolute, with surrounding blanks or unprintable characters, or longer
    than :data:`MAX_NAME` characters. The same rule for ``run-search --name``, ``retrain --name`` and recipes."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"has {len(name)} characters (at most {MAX_NAME})"
    elif "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        problem = "contains a path separator (a name is one directory, made inside --out)"
    elif name.startswith("."):
        problem = "starts with a dot (hidden, '.' or '..')"
    elif not name.isprintable() or name != name.strip():
        problem = "has unprintable characters or surrounding blanks"
    if problem:
        shown = repr(name) if len(str(name)) <= 40 else repr(str(name)[:40]) + "…"
        raise InputError(f"{what} {shown} {problem}")
    return name


def create(out: str | Path, name: str, config: Config, extra: dict) -> Path:
    """Make a new run directory and write its ``config.json``; refuse an existing one or a bad name, and leave
    nothing behind when the OS refuses (read-only, full disk)."""
    run_dir = Path(out) / check_name(name)
    check_out(out)
    if run_dir.exists():
        raise InputError(f"run directory {run_dir} already exists: use --resume {run_dir} or another --name")
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()
    except FileExistsError:
        raise InputError(f"run directory {run_dir} already exists: use --resume {run_dir} or another --name") \
            from None
    except OSError as error:
        raise InputError(f"cannot create run directory {run_dir}: {describe_os_error(error)}") from None
    try:
        write_config(run_dir, config, extra)
    except OSError as error:
        for leftover in run_dir.iterdir():
            leftover.unlink()
        run_dir.rmdir()
        raise InputError(f"cannot write {run_dir / CONFIG}: {describe_os_error(error)}") from None
    return run_dir


def check_out(out: str | Path) -> None:
    """Refuse an output directory that is not one: a file or device (``/dev/null``), a symbolic-link loop."""
    path = Path(out)
    try:
        path.stat()
    except FileNotFoundError:
        return  # made with its parents
    except OSError as error:  # ELOOP and the like
        raise InputError(f"--out {out}: {describe_os_error(error)}") from None
    if not path.is_dir():
        raise InputError(f"--out {out} is not a directory")


def check_closed(run_dir: str | Path) -> None:
    """Refuse (one line, naming it) a symbolic link inside the run directory, at its top or one folder down (the
    record tables): the toolkit writes and deletes only inside a run, so it follows no link there. The run
    directory itself may be a link."""
    root = Path(run_dir)
    if not root.is_dir():
        return
    for entry in root.iterdir():
        inner = [entry] if entry.is_symlink() or not entry.is_dir() else [entry, *entry.iterdir()]
        for path in inner:
            if path.is_symlink():
                raise InputError(f"run {root} holds a symbolic link, {path} -> {os.readlink(path)}; the toolkit "
                                 "writes and deletes only inside a run and follows no link there: replace it "
                                 "with what it points to, or remove it")


def write_config(run_dir: Path, config: Config, extra: dict) -> None:
    """Write ``config.json``: the resolved configuration, run name, code revision, versions and ``extra``."""
    payload = {
        "format": CONFIG_FORMAT,
        "config": to_dict(config),
        "run": run_dir.name,
        "code_revision": code_revision(),
        "versions": {
            "sharing_lab": importlib.metadata.version("sharing-lab"),
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        **extra,
    }
    atomic_write_json(run_dir / CONFIG, payload)


def read_config(run_dir: str | Path) -> tuple[Config, dict]:
    """The configuration of an existing run and the whole ``config.json`` payload."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG})")
    payload = read_json(path, "run configuration")
    try:
        version = payload.get("format", 1)
        if not isinstance(version, int) or version > CONFIG_FORMAT:
            raise InputError(f"{path} has format {version!r}; this sharing-lab reads formats 1..{CONFIG_FORMAT}")
        mapping = payload["config"]
        if version < 5 and isinstance(mapping.get("sharing"), dict):
            mapping = {**mapping, "sharing": _transition_of_format_4(mapping["sharing"])}
        return from_dict(mapping), payload
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{path} is corrupt: {error}") from None


def _transition_of_format_4(sharing: dict) -> dict:
    """The ``sharing`` section of formats 1–4 in format 5: ``tau`` and ``phi_schedule`` become ``transition`` (a
    run of format 1–3 moved at its constant ``tau``; format 4's ``phi_schedule``, when set, took precedence)."""
    sharing = dict(sharing)
    tau = sharing.pop("tau", None)
    schedule = sharing.pop("phi_schedule", None)
    if schedule is not None:
        sharing["transition"] = schedule
    elif tau is not None:
        sharing["transition"] = tau
    return sharing


# --- divergence and resumes that change options ------------------------------------------------------------------
def mark_diverged(run_dir: Path, details: dict) -> None:
    """Record that training diverged (``diverged.json``): a resume of this run may then change the keys of
    :data:`sharing_lab.config.RESUME_CHANGEABLE`."""
    atomic_write_json(Path(run_dir) / DIVERGED, {"time": _now(), **details})


def diverged_info(run_dir: Path) -> dict | None:
    """What :func:`mark_diverged` wrote, or None when the run has not diverged (since its last resume)."""
    path = Path(run_dir) / DIVERGED
    if not path.exists():
        return None
    try:
        info = read_json(path)
    except InputError:
        return None
    return info if isinstance(info, dict) else None


def record_resume(run_dir: Path, config: Config, changed: dict[str, tuple[Any, Any]], epoch: int) -> None:
    """Write the resumed run's new values into ``config.json`` and append to its ``resumes`` list what changed
    (``{key: {"from": old, "to": new}}``), when, at which epoch and after which divergence; then the divergence
    mark is cleared."""
    path = Path(run_dir) / CONFIG
    payload = json.loads(path.read_text())
    payload["config"] = to_dict(config)
    payload.setdefault("resumes", []).append({
        "time": _now(), "epoch": epoch, "changed": {k: {"from": a, "to": b} for k, (a, b) in changed.items()},
        "diverged": diverged_info(run_dir),
    })
    atomic_write_json(path, payload)
    if any(key in RESUME_CHANGEABLE for key in changed):  # a change of logging.* alone leaves the mark
        (Path(run_dir) / DIVERGED).unlink(missing_ok=True)


