"""The modules that moved when the package was arranged in folders by role (version 0.3), importable by their old
names for one release: ``import sharing_lab.ground_truth`` gives :mod:`sharing_lab.truth.table` (the same module
object) with a ``DeprecationWarning`` naming the new place. Installed when the package is imported. The old modules
``aps`` and ``space`` are folders now; their main names are importable from the folders
(``from sharing_lab.space import SearchSpace``)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

PACKAGE = "sharing_lab"
# old module -> where it lives now (the README of 0.2 documented these import paths)
MOVED = {
    "ground_truth": "truth.table", "scoring": "truth.scoring", "sharing": "aps.sharing",
    "schemes": "aps.schemes", "phi_schedule": "aps.phi_schedule", "theorem": "aps.theorem",
    "layout": "space.layout", "flops": "space.flops", "plain": "space.plain",
    "models": "space.models", "datasets": "data", "transforms": "data.image_transforms",
    "runtime": "compute.runtime", "distributed": "compute.distributed", "training": "compute.training",
    "supernet": "search.supernet", "controller": "search.controller", "state": "search.state",
    "evaluate": "search.accuracy", "export": "search.export", "replay": "search.replay", "loop": "search.loop",
    "launch": "search.launch",
    "probes": "search.probes", "rundir": "runs.rundir", "records": "runs.records", "sweeps": "runs.sweeps",
    "tensorboard": "runs.tensorboard", "retrain": "analysis.retrain", "claims": "analysis.claims",
    "run_measures": "analysis.measures", "bench": "analysis.bench", "opcount": "analysis.opcount",
    "recipes": "jobs.recipes", "executors": "jobs.executors",
}


def new_name(name: str) -> str | None:
    """The module that the old module ``name`` (``sharing_lab.schemes.ordinal``) is now, or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    for end in range(len(parts), 1, -1):
        old = ".".join(parts[1:end])
        if old in MOVED and (space := ".".join([PACKAGE, MOVED[old], *parts[end:]])) != name:
            return space
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The module is the one already imported under its new name: nothing to run."""


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old names of :data:`MOVED` (and of their submodules) as the modules they are now."""

    def find_spec(self, name: str, path=None, target=None):
        target_name = new_name(name)
        if target_name is None:
            return None
        parent = sys.modules.get(name.rpartition(".")[0])
        if parent is not None and parent.__name__ == name.rpartition(".")[0] and \
                importlib.machinery.PathFinder.find_spec(name, path) is not None:
            return None  # a module of today under that name (``sharing_lab.space`` is a folder now)
        return importlib.util.spec_from_loader(name, _Alias(target_name))


if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, MovedModules())
