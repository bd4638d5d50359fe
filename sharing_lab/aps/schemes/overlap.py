"""Partial overlap: candidate blocks overlap by a fraction α (1 = ordinal, 0 = independent), for Figure 3."""

import math

from ...errors import InputError
from ...registry import register_scheme
from .base import SharingScheme


@register_scheme("overlap")
def overlap(argument: str | None) -> SharingScheme:
    """overlap:<α>: identity blocks at offsets Σ_{j<k} floor((1−α)c_j), fixed; α in [0, 1]."""
    try:
        alpha = float(argument) if argument is not None else math.nan
    except ValueError:
        alpha = math.nan
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"scheme 'overlap:<alpha>' needs alpha in [0, 1], got {argument!r}")
    return SharingScheme(f"overlap:{alpha:g}", overlap=alpha)
