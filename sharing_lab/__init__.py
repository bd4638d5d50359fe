"""sharing-lab: affine parameter sharing (APS) for neural channel number search."""

from .sharing import get_scheme, phi, register_scheme

__version__ = "0.1.0"

__all__ = ["phi", "get_scheme", "register_scheme", "__version__"]
