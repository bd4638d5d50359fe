"""Typed values from text: ``key=value`` overrides with TOML values (``--set``, ``--executor-set``, sweep files)
and the check of a value against a dataclass field's annotation, for :class:`sharing_lab.config.Config` and
:class:`sharing_lab.jobs.executors.ExecutorConfig` alike."""

from __future__ import annotations

import tomllib
import types
import typing
from typing import Any

from .errors import InputError
from .fileio import check_depth


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value; a bare word that is not TOML is taken as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"--set needs key=value, got {text!r}")
    raw = raw.strip()
    check_depth(raw, f"--set {key}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw.startswith(("[", "{", '"', "'")):
            raise InputError(f"--set {key}: {raw!r} is not a valid TOML value") from None
        value = raw
    if raw.lower() in ("none", "null"):
        value = None
    return key, value



def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation; lists become tuples, ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except InputError as error:
                errors.append(str(error))
        raise InputError(errors[0] if len(errors) == 1 else f"{key}: {value!r} does not fit {_name(annotation)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{key} must be a list, got {value!r}")
        item = typing.get_args(annotation)[0]
        return tuple(coerce(v, item, key) for v in value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise InputError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise InputError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r}")


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))
