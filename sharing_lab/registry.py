"""Registries of what users extend: models, datasets, sharing schemes, probes (one file per item) and
configuration presets.

Each registry maps a name to a factory and checks, at registration, that the factory has the declared
interface (its parameters), so a plugin that registers the wrong thing fails when it is loaded, not in the
middle of a search. ``sharing-lab list`` prints every registry; tests are parametrised over them.

    from . import register_scheme

    @register_scheme("random-orthogonal")
    def random_orthogonal(argument): ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import InputError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """Names → factories of one kind; ``parameters`` are the keyword parameters every factory must accept."""

    def __init__(self, kind: str, parameters: tuple[str, ...] = ()) -> None:
        self.kind, self.parameters = kind, parameters
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``factory`` under ``name`` (a later registration of the same name replaces it)."""
        if not isinstance(name, str) or not name or ":" in name or name.strip() != name:
            raise TypeError(f"a {self.kind} name must be a non-empty string without ':' or spaces, got {name!r}")

        def decorate(factory: T) -> T:
            self._check(name, factory)
            self._items[name] = factory
            return factory

        return decorate

    def _check(self, name: str, factory: T) -> None:
        if not callable(factory):
            raise TypeError(f"{self.kind} {name!r}: a factory must be callable, got {type(factory).__name__}")
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            return
        accepted = signature.parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            return
        missing = [p for p in self.parameters if p not in accepted]
        if missing:
            raise TypeError(f"{self.kind} {name!r}: its factory must accept the parameters "
                            f"{', '.join(self.parameters)} (missing: {', '.join(missing)})")

    def get(self, name: str) -> T:
        """The factory of ``name``; an unknown name is bad input."""
        if name not in self._items:
            raise InputError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def describe(self) -> list[tuple[str, str]]:
        """(name, first docstring line) of every entry, for ``sharing-lab list``."""
        rows = []
        for name in self.names():
            doc = inspect.getdoc(self._items[name]) or ""
            rows.append((name, doc.splitlines()[0] if doc else ""))
        return rows


MODELS: Registry = Registry("model")
DATASETS: Registry = Registry("dataset", ("directory", "seed", "image_size", "workers"))
SCHEMES: Registry = Registry("sharing scheme", ("argument",))
PROBES: Registry = Registry("probe", ("config", "seed"))
PRESETS: Registry = Registry("preset")


def register_model(name: str):
    """Register a :class:`sharing_lab.space.layout.ModelSpec` factory (no arguments) under ``name``."""
    return MODELS.register(name)


def register_dataset(name: str):
    """Register ``factory(directory, seed, image_size, workers) -> Dataset`` under ``name``."""
    return DATASETS.register(name)


def register_scheme(name: str):
    """Register ``factory(argument) -> SharingScheme`` under ``name`` (``argument``: the text after ``name:``)."""
    return SCHEMES.register(name)


def register_probe(name: str):
    """Register ``factory(config: ProbeConfig, seed: int) -> Probe`` under ``name``."""
    return PROBES.register(name)


def register_preset(name: str):
    """Register ``factory() -> str`` (the preset's TOML text) under ``name``: ``--config NAME`` then reads it."""
    return PRESETS.register(name)
