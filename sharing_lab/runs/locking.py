"""The write lock of a run directory: a process that writes a run holds an OS lock (``flock``) on ``RUN/run.lock``,
which the OS drops when the process dies, so a kill leaves no stale lock."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError, describe_os_error
from .rundir import LOCK, check_closed

_HELD: dict[Path, list] = {}  # resolved run dir -> [fd, depth]: re-entrant within a process


def lock(run_dir: str | Path) -> None:
    """Take the run directory's write lock (``flock`` on ``RUN/run.lock``, which then holds this pid) until
    :func:`release` or the end of the process; refuse, naming the holder's pid, if another process holds it, and
    refuse a run directory that is not a closed world (:func:`~sharing_lab.runs.rundir.check_closed`): every
    writer of a run takes this lock first."""
    key = Path(run_dir).resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return
    check_closed(key)
    path = key / LOCK
    try:  # never through a link: the lock is a regular file inside the run, written with this process's pid
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"cannot lock run {run_dir}: {path} is a symbolic link; the lock must be a regular "
                             "file inside the run (remove the link)") from None
        raise InputError(f"cannot lock run {run_dir}: {describe_os_error(error)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"cannot lock run {run_dir}: {path} is not a regular file (remove it)")
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
