"""How the command line talks: errors as one line on stderr with an exit status, log lines on stderr, progress
bars only on a terminal."""

from __future__ import annotations

import sys

import click


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (2: bad input)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def log(message: str) -> None:
    click.echo(message, err=True)


def progress() -> bool:
    """Whether to draw progress bars (stderr is a terminal)."""
    return sys.stderr.isatty()
