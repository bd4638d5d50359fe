"""Atomic file writes (write to a temporary name in the same directory, fsync, rename; DESIGN §5), and reading
the JSON and TOML a user hands us as hostile input: regular files only, nesting bounded before a parser recurses."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import InputError

MAX_DEPTH = 64  # brackets a configuration, record or summary nests at most (Python's parsers recurse per level)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path``; a crash leaves the old file or none.

    An OS error (read-only directory, full disk, name too long) removes the temporary file and is raised again
    naming ``path`` itself, not the temporary name.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno is not None:  # an error without errno keeps its text
            error.filename, error.filename2 = str(path), None
        raise


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (:func:`atomic_write`)."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            json.dump(obj, handle, indent=2)
            handle.write("\n")

    atomic_write(path, write)


def check_depth(text: str, source: str) -> None:
    """Refuse JSON or TOML text whose arrays and tables nest deeper than :data:`MAX_DEPTH` (a parser would
    recurse into it until Python's stack gives out), naming ``source``; quoted strings and TOML comments are skipped."""
    depth, quote, escaped, comment = 0, None, False, False
    for char in text:
        if comment:
            comment = char != "\n"
        elif quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":  # a TOML comment (JSON has none outside strings)
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"{source} nests deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def read_json(path: str | Path, what: str = "file") -> object:
    """The JSON value in ``path``, read as hostile input: a regular file, nesting bounded; any problem is one
    :class:`InputError` naming the file."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise InputError(f"{what} {path} is not a regular file")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{what} {path} cannot be read: {error}") from None
    check_depth(text, f"{what} {path}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise InputError(f"{what} {path} is not valid JSON: {error}") from None
