"""sharing-lab: affine parameter sharing (APS) for neural channel number search.

The folders follow the path of the data: config → data → space (models) → aps (schemes) → search (probes) →
runs (records) → truth, plots, analysis → jobs → cli. Importing the package registers the built-in models,
datasets, sharing schemes, probes and presets; the names below are what notebooks and plugins use.
"""

from importlib.metadata import version

from . import moved  # noqa: F401  (the module names of version 0.2, for one release)
from .aps.schemes import SharingScheme, Transforms, get_scheme, scheme_names
from .aps.sharing import phi, random_semi_orthogonal
from .config import Config, load_toml, resolve
from .data import Dataset
from .jobs.job import run_search
from .registry import register_dataset, register_model, register_preset, register_probe, register_scheme
from .runs.sweeps import read_table
from .search.probes import Probe, ProbeView
from .space import models  # noqa: F401  (registers the built-in models)
from .space.layout import ModelSpec, build_layout, model_names
from .space.search_space import SearchSpace
from .truth.table import groundtruth

__version__ = version("sharing-lab")

__all__ = ["Config", "Dataset", "ModelSpec", "Probe", "ProbeView", "SearchSpace", "SharingScheme", "Transforms",
           "build_layout", "explore", "get_scheme", "groundtruth", "load_toml", "model_names", "phi",
           "random_semi_orthogonal", "read_table", "register_dataset", "register_model", "register_preset",
           "register_probe", "register_scheme", "resolve", "run_search", "scheme_names", "__version__"]


def __getattr__(name: str):
    """``sharing_lab.explore`` (:func:`sharing_lab.plots.explorer.explore`) is imported on first use: it brings
    the figures' modules (matplotlib, seaborn), which the command line and a search need not load."""
    if name == "explore":
        from .plots.explorer import explore

        return explore
    raise AttributeError(f"module 'sharing_lab' has no attribute {name!r}")
