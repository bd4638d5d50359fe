"""sharing-lab: affine parameter sharing (APS) for neural channel number search.

The path of the data, one module each: config → data (datasets/) → space (models/, schemes/) → supernet →
state → loop (probes/) → report/records → plots/. Importing the package registers the built-in models,
datasets, sharing schemes and probes.
"""

__version__ = "0.2.0"

from . import datasets, models, probes, schemes  # noqa: E402,F401  (registers the built-ins)
from .config import Config, load_toml  # noqa: E402
from .ground_truth import groundtruth  # noqa: E402
from .launch import run_search  # noqa: E402
from .layout import build_layout, model_names  # noqa: E402
from .records import read_table  # noqa: E402
from .registry import register_dataset, register_model, register_probe, register_scheme  # noqa: E402
from .schemes import SharingScheme, get_scheme, scheme_names  # noqa: E402
from .sharing import phi  # noqa: E402
from .space import SearchSpace  # noqa: E402

__all__ = ["Config", "SearchSpace", "SharingScheme", "build_layout", "get_scheme", "groundtruth", "load_toml",
           "model_names",
           "phi", "read_table", "register_dataset", "register_model", "register_probe", "register_scheme",
           "run_search", "scheme_names", "__version__"]
