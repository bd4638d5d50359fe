"""Run directories (DESIGN §5): ``<out>/<name>/`` with ``config.json``, checkpoints, tables, export.

The file names of a run directory are defined here and nowhere else. ``config.json`` carries a format version
(:data:`CONFIG_FORMAT`; a file without one is format 1, read the same way) and the code's git revision when
the package runs from a git checkout.

Checkpoints hold tensors and plain containers only (dicts, lists, tuples, strings, numbers, booleans, None) and
are read with ``torch.load(..., weights_only=True)`` in :func:`load_file`, the package's one ``torch.load``: a
checkpoint cannot run code. A process that writes a run directory holds an OS lock on ``RUN/run.lock``
(:func:`lock`), which the OS drops when the process dies, so a kill leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .config import Config, from_dict, to_dict
from .errors import InputError, describe_os_error
from .fileio import atomic_write, atomic_write_json

if TYPE_CHECKING:
    from .state import SearchState

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
CONFIG = "config.json"
SUMMARY = "summary.json"
EXPORT = "arch.json"
LOCK = "run.lock"
TENSORBOARD = "tensorboard"  # TensorBoard event files mirroring the records (sharing_lab.tensorboard)
DIVERGED = "diverged.json"  # written when training diverged; allows a resume that changes the learning rates
CONFIG_FORMAT = 4  # 1: no "format" key (before the redesign); 2: adds "format" and "code_revision"; 3: "logging";
# 4: sharing.phi_schedule (earlier runs had none: a constant τ, whatever today's default is)
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


def write_config(run_dir: Path, config: Config, extra: dict) -> None:
    """Write ``config.json``: the resolved configuration, run name, code revision, versions and ``extra``."""
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
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG})")
    try:
        payload = json.loads(path.read_text())
        version = payload.get("format", 1)
        if not isinstance(version, int) or version > CONFIG_FORMAT:
            raise InputError(f"{path} has format {version!r}; this sharing-lab reads formats 1..{CONFIG_FORMAT}")
        mapping = payload["config"]
        if version < 4 and isinstance(mapping.get("sharing"), dict):  # before the Φ schedule: a constant τ
            mapping = {**mapping, "sharing": {"phi_schedule": None, **mapping["sharing"]}}
        return from_dict(mapping), payload
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{path} is corrupt: {error}") from None


# --- divergence and resumes that change options ------------------------------------------------------------------
def mark_diverged(run_dir: Path, details: dict) -> None:
    """Record that training diverged (``diverged.json``): a resume of this run may then change the keys of
    :data:`sharing_lab.config.RESUME_CHANGEABLE`."""
    atomic_write_json(Path(run_dir) / DIVERGED, {"time": _now(), **details})


def diverged_info(run_dir: Path) -> dict | None:
    """What :func:`mark_diverged` wrote, or None when the run has not diverged (since its last resume)."""
    path = Path(run_dir) / DIVERGED
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


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
    from .config import RESUME_CHANGEABLE

    if any(key in RESUME_CHANGEABLE for key in changed):  # a change of logging.* alone leaves the mark
        (Path(run_dir) / DIVERGED).unlink(missing_ok=True)


# --- the lock --------------------------------------------------------------------------------------------------
_HELD: dict[Path, list] = {}  # resolved run dir -> [fd, depth]: re-entrant within a process


def lock(run_dir: str | Path) -> None:
    """Take the run directory's write lock (``flock`` on ``RUN/run.lock``, which then holds this pid) until
    :func:`release` or the end of the process; refuse, naming the holder's pid, if another process holds it."""
    key = Path(run_dir).resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return
    path = key / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise InputError(f"cannot lock run {run_dir}: {describe_os_error(error)}") from None
    for attempt in range(5):  # a few tries: lock_holder's probe holds the lock for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt < 4:
                time.sleep(0.05)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"run {run_dir} is being written by process {holder} (it holds {path}); wait for it "
                             "to end or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]


def lock_holder(run_dir: str | Path) -> str | None:
    """The pid in ``run.lock`` when a process holds the run's lock (the run is being written), else None. Probes
    with a shared non-blocking ``flock`` given back at once (:func:`lock` retries over that instant)."""
    key = Path(run_dir).resolve()
    if key in _HELD:
        return str(os.getpid())
    try:
        fd = os.open(key / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def release(run_dir: str | Path) -> None:
    """Give back a lock taken by :func:`lock` (once per :func:`lock`); nothing if this process holds none."""
    key = Path(run_dir).resolve()
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor drops the flock


@contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """:func:`lock` for the ``with`` block."""
    lock(run_dir)
    try:
        yield
    finally:
        release(run_dir)


# --- checkpoints -----------------------------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


def _walk(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every leaf of a nested state with its path (``supernet.stem.weight``, ``probes[0].generator``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]")
    else:
        yield where, value


def non_finite(state: dict) -> list[str]:
    """The entries of a state holding NaN or ±inf (floating tensors and floats), in order; one sync per device."""
    bad, tensors = [], []
    for where, value in _walk(state, ""):
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(where)
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
            tensors.append((where, value))
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for where, tensor in tensors:
        by_device.setdefault(tensor.device, []).append((where, tensor))
    for items in by_device.values():
        finite = torch.stack([torch.isfinite(t).all() for _, t in items]).cpu()
        bad.extend(where for (where, _), ok in zip(items, finite.tolist()) if not ok)
    return bad


def check_plain(state: dict) -> None:
    """Refuse a state that a weights-only load could not read back (an object that is not a tensor, a plain
    container, a string, a number, a boolean or None)."""
    for where, value in _walk(state, ""):
        if not (isinstance(value, torch.Tensor) or isinstance(value, _PLAIN)):
            raise InputError(f"checkpoint entry {where} is a {type(value).__name__}: a checkpoint holds tensors "
                             "and plain containers only")


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write the checkpoint atomically, keeping the previous one as a fallback. Refuses a state with
    non-finite values (the kept checkpoint is always a good state) or with objects that need a pickle."""
    check_plain(state)
    bad = non_finite(state)
    if bad:
        raise InputError(f"refusing to checkpoint a state with non-finite values in {', '.join(bad[:3])}")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    current = run_dir / CHECKPOINT
    if current.exists():
        current.replace(run_dir / PREVIOUS_CHECKPOINT)
    atomic_write(current, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def load_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU: the package's one way to read a checkpoint. Only
    tensors and plain containers are unpickled; anything else raises ``pickle.UnpicklingError``, unrun."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _unreadable(path: Path, error: Exception) -> str:
    """Why a checkpoint file could not be read: an object the weights-only unpickler refused (torch names the
    global, e.g. ``posix.system``), or damage (truncated, garbage, empty)."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(error))
    if refused:
        return (f"{path} holds {refused.group(1)}, not only tensors and plain containers (not loaded: it could "
                "run code)")
    return f"{path} is unreadable ({type(error).__name__})"


def checkpoint_files(run_dir: Path) -> list[Path]:
    """The checkpoint files present in a run directory, newest first."""
    return [Path(run_dir) / name for name in (CHECKPOINT, PREVIOUS_CHECKPOINT) if (Path(run_dir) / name).exists()]


def read_checkpoint(run_dir: Path, log: Callable[[str], None] = print) -> tuple[dict, Path] | None:
    """The newest readable checkpoint and its path; None when the run has no checkpoint file. When
    ``checkpoint.pt`` is unreadable the previous one is used (with a warning); when every checkpoint file is
    unreadable this refuses (an :class:`InputError` naming them), for nothing can be resumed from them."""
    problems = []
    for path in checkpoint_files(run_dir):
        try:
            state = load_file(path)
        except Exception as error:  # torch raises several types for truncated, corrupt or unsafe files
            problems.append(_unreadable(path, error))
            continue
        if not isinstance(state, dict) or "epoch" not in state:
            problems.append(f"{path} is not a checkpoint")
            continue
        for problem in problems:
            log(f"warning: {problem}; using the previous checkpoint {path.name}")
        return state, path
    if problems:
        raise InputError(f"no readable checkpoint in {run_dir}: {'; '.join(problems)}; nothing was changed")
    return None


def load_checkpoint(run_dir: Path, log: Callable[[str], None] = print) -> dict | None:
    """The state of :func:`read_checkpoint`, or None when the run has no checkpoint file."""
    found = read_checkpoint(run_dir, log)
    return None if found is None else found[0]


def restore(target: SearchState, run_dir: Path, config: Config, log: Callable[[str], None] = print) -> dict | None:
    """Load the newest readable checkpoint into ``target`` (a :class:`~sharing_lab.state.SearchState`) and return
    it; None when the run has none. A checkpoint that does not fit the run's configuration (``config.json``
    edited by hand, e.g. model.widths) is refused in one line naming the keys that differ."""
    found = read_checkpoint(run_dir, log)
    if found is None:
        return None
    state, path = found
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        from .config import differences

        saved = state.get("config")
        changed = differences(saved, to_dict(config)) if isinstance(saved, dict) else []
        detail = (f"config.json differs from the checkpoint's configuration in {', '.join(changed)}" if changed
                  else (str(error).strip().splitlines() or [type(error).__name__])[-1].strip()[:160])
        raise InputError(f"checkpoint {path} does not fit {Path(run_dir) / CONFIG} ({detail}); was config.json "
                         "edited by hand?") from None
    return state


def has_records(run_dir: Path) -> bool:
    """Whether the run holds record part files (``<table>/part-*.parquet``)."""
    return any(Path(run_dir).glob("*/part-*.parquet"))
