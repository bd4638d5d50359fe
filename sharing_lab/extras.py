"""Optional dependencies (the extras of ``pyproject.toml``), imported only when a feature that needs them is
chosen: ``slurm`` (submitit), ``ray`` (ray), ``tensorboard`` (tensorboard), ``explore`` (altair, vl-convert,
anywidget)."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import InputError

# module -> (package to install, extra of sharing-lab that installs it)
PACKAGES = {"submitit": ("submitit", "slurm"), "ray": ("ray", "ray"),
            "torch.utils.tensorboard": ("tensorboard", "tensorboard"),
            "tensorboard": ("tensorboard", "tensorboard"), "altair": ("altair", "explore"),
            "vl_convert": ("vl-convert-python", "explore"), "anywidget": ("anywidget", "explore")}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or refuse in one line naming the package and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package, extra = PACKAGES.get(module, (module.partition(".")[0], None))
        how = f"pip install 'sharing-lab[{extra}]'" if extra else f"pip install {package}"
        raise InputError(f"{feature} needs the {package} package, which cannot be imported ({error}); "
                         f"install it: {how}") from None
