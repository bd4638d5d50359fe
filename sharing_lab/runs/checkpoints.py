"""Checkpoints of a run (``RUN/checkpoint.pt``, the previous one kept as ``checkpoint.prev.pt``).

Checkpoints hold tensors and plain containers only (dicts, lists, tuples, strings, numbers, booleans, None) and
are read with ``torch.load(..., weights_only=True)`` in :func:`load_file`, the package's one ``torch.load``: a
checkpoint cannot run code. A state with non-finite values is never written, so the kept checkpoint is always a
good state.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..fileio import atomic_write
from .rundir import CHECKPOINT, PREVIOUS_CHECKPOINT

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
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block the read or never end
        raise ValueError(f"{path} is not a regular file")
    return torch.load(path, map_location="cpu", weights_only=True)


def _unreadable(path: Path, error: Exception) -> str:
    """Why a checkpoint file could not be read: an object the weights-only unpickler refused (torch names the
    global, e.g. ``posix.system``), or damage (truncated, garbage, empty)."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(error))
    if refused:
        return (f"{path} holds {refused.group(1)}, not only tensors and plain containers (not loaded: it could "
                "run code)")
    if isinstance(error, ValueError) and "not a regular file" in str(error):
        return f"{path} is not a regular file"
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
