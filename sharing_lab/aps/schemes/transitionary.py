"""Transitionary sharing (APS-T): an ordinal start with N(0, σ²) noise, Φ annealed by Eq. 5 after warm-up."""

import math

from ...errors import InputError
from ...registry import register_scheme
from .base import SharingScheme

DEFAULT_SIGMA = 1e-3


@register_scheme("transitionary")
def transitionary(argument: str | None) -> SharingScheme:
    """APS-T: ordinal start plus init noise σ (transitionary:<σ>, default 1e-3), Eq. 5 after warm-up."""
    sigma = DEFAULT_SIGMA
    if argument is not None:
        try:
            sigma = float(argument)
        except ValueError:
            raise InputError(f"scheme 'transitionary:<sigma>' needs a number, got {argument!r}") from None
        if not (sigma > 0 and math.isfinite(sigma)):
            raise InputError("scheme 'transitionary' needs a finite init noise sigma > 0 (an exact ordinal start "
                             "never moves)")
    return SharingScheme("transitionary", overlap=1.0, sigma=sigma, transition=True)
