"""sharing-lab: affine parameter sharing (APS) for neural channel number search."""

from .records import read_table
from .sharing import get_scheme, phi, register_scheme

__version__ = "0.1.0"

__all__ = ["phi", "read_table", "get_scheme", "register_scheme", "__version__"]
