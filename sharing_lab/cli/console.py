"""How the command line talks: errors as one line on stderr with an exit status, log lines on stderr, progress
bars only on a terminal, JSON always standard (null for NaN)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click
import numpy as np


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (2: bad input)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def log(message: str) -> None:
    click.echo(message, err=True)


def progress() -> bool:
    """Whether to draw progress bars (stderr is a terminal)."""
    return sys.stderr.isatty()


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf; numpy's too) as None, tuples as lists: what standard
    JSON can hold."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def echo_json(value: Any) -> None:
    """Print ``value`` as one line of standard JSON (null, never NaN)."""
    click.echo(json.dumps(json_safe(value), allow_nan=False))
