"""Loading a user's own registrations: modules named with ``sharing-lab --plugin MODULE`` and the entry-point
group ``sharing_lab.plugins`` of installed packages. A plugin module registers models, datasets, schemes or
probes when imported (``@register_model`` …); nothing else in the package needs editing."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from .errors import InputError

ENTRY_POINT_GROUP = "sharing_lab.plugins"


def load_plugin(spec: str) -> None:
    """Import the plugin ``spec``: a module name on the path, or a ``.py`` file."""
    if not spec.strip():
        raise InputError("--plugin needs a module name or a .py file, got an empty name")
    path = Path(spec)
    try:
        if spec.endswith(".py"):
            if not path.is_file():
                raise InputError(f"plugin file {spec} does not exist")
            name = f"sharing_lab_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except ModuleNotFoundError as error:
        raise InputError(f"plugin {spec!r} cannot be imported: {error}") from None
    except InputError:
        raise
    except Exception as error:  # whatever a plugin's own code raises on import: one line naming it
        sys.modules.pop(f"sharing_lab_plugin_{path.stem}", None)
        raise InputError(f"plugin {spec!r} failed to load: {type(error).__name__}: {error}") from None


def load_entry_points() -> list[str]:
    """Import every module of the ``sharing_lab.plugins`` entry-point group; returns their names."""
    loaded = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # a broken third-party plugin must not stop the tool; say which one
            raise InputError(f"plugin entry point {entry.name!r} ({entry.value}) failed to load: "
                             f"{type(error).__name__}: {error}") from None
        loaded.append(entry.name)
    return loaded
