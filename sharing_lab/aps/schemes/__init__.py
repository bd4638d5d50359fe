"""The registered sharing schemes, one file per scheme; importing this package registers them."""

from . import independent, ordinal, overlap, transitionary
from .base import SharingScheme, Transforms, get_scheme, no_argument, scheme_names
from .transitionary import DEFAULT_SIGMA

__all__ = ["DEFAULT_SIGMA", "SharingScheme", "Transforms", "get_scheme", "independent", "no_argument", "ordinal",
           "overlap", "scheme_names", "transitionary"]
